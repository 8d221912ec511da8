# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor runs its checks at once and its probes in one session per agent, and still
reports in the listed order; a check that raises or hangs is a FAIL of that check, not a crash.

The probe session is the real one (`agent-sandbox probe serve`), started through a stand-in for
agent-run that runs the command as the test's own user: the probes are real sockets and files.
No test here measures time (benchmarks/doctor does): concurrency is shown by checks that can only
finish when another one runs at the same time.
"""
from __future__ import annotations

import json
import socket
import threading

import pytest

WAIT = 1  # seconds a test waits for something that happens at once, so a broken build fails, not hangs


@pytest.fixture()
def agent_run(tmp_path):
    """A stand-in for agent-run: drops `--user NAME` and runs the command as the caller."""
    path = tmp_path / "agent-run"
    path.write_text('#!/bin/sh\n[ "$1" = --user ] && shift 2\nexec "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.fixture()
def listener():
    """A TCP port on 127.0.0.1 that accepts connections (the kernel completes them from the backlog)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def doctor_with(module, checks, cfg=None, agent="agent"):
    """A Doctor whose run() calls the given checks (functions taking the doctor) in that order."""

    class Staged(module.Doctor):
        def checks(self, quick=False):
            return tuple(self.stage(check) for check in checks)

        def stage(self, check):
            def step():
                check(self)
            step.__name__ = check.__name__
            return step

        def processes(self):
            self.notes.append("processes first")

    return Staged(dict({"proxy_port": 8080}, **(cfg or {})), agent)


def test_checks_finish_in_any_order_and_are_reported_in_listed_order(doctor):
    # Each check waits for the one listed after it: run one after another, the first would wait for ever.
    later_done = {name: threading.Event() for name in ("first", "second", "third")}

    def first(d):
        assert later_done["second"].wait(WAIT)
        d.record(True, "first", "-", "-")
        d.notes.append("note of first")

    def second(d):
        assert later_done["third"].wait(WAIT)
        d.record(True, "second a", "-", "-")
        d.record(True, "second b", "-", "-")
        later_done["second"].set()

    def third(d):
        d.record(True, "third", "-", "-")
        d.notes.append("note of third")
        later_done["third"].set()

    check = doctor_with(doctor, [first, second, third])
    results = check.run()
    assert [r["check"] for r in results] == ["first", "second a", "second b", "third"]
    assert [r["status"] for r in results] == ["PASS"] * 4
    assert check.notes == ["processes first", "note of first", "note of third"]


def test_a_check_that_raises_is_a_fail_and_the_others_still_report(doctor):
    def fine(d):
        d.record(True, "fine", "-", "-")

    def broken(d):
        d.record(True, "before the error", "-", "-")
        raise ValueError("boom")

    results = doctor_with(doctor, [broken, fine]).run()
    assert [(r["check"], r["status"]) for r in results] == [
        ("before the error", "PASS"), ("broken", "FAIL"), ("fine", "PASS")]
    assert results[1]["happened"] == "stopped with ValueError: boom"


def test_a_check_that_hangs_past_its_deadline_is_a_fail(doctor):
    release = threading.Event()

    def stuck(d):
        release.wait(WAIT)
        d.record(True, "stuck", "-", "-")

    def fine(d):
        d.record(True, "fine", "-", "-")

    check = doctor_with(doctor, [stuck, fine])
    check.check_deadline = 0.2
    try:
        results = check.run()
    finally:
        release.set()
    assert [(r["check"], r["status"]) for r in results] == [("stuck", "FAIL"), ("fine", "PASS")]
    assert "did not finish in 0.2 s" in results[0]["happened"]


def test_probes_run_in_one_session_and_answer_in_order(doctor, agent_run, listener, tmp_path):
    check = doctor.Doctor({"proxy_port": listener, "agent_run": agent_run}, "agent")
    try:
        answers = check.as_agent_all(("read", str(tmp_path / "missing")), ("tcp", "127.0.0.1", listener, 2),
                                     ("writable", json.dumps([str(tmp_path)])), ("nonsense",))
        session = check._session  # pylint: disable=protected-access
        assert check.as_agent("read", str(tmp_path))["outcome"] == "readable"
        assert check._session is session  # pylint: disable=protected-access
    finally:
        check.close()
    assert [a["outcome"] for a in answers] == ["missing", "connected", "writable", "error"]
    assert answers[2]["paths"] == [str(tmp_path)]
    assert answers[3]["detail"] == "unknown probe nonsense"
    assert session.proc.returncode == 0  # it ended when the doctor had no more probes
    # A check still running after the report (stuck) starts no new session as the agent.
    assert check.as_agent("read", str(tmp_path)) == {
        "outcome": "error", "detail": "the report was finished before this probe ran"}
    assert check._session is session  # pylint: disable=protected-access


def test_a_probe_that_raises_answers_with_an_error_and_the_others_still_answer(doctor, agent_run, listener):
    check = doctor.Doctor({"proxy_port": listener, "agent_run": agent_run}, "agent")
    try:
        answers = check.as_agent_all(("tcp", "127.0.0.1", "no-port", 2), ("tcp", "127.0.0.1", listener, 2))
    finally:
        check.close()
    assert answers[0]["outcome"] == "error" and "probe tcp stopped with ValueError" in answers[0]["detail"]
    assert answers[1]["outcome"] == "connected"


def test_a_probe_that_hangs_past_its_deadline_is_an_error_and_the_others_still_answer(doctor, agent_run, listener):
    # A UDP socket that never answers: the probe waits out its own 3 s; the doctor stops waiting first.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    check = doctor.Doctor({"proxy_port": listener, "agent_run": agent_run}, "agent")
    check.probe_deadline = 0.5
    try:
        answers = check.as_agent_all(("udp", "127.0.0.1", silent.getsockname()[1], 3),
                                     ("tcp", "127.0.0.1", listener, 2))
        check.judge_proxy(answers[1])
    finally:
        check.close()
        silent.close()
    assert answers[0] == {"outcome": "error", "detail": "probe as agent did not answer in 0.5 s"}
    assert [(r["check"], r["status"]) for r in check.results] == [("proxy reachable", "PASS")]


def test_a_session_that_does_not_start_gives_every_probe_its_reason(doctor, tmp_path):
    # As the start guard refuses a session: PAM's message on stdout, sudo exits 1.
    refusing = tmp_path / "agent-run"
    refusing.write_text("#!/bin/sh\necho 'agent-sandbox: agent may not start: no rules'\nexit 1\n")
    refusing.chmod(0o755)
    check = doctor.Doctor({"proxy_port": 8080, "agent_run": str(refusing)}, "agent")
    try:
        answers = check.as_agent_all(("identity",), ("cgroup",))
        check.identity()
    finally:
        check.close()
    assert answers[0] == answers[1] == {
        "outcome": "error", "detail": "probe did not run as agent (rc 1): agent-sandbox: agent may not start: no rules"}
    assert [(r["check"], r["status"]) for r in check.results] == [("agent identity", "FAIL")]
    missing = doctor.Doctor({"proxy_port": 8080, "agent_run": str(tmp_path / "no-agent-run")}, "agent")
    assert missing.as_agent("identity")["outcome"] == "error"


def test_agents_run_side_by_side_and_are_reported_in_the_settings_order(
        doctor, agent_run, listener, tmp_path, capsys, monkeypatch):
    # Each agent's check waits until the other agent's has started.
    started = {"one": threading.Event(), "two": threading.Event()}

    def reachable(self, quick=False):
        def proxy_reachable():
            started[self.agent].set()
            assert started["two" if self.agent == "one" else "one"].wait(WAIT)
            self.proxy_reachable()
        return (proxy_reachable, self.go_betweens) if self.host_checks else (proxy_reachable,)

    monkeypatch.setattr(doctor.Doctor, "checks", reachable)
    monkeypatch.setattr(doctor.Doctor, "processes", lambda self: None)
    config = tmp_path / "doctor.json"
    config.write_text(json.dumps({"agents": [{"name": "one"}, {"name": "two"}], "proxy_port": listener,
                                  "agent_run": agent_run}))
    assert doctor.main(["doctor", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["agent"], r["check"], r["status"]) for r in data["results"]] == [
        ("one", "proxy reachable", "PASS"), ("two", "proxy reachable", "PASS")]
    assert doctor.main(["doctor", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.index("PASS  [one] proxy reachable") < out.index("PASS  [two] proxy reachable")
    assert "2 checks, 2 passed, 0 failed" in out
