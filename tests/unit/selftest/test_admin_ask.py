# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`agent-sandbox ask/pending/allow/deny/revoke/learn`: what they write to the control file, what they
refuse before writing anything, the proposal `learn` makes from the audit log, and the doctor's
learning-mode check. The proxy's side (reading the file) is tested in tests/unit/proxy/test_ask_learn.py,
and both together as the agent in the mitm_proxy Molecule scenario. The control file written here is
also read back by the proxy's own parser, so the two cannot drift apart."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

from audit_data import write_config

PROXY_FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "mitm_proxy", "files")
sys.path.insert(0, os.path.abspath(PROXY_FILES))
from agent_sandbox_proxy.control import load_control  # noqa: E402  pylint: disable=wrong-import-position

AGENTS = [{"name": "claude", "proxy_port": 8080}, {"name": "codex", "proxy_port": 8081}]


@pytest.fixture()
def host(tmp_path, monkeypatch, doctor):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "rules": ["pypi.org", "*.githubusercontent.com", "old.example.com"],
                                  "listeners": {}}))
    config = write_config(tmp_path, log, agents=AGENTS, policy_file=str(policy),
                          control_file=str(tmp_path / "control.json"), pending_file=str(tmp_path / "pending.json"))
    return tmp_path, config


def run(doctor, config, *argv):
    return doctor.main(list(argv) + ["--config", str(config)])


def held(folder, *entries):
    (folder / "pending.json").write_text(json.dumps({"version": 1, "pending": list(entries)}))


def entry(ident, host, port=443, listener=8080, left=50):
    now = time.time()
    return {"id": ident, "listener": listener, "host": host, "port": port, "method": "CONNECT", "path": None,
            "since": now - 10, "expires": now + left, "addresses": ["10.1.2.3"], "private": True}


def control(folder):
    return json.loads((folder / "control.json").read_text())


def test_ask_on_and_off(doctor, host, capsys):
    folder, config = host
    assert run(doctor, config, "ask", "on", "--agent", "claude", "--timeout", "30") == 0
    assert control(folder)["ask"] == {"8080": {"timeout": 30}}
    assert oct(os.stat(folder / "control.json").st_mode & 0o777) == "0o644"
    assert load_control(str(folder / "control.json")).ask_timeout(8080) == 30
    assert run(doctor, config, "ask", "off", "--agent", "claude") == 0
    assert "ask" not in control(folder)
    assert run(doctor, config, "ask", "on", "--agent", "nobody") == 2
    assert "no agent nobody" in capsys.readouterr().err


def test_allow_and_deny_a_held_request(doctor, host, capsys):
    folder, config = host
    held(folder, entry("aa11", "new.example.net"), entry("bb22", "bad.example.net", listener=8081),
         entry("cc33", "gone.example.net", left=-1))
    assert run(doctor, config, "pending") == 0
    out = capsys.readouterr().out
    assert "aa11" in out and "claude" in out and "CONNECT new.example.net:443" in out and "10.1.2.3 (PRIVATE)" in out
    assert "bb22" in out and "codex" in out and "cc33" not in out   # an expired entry is not shown
    assert run(doctor, config, "allow", "aa11", "--for", "30m") == 0
    assert run(doctor, config, "deny", "bb22") == 0
    doc = control(folder)
    (approved,), (denied,) = doc["approved"], doc["denied"]
    assert (approved["listener"], approved["host"], approved["port"]) == (8080, "new.example.net", 443)
    assert 1790 < approved["until"] - time.time() <= 1800
    assert (denied["listener"], denied["host"]) == (8081, "bad.example.net")
    parsed = load_control(str(folder / "control.json"))
    assert parsed.approval(8080, "new.example.net", 443, time.time()) == "aa11"
    assert parsed.denial(8081, "bad.example.net", 443, time.time()) == "bb22"
    # --always, and a later approval replaces the denial of the same target.
    held(folder, entry("dd44", "bad.example.net", listener=8081))
    assert run(doctor, config, "allow", "dd44", "--always") == 0
    doc = control(folder)
    assert "denied" not in doc and {e["host"]: e["until"] for e in doc["approved"]}["bad.example.net"] is None
    assert run(doctor, config, "pending") == 0
    assert "always" in capsys.readouterr().out
    assert run(doctor, config, "revoke", "bad.example.net", "--agent", "codex") == 0
    assert [e["host"] for e in control(folder)["approved"]] == ["new.example.net"]


def test_refusals_change_nothing(doctor, host, capsys, monkeypatch):
    folder, config = host
    held(folder, entry("ip01", "10.0.0.1"), entry("lo01", "localhost"), entry("md01", "metadata.google.internal", 80),
         entry("pt01", "new.example.net", 22), entry("ok01", "fine.example.net"))
    for ident in ("ip01", "lo01", "md01", "pt01", "nope"):
        assert run(doctor, config, "allow", ident) == 2, ident
    err = capsys.readouterr().err
    assert "10.0.0.1 cannot be approved" in err and "local network" in err and "port 22 is not 80 or 443" in err
    assert "nothing is waiting with id nope" in err
    assert not (folder / "control.json").exists()
    assert run(doctor, config, "allow", "ok01", "--for", "soon") == 2
    assert not (folder / "control.json").exists()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run(doctor, config, "allow", "ok01") == 2
    assert "run it with sudo" in capsys.readouterr().err
    assert not (folder / "control.json").exists()


def write_audit(folder, records):
    with open(folder / "audit.jsonl", "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def record(host, method="GET", path="/", port=443, listener=8080, decision="allow", reason=None, rule="learning"):
    now = time.time() + 0.5
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (now % 1 * 1000), "listener": listener, "client": "127.0.0.1",
            "method": method, "scheme": "https", "host": host, "port": port, "path": path, "decision": decision,
            "reason": reason, "rule": rule, "profile": "default", "status": 200, "bytes": 1, "request_bytes": 0,
            "leak": False, "secrets": [], "masked": False}


def test_learn_proposes_what_was_used(doctor, host, capsys, monkeypatch):
    folder, config = host
    load = doctor.sibling
    ask = load("agent_sandbox_ask")
    monkeypatch.setattr(doctor, "sibling", lambda name: ask if name == "agent_sandbox_ask" else load(name))
    monkeypatch.setattr(ask, "public_suffixes", lambda: {"com", "net", "github.io"})
    sleeps = []

    def fake_sleep(seconds):
        # While "learning", the agent's traffic arrives: three hosts of one parent, one narrow API, pypi.
        if not sleeps:
            assert control(folder)["learn"]["8080"]["until"] > time.time()
            write_audit(folder, [
                record("pypi.org", path="/simple/requests/"), record("pypi.org", path="/simple/idna/"),
                record("files.pythonhosted.org", path="/packages/ab/cd/x.whl"),
                record("a.cdn.example.net"), record("b.cdn.example.net"), record("c.cdn.example.net", method="HEAD"),
                record("x.github.io"), record("y.github.io"), record("z.github.io"),
                record("api.example.com", method="POST", path="/v1/chat"), record("api.example.com", path="/v1/models"),
                record("nas.example.com", rule="learning (private address 10.1.2.3)"),
                record("10.0.0.1", method="CONNECT", path=None, decision="block", reason="ip-literal", rule=None),
                record("other.example.org", listener=8081)])
        sleeps.append(seconds)
        monkeypatch.setattr(ask.time, "time", lambda: 4e9)   # the deadline has passed

    monkeypatch.setattr(ask.time, "sleep", fake_sleep)
    out_file = folder / "proposal.yml"
    assert run(doctor, config, "learn", "--agent", "claude", "--for", "10m", "--write", str(out_file)) == 0
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert out == out_file.read_text()
    rules = [line for line in out.splitlines() if line.startswith("  - ")]
    assert "# 1 request; CHECK: it led into a private network (10.1.2.3)" in out
    assert rules == ['  - host: "api.example.com"', '  - host: "*.cdn.example.net"', '  - host: "files.pythonhosted.org"',
                     '  - host: "nas.example.com"',
                     '  - host: "pypi.org"', '  - host: "x.github.io"', '  - host: "y.github.io"', '  - host: "z.github.io"']
    assert '    methods: ["POST", "GET", "HEAD"]' not in out
    assert '    methods: ["GET", "HEAD", "POST"]' in out and '    paths: ["/v1/"]' in out
    assert '    paths: ["/simple/"]' in out and '    paths: ["/packages/"]' in out
    assert "other.example.org" not in out   # another agent's traffic
    assert "#   10.0.0.1:443  (ip-literal, 1)" in out or "10.0.0.1" in out
    assert "# + *.cdn.example.net  (new)" in out and "#   pypi.org  (already allowed)" in out
    assert "# - old.example.com  (allowed, not used while learning)" in out
    assert "# - *.githubusercontent.com  (allowed, not used while learning)" in out
    assert "learn" not in control(folder)   # ended by the command


def test_doctor_fails_while_learning(doctor, host):
    folder, config = host
    (folder / "control.json").write_text(json.dumps({"version": 1, "learn": {"8080": {"until": time.time() + 300}},
                                                     "ask": {"8081": {"timeout": 60}}}))
    cfg = json.loads(config.read_text())
    results = {}
    for agent in AGENTS:
        check = doctor.Doctor(dict(cfg, **agent), agent["name"])
        check.runtime_answers()
        results[agent["name"]] = (check.results, check.notes)
    (claude,), _notes = results["claude"]
    assert claude["status"] == "FAIL" and "learning mode on until" in claude["happened"]
    (codex,), notes = results["codex"]
    assert codex["status"] == "PASS" and "ask mode is on for codex" in notes[0]
    (folder / "control.json").write_text(json.dumps({"version": 1, "learn": {"8080": {"until": time.time() - 1}}}))
    check = doctor.Doctor(dict(cfg, **AGENTS[0]), "claude")
    check.runtime_answers()
    assert check.results[0]["status"] == "PASS"   # the deadline passed: off, whoever did not clean up
