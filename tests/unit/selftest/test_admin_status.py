# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`agent-sandbox status`: the agents with their uid, listener, rule count and refusals of the last hour,
whether the firewall is loaded (root only: otherwise "unknown", never a guess), whether the proxy is
up, and what ask and learn mode are doing (from the control file). `systemctl` and `nft` are stand-ins on PATH; the last test runs
the command as an unprivileged member of the audit group, as the admin would."""
from __future__ import annotations

import grp
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from audit_data import AGENTS, write_config, write_log

ME = pwd.getpwuid(os.getuid())
POLICY = {"version": 1, "rules": [{"host": "pypi.org"}, {"host": "files.pythonhosted.org"}],
          "listeners": {"8080": {"rules": [{"host": "pypi.org"}, {"host": "files.pythonhosted.org"},
                                           {"host": "api.github.com"}]}}}
STANDINS = {
    # systemctl is-active UNIT: what $FAKE_ACTIVE says.
    "systemctl": '#!/bin/sh\n[ "$1" = is-active ] || exit 3\necho "${FAKE_ACTIVE:-active}"\n',
    # nft list table inet agent_sandbox: the table, or nft's words when it is not loaded.
    "nft": '#!/bin/sh\n[ -n "$FAKE_NFT_MISSING" ] && { echo "Error: No such file or directory" >&2; exit 1; }\n'
           'echo "table inet agent_sandbox {"; echo "}"\n',
}


def standins(folder):
    folder.mkdir(exist_ok=True)
    for name, text in STANDINS.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


@pytest.fixture()
def host(tmp_path, monkeypatch):
    """doctor.json naming three agents (the third is the test's own user, so it has a uid), the audit
    log of audit_data.py, a policy, and the stand-ins first on PATH."""
    path, _rec = write_log(tmp_path, time.time())
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"version": 1, "ask": {"8080": {"timeout": 45}},
                                   "learn": {"8081": {"until": time.time() + 600}, "8082": {"until": 1}},
                                   "approved": [{"listener": 8080, "host": "a.example.net", "port": 443, "until": None},
                                                {"listener": 8080, "host": "b.example.net", "port": 443, "until": 1}]}))
    config = write_config(tmp_path, path, policy_file=str(policy), control_file=str(control),
                          agents=AGENTS + [{"name": ME.pw_name, "proxy_port": 8082}])
    monkeypatch.setenv("PATH", "%s:%s" % (standins(tmp_path / "bin"), os.environ["PATH"]))
    return config


def status(doctor, capsys, config, *flags):
    rc = doctor.main(["status", "--config", str(config)] + list(flags))
    assert rc == 0
    return capsys.readouterr().out


def test_status_as_the_admin(doctor, capsys, host, monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    report = json.loads(status(doctor, capsys, host, "--json"))
    agents = {a["name"]: a for a in report["agents"]}
    # Claude has a profile of its own (3 rules); the others get the shared rules (2).
    assert agents["claude"] == {"name": "claude", "uid": None, "listener": 8080, "rules": 3, "rules_note": "",
                                "blocked_last_hour": 2}
    assert (agents["codex"]["rules"], agents["codex"]["blocked_last_hour"]) == (2, 1)
    assert (agents[ME.pw_name]["uid"], agents[ME.pw_name]["blocked_last_hour"]) == (ME.pw_uid, 0)
    # The listener no agent owns refused something in the last hour: it is listed by its port.
    assert agents["listener 8079"]["listener"] == 8079 and agents["listener 8079"]["blocked_last_hour"] == 1
    assert report["blocked_last_hour"] == {"count": 4, "detail": ""}
    assert report["firewall"] == {"loaded": None, "detail": "unknown (needs root: sudo agent-sandbox status)"}
    assert report["proxy"] == {"up": True, "detail": "yes (agent-sandbox-proxy.service: active)"}
    # Ask mode for claude, learning for codex (the old learning run of 8082 is over), one live approval.
    assert report["ask"] == {"state": "claude (holds 45 s)", "listeners": {"8080": 45}, "approvals": 1}
    assert report["learn"]["state"].startswith("codex (until ") and list(report["learn"]["listeners"]) == ["8081"]
    text = status(doctor, capsys, host)
    assert text.splitlines()[0].split() == ["AGENT", "UID", "LISTENER", "RULES", "BLOCKED", "(1H)"]
    assert text.splitlines()[1].split() == ["claude", "-", "8080", "3", "2"]
    assert "\nblocked, last hour  4 (agent-sandbox log --blocked --since 1h)\n" in text
    assert "\nask mode            claude (holds 45 s); 1 run-time approval (agent-sandbox pending)\n" in text
    assert "\nlearn mode          codex (until " in text


def test_firewall_as_root_and_proxy_down(doctor, capsys, host, monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    monkeypatch.setenv("FAKE_ACTIVE", "failed")
    report = json.loads(status(doctor, capsys, host, "--json"))
    assert report["firewall"] == {"loaded": True, "detail": "yes (nft table inet agent_sandbox)"}
    assert report["proxy"] == {"up": False, "detail": "no (agent-sandbox-proxy.service: failed)"}
    monkeypatch.setenv("FAKE_NFT_MISSING", "1")
    report = json.loads(status(doctor, capsys, host, "--json"))
    assert report["firewall"]["loaded"] is False and "is not loaded" in report["firewall"]["detail"]


def test_missing_policy_and_log_are_said(doctor, capsys, host, tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    (tmp_path / "policy.json").unlink()
    for name in ("audit.jsonl", "audit.jsonl.1"):
        (tmp_path / name).unlink()
    report = json.loads(status(doctor, capsys, host, "--json"))
    assert {a["rules"] for a in report["agents"]} == {None}
    assert report["agents"][0]["rules_note"] == "no policy file (%s)" % (tmp_path / "policy.json")
    assert report["blocked_last_hour"]["count"] is None
    assert report["blocked_last_hour"]["detail"].startswith("no audit log at %s" % (tmp_path / "audit.jsonl"))
    assert report["agents"][0]["blocked_last_hour"] is None


AUDIT_GID = 64123  # a group the test user is made a member of for one process; no such group is created


# The host's own Python, as the selftest role runs the command (the test's venv may be closed to nobody).
SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)


def group_exists(gid):
    try:
        return bool(grp.getgrgid(gid))
    except KeyError:
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not SYSTEM_PYTHON, reason="needs root to run a command as another user")
@pytest.mark.skipif(group_exists(AUDIT_GID), reason="gid %d is a real group here: its members could read the files")
def test_a_member_of_the_audit_group_without_sudo(doctor):
    """The files as the roles make them: the audit log 0640 for the audit group, the policy 0640 for
    agent-proxy. A user in the audit group (and nothing else) reads the log; the policy stays closed."""
    nobody = pwd.getpwnam("nobody")
    folder = tempfile.mkdtemp(prefix="agent-sandbox-status-")
    try:
        os.chmod(folder, 0o755)
        here = os.path.dirname(doctor.__file__)
        for name in ("agent_sandbox_doctor.py", "agent_sandbox_audit.py"):
            shutil.copy(os.path.join(here, name), folder)
        base = pathlib.Path(folder)
        path, _rec = write_log(base, time.time())
        policy = base / "policy.json"
        policy.write_text(json.dumps(POLICY))
        for name, gid in ((path, AUDIT_GID), (str(path) + ".1", AUDIT_GID), (policy, 0)):
            os.chown(name, 0, gid)
            os.chmod(name, 0o640)
        config = write_config(base, path, policy_file=str(policy))
        os.chmod(config, 0o644)
        env = {"PATH": "%s:/usr/bin:/bin" % standins(base / "bin"), "LANG": "C.UTF-8"}

        def as_nobody(groups, *argv):
            return subprocess.run([SYSTEM_PYTHON, os.path.join(folder, "agent_sandbox_doctor.py")] + list(argv)
                                  + ["--config", str(config)], user=nobody.pw_uid, group=nobody.pw_gid,
                                  extra_groups=groups, env=env, cwd=folder, capture_output=True, text=True,
                                  check=False)

        member = as_nobody([AUDIT_GID], "log", "--json")
        assert member.returncode == 0, member.stderr
        assert json.loads(member.stdout)["files"] == [str(path) + ".1", str(path)]
        report = as_nobody([AUDIT_GID], "status", "--json")
        assert report.returncode == 0, report.stderr
        report = json.loads(report.stdout)
        assert report["blocked_last_hour"]["count"] == 4
        assert report["firewall"]["detail"] == "unknown (needs root: sudo agent-sandbox status)"
        assert report["agents"][0]["rules"] is None
        assert report["agents"][0]["rules_note"] == "not readable (%s is root:%s 0640: sudo agent-sandbox status)" % (
            policy, grp.getgrgid(0).gr_name)
        text = as_nobody([AUDIT_GID], "status").stdout
        assert text.splitlines()[1].split()[:4] == ["claude", "-", "8080", "not"]
        # Control: the same user outside the audit group is told how to get in.
        outsider = as_nobody([], "log")
        assert outsider.returncode == 2
        assert "cannot read %s: Permission denied. Members of the audit group" % path in outsider.stderr
    finally:
        shutil.rmtree(folder)
