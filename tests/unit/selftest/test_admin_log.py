# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`agent-sandbox log` sums up the proxy's audit log per agent and host, reading the rotated file when
--since reaches back into it, counting the lines that are not audit records; --follow prints each
request as it is written and keeps going when the proxy renames the log to .1 and starts a new one.

The log is built like the proxy's (audit_data.py). Expected counts come from the records the test
wrote, never from the program's own output. No test measures time.
"""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from audit_data import line, request, stamp, write_config, write_log

WAIT = 20  # seconds to wait for a line from --follow before the test fails instead of hanging
# As the admin's shell runs it: stdout to a pipe is buffered unless the command flushes each line.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@pytest.fixture()
def log(tmp_path):
    now = time.time()
    path, records = write_log(tmp_path, now)
    return path, records, write_config(tmp_path, path)


def run(doctor, capsys, config, *flags):
    rc = doctor.main(["log", "--config", str(config)] + list(flags))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def summary(doctor, capsys, config, *flags):
    rc, out, err = run(doctor, capsys, config, "--json", *flags)
    assert rc == 0, err
    data = json.loads(out)
    return data, {a["agent"]: {h["host"]: h for h in a["hosts"]} for a in data["agents"]}


def test_summary_per_agent_and_host_over_both_files(doctor, capsys, log):
    path, rec, config = log
    data, agents = summary(doctor, capsys, config)
    assert data["files"] == [str(path) + ".1", str(path)]
    claude = agents["claude"]
    assert claude["api.github.com"]["allowed"] == 3  # old_allow, connect, get
    assert claude["api.github.com"]["blocked"] == 1 and claude["api.github.com"]["reasons"] == {"method": 1}
    assert claude["api.github.com"]["last_seen"] == rec["post"]["time"]
    assert claude["evil.test"] == {"host": "evil.test", "allowed": 0, "blocked": 2, "reasons": {"no-rule": 2},
                                   "last_seen": rec["evil"]["time"]}
    assert agents["codex"]["example.org"]["reasons"] == {"no-rule": 1}
    assert agents["codex"]["pypi.org"]["allowed"] == 1 and agents["codex"]["pypi.org"]["reasons"] == {}
    # A listener doctor.json does not name is shown by its port; not a host-level port: 1.1.1.1:53.
    assert agents["listener 8079"] == {"1.1.1.1:53": {"host": "1.1.1.1:53", "allowed": 0, "blocked": 1,
                                                      "reasons": {"not-http": 1}, "last_seen": rec["udp"]["time"]}}
    by_name = {a["agent"]: a for a in data["agents"]}
    assert (by_name["claude"]["listener"], by_name["claude"]["allowed"], by_name["claude"]["blocked"]) == (8080, 3, 3)
    assert by_name["listener 8079"]["listener"] is None
    # Not JSON, a time that is not the proxy's, a JSON list; the empty line is not counted.
    assert data["malformed"] == 3
    assert data["malformed_at"] == ["audit.jsonl.1 line 3", "audit.jsonl line 4", "audit.jsonl line 8"]


def test_summary_as_text(doctor, capsys, log):
    path, rec, config = log
    rc, out, _err = run(doctor, capsys, config)
    assert rc == 0
    assert out.startswith("Audit log: %s.1, %s\n" % (path, path))
    assert "claude (listener 8080): 3 allowed, 3 blocked" in out
    last = rec["evil"]["time"][:19].replace("T", " ")
    assert re.search(r"\n  evil\.test +0 +2  %s  no-rule 2\n" % re.escape(last), out), out
    assert "listener 8079 (no agent in doctor.json): 0 allowed, 1 blocked" in out
    assert "3 malformed lines skipped (not audit records): audit.jsonl.1 line 3, audit.jsonl line 4" in out


def test_since_leaves_out_older_lines_and_the_rotated_file(doctor, capsys, log):
    path, rec, config = log
    data, agents = summary(doctor, capsys, config, "--since", "1h")
    # .1 was last written three hours ago: nothing in it is recent enough, so it is not read.
    assert data["files"] == [str(path)] and data["since_age"] == "1h"
    assert agents["claude"]["evil.test"]["blocked"] == 1
    assert agents["claude"]["api.github.com"]["allowed"] == 2
    assert data["malformed"] == 2
    # 45 minutes cut between the first requests (50 minutes ago) and the refusal of evil.test (40).
    data, agents = summary(doctor, capsys, config, "--since", "45m")
    assert "api.github.com" in agents["claude"] and agents["claude"]["api.github.com"]["allowed"] == 0
    assert agents["claude"]["evil.test"]["blocked"] == 1
    # Control: reaching back four hours reads the rotated file again.
    data, agents = summary(doctor, capsys, config, "--since", "4h")
    assert data["files"] == [str(path) + ".1", str(path)]
    assert agents["claude"]["evil.test"]["blocked"] == 2 and agents["claude"]["api.github.com"]["allowed"] == 3
    for age in ("2d", "3600s"):
        assert summary(doctor, capsys, config, "--since", age)[1]["claude"]["evil.test"]["blocked"] == 2 - (age == "3600s")


def test_bad_since_is_refused(doctor, capsys, log):
    rc, _out, err = run(doctor, capsys, log[2], "--since", "1 week")
    assert rc == 2 and "45s, 30m, 1h or 2d" in err


def test_one_agent(doctor, capsys, log):
    _path, _rec, config = log
    data, agents = summary(doctor, capsys, config, "--agent", "codex")
    assert list(agents) == ["codex"] and set(agents["codex"]) == {"example.org", "pypi.org"}
    assert list(summary(doctor, capsys, config, "--agent", "8079")[1]) == ["listener 8079"]
    rc, _out, err = run(doctor, capsys, config, "--agent", "nobody")
    assert rc == 2 and "no agent nobody in doctor.json (agents: claude, codex" in err


def test_blocked_only(doctor, capsys, log):
    _path, _rec, config = log
    _data, agents = summary(doctor, capsys, config, "--blocked")
    assert "pypi.org" not in agents["codex"]  # allowed only
    assert all(h["allowed"] == 0 for hosts in agents.values() for h in hosts.values())
    assert agents["claude"]["evil.test"]["blocked"] == 2 and agents["claude"]["api.github.com"]["blocked"] == 1
    rc, out, _err = run(doctor, capsys, config, "--blocked", "--agent", "claude")
    assert rc == 0 and "claude (listener 8080): 3 blocked" in out and "ALLOWED" not in out
    assert "codex" not in out and "blocked requests only, agent claude only" in out


def test_what_the_agent_wrote_cannot_drive_the_terminal(doctor, capsys, tmp_path):
    path = tmp_path / "audit.jsonl"
    now = time.time()
    path.write_text(line(request(now, 8080, "GET", "evil\x1b]0;owned\x07.test", "block", "no-rule",
                                 path="/\x1b[2J\u202e")))
    config = write_config(tmp_path, path)
    rc, out, _err = run(doctor, capsys, config)
    assert rc == 0 and "evil\\x1b]0;owned\\x07.test" in out and "\x1b" not in out and "\x07" not in out


def test_no_log_and_unreadable_log_say_what_to_do(doctor, capsys, tmp_path):
    config = write_config(tmp_path, tmp_path / "audit.jsonl")
    rc, _out, err = run(doctor, capsys, config)
    assert rc == 2 and "no audit log at %s" % (tmp_path / "audit.jsonl") in err
    # A folder where the file should be: cannot be read, and it is said, not raised.
    (tmp_path / "audit.jsonl").mkdir()
    rc, _out, err = run(doctor, capsys, config)
    assert rc == 2 and "cannot read %s" % (tmp_path / "audit.jsonl") in err


def reader(stream):
    """A queue of the lines of stream, read in a thread of its own."""
    lines = queue.Queue()

    def read():
        for text in iter(stream.readline, ""):
            lines.put(text.rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    return lines


def test_follow_prints_each_request_and_follows_the_rotation(doctor, tmp_path, log):
    path, rec, config = log
    proc = subprocess.Popen([sys.executable, doctor.__file__, "log", "--follow", "--config", str(config)],  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BUFFERED)
    try:
        out, err = reader(proc.stdout), reader(proc.stderr)
        # Once it says it follows, it is at the end of the file: what was there before is not printed.
        assert err.get(timeout=WAIT).startswith("agent-sandbox log: following %s" % path)
        now = time.time()
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line(request(now, 8080, "GET", "api.github.com", "allow", path="/x")))
            fh.write(line(request(now, 8081, "CONNECT", "evil.test", "block", "no-rule")))
        assert out.get(timeout=WAIT).endswith("claude       allowed  GET https://api.github.com/x  200")
        assert out.get(timeout=WAIT).endswith("codex        BLOCKED  CONNECT evil.test:443  [no-rule]  403")
        # The proxy's rotation: a last line, FILE.1 to FILE.2, FILE to FILE.1, a new FILE.
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line(request(now, 8080, "GET", "before.test", "block", "no-rule", path="/last")))
        os.replace(str(path) + ".1", str(path) + ".2")
        os.replace(path, str(path) + ".1")
        path.write_text("not json\n" + line(request(now, 8080, "GET", "after.test", "allow", path="/first")))
        assert "BLOCKED  GET https://before.test/last" in out.get(timeout=WAIT)
        assert "MALFORMED line" in out.get(timeout=WAIT)
        assert "allowed  GET https://after.test/first" in out.get(timeout=WAIT)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(WAIT)


def test_follow_json_with_since_and_filters(doctor, tmp_path, log):
    """--since prints the earlier lines first (the rotated file too), then follows; one JSON object a line."""
    path, rec, config = log
    proc = subprocess.Popen([sys.executable, doctor.__file__, "log", "--follow", "--json", "--blocked", "--since",  # pylint: disable=consider-using-with
                             "4h", "--agent", "claude", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BUFFERED)
    try:
        out, err = reader(proc.stdout), reader(proc.stderr)
        assert err.get(timeout=WAIT).startswith("agent-sandbox log: following")
        later = [request(time.time(), 8081, "CONNECT", "codex.test", "block", "no-rule"),
                 request(time.time(), 8080, "CONNECT", "ok.test", "allow"),
                 request(time.time(), 8080, "CONNECT", "new.test", "block", "no-rule")]
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(line(r) for r in later))
        got = [json.loads(out.get(timeout=WAIT))]
        while got[-1].get("host") != "new.test":
            got.append(json.loads(out.get(timeout=WAIT)))
        # Claude's refusals, old and new, in the order written; codex's and the allowed ones left out.
        wanted = [rec["old_block"], rec["evil"], rec["post"], later[2]]
        assert [g for g in got if "malformed" not in g] == [dict(r, agent="claude") for r in wanted]
        # The three malformed lines of the two files are shown where they are: they have no agent or time.
        assert len(got) == len(wanted) + 3 and got[1] == {"malformed": True, "log": str(path)}
    finally:
        proc.terminate()
        proc.wait(WAIT)


def test_follower_reads_the_old_file_to_its_end_before_the_new_one(doctor, tmp_path):
    """The Follower step by step, no thread: a rename with no new file yet, then the new file."""
    audit = doctor.sibling("agent_sandbox_audit")
    path = tmp_path / "audit.jsonl"
    path.write_text("old 1\n")
    seen = []
    follower = audit.Follower(str(path), seen.append)
    assert follower.open(at_end=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("old 2\nold 3 (half")
        fh.flush()
        follower.step()
        assert seen == [b"old 2"]
        fh.write(" written)\n")
    os.replace(path, str(path) + ".1")
    follower.step()  # renamed, no new file yet: keeps reading the old one
    assert seen == [b"old 2", b"old 3 (half written)"]
    path.write_text("new 1\n")
    with open(str(path) + ".1", "a", encoding="utf-8") as fh:
        fh.write("old 4 (written before the proxy noticed)\n")
    follower.step()
    assert seen[2:] == [b"old 4 (written before the proxy noticed)", b"new 1"]
    with open(str(path) + ".1", "a", encoding="utf-8") as fh:
        fh.write("old 5 (an outside rotation: the proxy is still writing there)\n")
    follower.step()
    assert seen[4:] == [b"old 5 (an outside rotation: the proxy is still writing there)"]
    follower.close()


def test_stamp_matches_the_proxy(doctor):
    audit = doctor.sibling("agent_sandbox_audit")
    assert audit.record_time("2026-05-02T10:31:07.412Z") == pytest.approx(1777717867.412)
    assert audit.record_time(stamp(1777717867.412)) == pytest.approx(1777717867.412)
    assert audit.record_time("2026-05-02 10:31:07") is None and audit.record_time(None) is None
    assert [audit.parse_age(a) for a in ("45s", "30m", "1h", "2d")] == [45, 1800, 3600, 172800]


def test_a_file_under_two_names_is_read_once(doctor, capsys, log):
    """Mid-rotation, the file just opened as FILE may be FILE.1 by the time FILE.1 is opened."""
    path, _rec, config = log
    os.replace(str(path) + ".1", str(path) + ".2")
    os.link(path, str(path) + ".1")
    data, agents = summary(doctor, capsys, config)
    assert data["files"] == [str(path) + ".2", str(path)]
    assert agents["claude"]["evil.test"]["blocked"] == 2 and agents["claude"]["api.github.com"]["allowed"] == 3
