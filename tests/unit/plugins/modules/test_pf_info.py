# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pf_info: the real module code against the pfctl stand-in, and its exact read-only argv."""

from __future__ import annotations

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import pf_info
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.pf_harness import (
    ALTQ,
    FakePfctl,
    ScriptedRunCommand,
    fixture_lines,
    fixture_text,
    run_module,
    writes,
)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    return FakePfctl(monkeypatch, tmp_path / "pf")


@pytest.fixture
def run(monkeypatch, tmp_path):
    def runner(check_mode=False, **args):
        return run_module(monkeypatch, pf_info, args, tmp_path, check_mode=check_mode)
    return runner


def test_stock_mac_pf_disabled_with_apple_anchors(fake, run):
    result, failed = run()

    assert not failed, result
    assert result["changed"] is False
    assert result["enabled"] is False
    assert result["status"] == "Status: Disabled Debug: Urgent"
    assert result["references"] == []
    assert result["anchors"] == ["com.apple", "com.apple/200.AirDrop", "com.apple/200.AirDrop/Bonjour",
                                 "com.apple/250.ApplicationFirewall"]
    assert result["anchor"] == ""
    assert result["rules"] == fixture_lines("show_rules_main_default.txt")
    assert result["skip_interfaces"] == []
    assert writes(fake.calls()) == []


def test_enabled_with_our_reference_and_anchor(fake, run):
    rc, dummy, stderr = fake("-E")
    assert rc == 0
    token = stderr.split("Token : ")[1].strip()
    fake("-a", "com.apple/agent_sandbox", "-f", "-", stdin="block drop out quick proto tcp all user 501\n")
    fake.edit_state(skip=["lo0"])

    result, failed = run(anchor="com.apple/agent_sandbox", check_mode=True)

    assert not failed, result
    assert result["enabled"] is True
    assert [ref["token"] for ref in result["references"]] == [token]
    assert result["references"][0]["process"] == "pfctl"
    assert "com.apple/agent_sandbox" in result["anchors"]
    assert result["rules"] == ["block drop out quick proto tcp all user = 501"]
    assert result["skip_interfaces"] == ["lo0"]


def test_missing_anchor_has_no_rules(fake, run):
    result, failed = run(anchor="com.apple/nothing")

    assert not failed, result
    assert result["rules"] == []


def test_argv_reads_only(monkeypatch, run):
    p = "/sbin/pfctl"
    script = ScriptedRunCommand(monkeypatch, [
        ([p, "-s", "info"], (0, fixture_text("show_info_enabled.txt"), ALTQ)),
        ([p, "-v", "-s", "Interfaces"], (0, fixture_text("show_interfaces_verbose.txt"), ALTQ)),
        ([p, "-s", "References"], (0, fixture_text("show_references.txt"), ALTQ)),
        ([p, "-v", "-s", "Anchors"], (0, fixture_text("show_anchors_verbose.txt"), ALTQ)),
        ([p, "-s", "rules"], (0, fixture_text("show_rules_main_default.txt"), ALTQ)),
    ])

    result, failed = run()

    assert not failed, result
    script.done()
    assert result["enabled"] is True
    assert result["skip_interfaces"] == ["lo0"]
    assert result["references"] == [
        {"pid": 5191, "process": "pfctl", "token": "10051342025653898869", "timestamp": "0 days 00:00:07"},
    ]


def test_a_failing_read_fails_with_pfctl_output(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (["/sbin/pfctl", "-s", "info"], (1, "", "pfctl: /dev/pf: Permission denied\n")),
    ])

    result, failed = run()

    assert failed
    script.done()
    assert result["msg"] == "Could not read the pf status (rc=1): pfctl: /dev/pf: Permission denied"
    assert result["rc"] == 1
    assert result["cmd"] == ["/sbin/pfctl", "-s", "info"]
