# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The doctor on macOS reports whether pf confines each agent: pf enabled, and host_firewall's anchor
holding a block rule for the agent's uid; `agent-sandbox status` says the same. pfctl is the
stateful stand-in (tests/unit/fakes/pfctl) on PATH, loaded with the rules the role writes."""
from __future__ import annotations

import os
import pathlib
import pwd
import sys

import pytest

UNIT = pathlib.Path(__file__).resolve().parents[1]
ANCHOR = "com.apple/000.agent_sandbox"
RULES = ("pass out quick on lo0 inet proto tcp from any to 127.0.0.1 port 8080 user 501\n"
         "block drop out quick proto { tcp udp } from any to any user 501\n")


@pytest.fixture()
def mac(doctor, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "%s:%s:%s" % (UNIT / "fakes", os.path.dirname(sys.executable), os.environ["PATH"]))
    monkeypatch.setenv("FAKE_PFCTL_STATE", str(tmp_path / "pf"))
    monkeypatch.setattr(doctor.sys, "platform", "darwin")
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor.pwd, "getpwnam", lambda name: pwd.struct_passwd(
        (name, "*", {"agent": 501, "bob": 502}[name], 20, "", "/Users/" + name, "/bin/zsh")))
    return doctor


def pfctl(*args, stdin=None):
    import subprocess
    return subprocess.run(["pfctl"] + list(args), input=stdin, capture_output=True, text=True, check=False)


def confined():
    pfctl("-a", ANCHOR, "-f", "-", stdin=RULES)
    pfctl("-E")


def check(doctor, agent="agent"):
    doc = doctor.Doctor({"agents": []}, agent)
    doc.pf_confines()
    return doc.results, doc.notes


def test_pass_when_pf_is_enabled_and_the_anchor_confines_the_agent(mac):
    confined()
    results, dummy = check(mac)
    assert [(r["status"], r["check"]) for r in results] == [("PASS", "pf confines the agent")]
    assert results[0]["happened"] == "pf enabled, anchor %s has 3 rules for uid 501" % ANCHOR


def test_fail_after_pfctl_d(mac):
    confined()
    pfctl("-d")
    results, dummy = check(mac)
    assert results[0]["status"] == "FAIL"
    assert results[0]["happened"].startswith("pf is disabled (someone ran pfctl -d?)")
    assert "sudo launchctl kickstart -k system/org.agent-sandbox.pf" in results[0]["happened"]


def test_fail_when_the_anchor_is_empty_or_misses_the_agent(mac):
    pfctl("-E")
    results, dummy = check(mac)
    assert results[0]["happened"] == "pf is enabled, but the anchor %s is empty" % ANCHOR
    confined()
    results, dummy = check(mac, "bob")
    assert results[0]["status"] == "FAIL"
    assert results[0]["happened"] == "pf is enabled, but the anchor %s has no block rule for uid 502" % ANCHOR


def test_without_root_it_says_so_and_records_nothing(mac, monkeypatch):
    monkeypatch.setattr(mac.os, "geteuid", lambda: 501)
    results, notes = check(mac)
    assert results == []
    assert notes == ["[agent] whether pf confines the agent needs root: sudo agent-sandbox doctor"]


def test_linux_has_no_pf_check(doctor):
    results, notes = check(doctor) if sys.platform != "darwin" else ([], [])
    assert results == [] and notes == []


def test_status_reports_pf_off_as_not_loaded(mac):
    confined()
    assert mac.firewall_state() == (True, "yes (pf enabled, anchor %s loaded (3 rules))" % ANCHOR)
    pfctl("-d")
    loaded, seen = mac.firewall_state()
    assert loaded is False and seen.startswith("no: pf is disabled")
