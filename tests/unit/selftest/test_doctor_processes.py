# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor notes whether an agent has processes running; `stop` is for root only.

Real processes of this host, read from /proc: the test's own process is one of its user's.
The ending itself (SIGTERM, grace, SIGKILL, as the agent) is tested in the host_firewall scenario.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest


def test_processes_of_lists_a_running_process_with_its_command_line(doctor):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-arg"])
    try:
        found = doctor.processes_of(os.getuid())
        assert child.pid in found and "marker-arg" in found[child.pid]
    finally:
        child.kill()
        child.wait()
    assert child.pid not in doctor.processes_of(os.getuid())


def test_the_note_says_whether_the_agent_has_processes(doctor):
    me = pwd.getpwuid(os.getuid()).pw_name
    check = doctor.Doctor({"proxy_port": 8080}, me)
    check.processes()
    assert len(check.notes) == 1 and check.notes[0].startswith("[%s] " % me)
    assert "running (" in check.notes[0] and "agent-sandbox stop --agent %s" % me in check.notes[0]
    idle = [entry.pw_name for entry in pwd.getpwall()
            if entry.pw_uid != 0 and not doctor.processes_of(entry.pw_uid)]
    if not idle:
        pytest.skip("every account on this host has processes")
    check = doctor.Doctor({"proxy_port": 8080}, idle[0])
    check.processes()
    assert check.notes == ["[%s] no processes running" % idle[0]]


def test_stop_refuses_anyone_but_root(doctor, capsys, monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    assert doctor.main(["stop", "--agent", "agent"]) == 2
    assert "run it as root" in capsys.readouterr().err


def test_stop_refuses_root_and_unknown_users(doctor):
    assert doctor.stop_agent("root", 1) == (["root: refusing to stop root's processes"], False)
    assert doctor.stop_agent("no-such-user-here", 1) == (["no-such-user-here: no such user"], False)


def test_a_proc_path_hidden_from_the_agent_counts_as_unreadable(doctor, monkeypatch):
    """With hidepid the agent's read of /proc/<proxy>/environ finds no such file: protected, not a FAIL.
    A missing ordinary file stays a FAIL (a wrong path in the settings)."""
    check = doctor.Doctor({"proxy_port": 8080, "unreadable_paths": ["/proc/4242/environ", "/etc/nowhere"]}, "agent")
    monkeypatch.setattr(check, "as_agent", lambda *probe: doctor.probe_read("/nonexistent/%s" % probe[1]))
    check.files()
    assert [(r["tried"], r["status"]) for r in check.results] == [
        ("read /proc/4242/environ", "PASS"), ("read /etc/nowhere", "FAIL")]
    assert "not visible to the agent" in check.results[0]["happened"]


@pytest.mark.skipif(os.geteuid() != 0, reason="looking as another user needs root")
def test_root_looks_at_another_users_processes_as_that_user(doctor):
    """The way the doctor and stop see an agent's processes where /proc hides them from root."""
    nobody = pwd.getpwnam("nobody")
    child = subprocess.Popen(["sleep", "30"], user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    try:
        found = doctor.processes_of(nobody.pw_uid, nobody.pw_gid)
        assert found.get(child.pid) == "sleep 30", found
    finally:
        child.kill()
        child.wait()
