# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox log: what the proxy allowed and refused, read from its audit log.

The proxy writes one JSON object per line (docs/proxy-policy.md, "Audit log") to
/var/log/agent-sandbox/proxy/audit.jsonl and renames it to .1 (.1 to .2, ... up to .5) when it
grows too large. The file is 0640 for the audit group (adm on Debian, admin on macOS): its members
read it without sudo, and nothing here needs root.

`agent-sandbox log` sums it up per agent (the listener port, named from doctor.json) and per host;
`--follow` prints each request as it is written and keeps going across a rotation. Lines that are
not audit records are counted and reported, never fatal. Every string that came from a request
(host, path, method) is printed with its control characters escaped: the agent chooses them, and
they must not drive the admin's terminal.

The selftest role installs this file next to agent_sandbox_doctor.py, whose main() runs it.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import sys
import time

AUDIT_LOG = "/var/log/agent-sandbox/proxy/audit.jsonl"
BACKUPS = 5  # the proxy keeps FILE.1 .. FILE.5 (agent_sandbox_audit_backups)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MALFORMED_SHOWN = 5


class LogError(Exception):
    """The audit log cannot be read at all: the message says what to do."""


def parse_age(text):
    """Seconds in `45s`, `30m`, `1h` or `2d`; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not match:
        raise ValueError("%r is not an age such as 45s, 30m, 1h or 2d" % text)
    return int(match.group(1)) * UNITS[match.group(2)]


def record_time(text):
    """Seconds since the epoch of an audit time such as 2026-05-02T10:31:07.412Z, or None."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    try:
        return datetime.datetime.fromisoformat(text[:-1] + "+00:00").timestamp()
    except ValueError:
        return None


def shown_time(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def printable(value):
    """value as text a terminal shows as it is: control and format characters escaped."""
    text = "-" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "\\x%02x" % ord(ch) if ord(ch) < 0x100 else "\\u%04x" % ord(ch)
                   for ch in text)


def parse(line):
    """(record, seconds) of one line of the log, or None when it is not an audit record."""
    try:
        record = json.loads(line)
    except ValueError:  # also a UnicodeDecodeError
        return None
    if not isinstance(record, dict) or record.get("decision") not in ("allow", "block"):
        return None
    seconds = record_time(record.get("time"))
    return None if seconds is None else (record, seconds)


def agent_names(cfg):
    """{listener port: agent name} from doctor.json."""
    names = {}
    for agent in cfg.get("agents") or []:
        try:
            names[int(agent["proxy_port"])] = str(agent["name"])
        except (KeyError, TypeError, ValueError):
            continue
    return names


def who(record, names):
    """The agent behind a record: its name, or `listener PORT` for a listener doctor.json does not name."""
    listener = record.get("listener")
    try:
        return names[int(listener)]
    except (KeyError, TypeError, ValueError):
        return "listener %s" % printable(listener)


def host_of(record):
    host, port = printable(record.get("host")), record.get("port")
    if ":" in host:
        host = "[%s]" % host
    return host if port in (80, 443, None) else "%s:%s" % (host, printable(port))


def target_of(record):
    """What the agent asked for: `CONNECT host:443`, `GET https://host/path`, `udp host:53`."""
    host, port, method = printable(record.get("host")), record.get("port"), record.get("method")
    if ":" in host:
        host = "[%s]" % host
    if method == "CONNECT" or method is None:
        return "%s %s:%s" % ("CONNECT" if method else printable(record.get("scheme")), host, printable(port))
    scheme = printable(record.get("scheme") or "http")
    default = {"https": 443, "http": 80}.get(scheme)
    where = host if port in (default, None) else "%s:%s" % (host, printable(port))
    return "%s %s://%s%s" % (printable(method), scheme, where, printable(record.get("path") or ""))


class Filter:
    """Which records count: --agent, --blocked and --since."""

    def __init__(self, names, agent=None, blocked=False, since=None):
        self.names, self.agent, self.blocked, self.since = names, agent, blocked, since

    def __call__(self, record, seconds):
        if self.blocked and record["decision"] != "block":
            return False
        if self.since is not None and seconds < self.since:
            return False
        if self.agent is not None:
            return self.agent in (who(record, self.names), str(record.get("listener")))
        return True


class Reading:
    """The files read, and the lines in them that were not audit records."""

    def __init__(self, path):
        self.path = path
        self.files = []
        self.unreadable = []
        self.malformed = 0
        self.malformed_at = []
        self.exists = False
        self.refused = None  # (path, error) of a file that could not be opened

    def bad(self, path, number):
        self.malformed += 1
        if len(self.malformed_at) < MALFORMED_SHOWN:
            self.malformed_at.append("%s line %d" % (os.path.basename(path), number))

    def open_files(self, since):
        """The live file and the rotated ones that since reaches, as (path, open file), oldest first.

        They are opened newest first, and a file met twice under two names is read once: a rotation
        meanwhile (FILE to FILE.1, FILE.1 to FILE.2, ...) then neither hides a file nor repeats one.
        A rotated file last written before since holds nothing newer (its mtime is its last line's
        time): it is left out, and so are the older ones."""
        opened, inodes = [], set()
        for path in [self.path] + ["%s.%d" % (self.path, n) for n in range(1, BACKUPS + 1)]:
            try:
                fh = open(path, "rb")  # pylint: disable=consider-using-with  # the caller closes it
            except FileNotFoundError:
                if path == self.path:
                    continue  # between a rotation and the next line, or before the first
                break
            except OSError as exc:
                # The live file's refusal is the one to report, if it is refused.
                if self.refused is None or path == self.path:
                    self.refused = (path, exc)
                self.unreadable.append("%s: %s" % (path, exc.strerror or exc))
                continue
            self.exists = True
            st = os.fstat(fh.fileno())
            if st.st_ino in inodes or (since is not None and st.st_mtime < since):
                fh.close()
                if st.st_ino in inodes:
                    continue
                break
            inodes.add(st.st_ino)
            opened.append((path, fh))
        return opened[::-1]

    def records(self, since=None):
        """Every audit record (record, seconds) of the files since reaches, oldest file first."""
        files = self.open_files(since)
        if not files and self.refused:
            raise LogError(cannot_read(*self.refused))
        if not files and not self.exists:
            raise LogError(not_found(self.path))
        try:
            for path, fh in files:
                self.files.append(path)
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    parsed = parse(line)
                    if parsed is None:
                        self.bad(path, number)
                    else:
                        yield parsed
        finally:  # also when the caller stops early
            for _path, fh in files:
                fh.close()


def not_found(path):
    return ("no audit log at %s: the proxy has not written one yet, or logs elsewhere (`audit_log` in"
            " /etc/agent-sandbox/doctor.json)" % path)


def cannot_read(path, exc):
    if isinstance(exc, PermissionError):
        return ("cannot read %s: %s. Members of the audit group read it without sudo (mitm_proxy_audit_group:"
                " adm on Debian, admin on macOS); ask root to add you (usermod -aG GROUP NAME), then log in"
                " again." % (path, exc.strerror))
    return "cannot read %s: %s" % (path, exc.strerror or exc)


# --------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------

def summarise(records, names, keep):
    """{agent: {host: counts}} of the records keep() lets through, agents in doctor.json's order first."""
    agents = {name: {} for name in names.values()}
    for record, seconds in records:
        if not keep(record, seconds):
            continue
        hosts = agents.setdefault(who(record, names), {})
        host = hosts.setdefault(host_of(record), {"allowed": 0, "blocked": 0, "reasons": {}, "last": None})
        if record["decision"] == "allow":
            host["allowed"] += 1
        else:
            host["blocked"] += 1
            reason = printable(record.get("reason") or "unknown")
            host["reasons"][reason] = host["reasons"].get(reason, 0) + 1
        if host["last"] is None or seconds >= host["last"][0]:
            host["last"] = (seconds, record["time"])
    return agents


def ordered_hosts(hosts):
    """Most blocked first, then most allowed, then by name."""
    return sorted(hosts.items(), key=lambda item: (-item[1]["blocked"], -item[1]["allowed"], item[0]))


def summary_json(agents, names, reading, keep, since_text):
    listeners = {name: port for port, name in names.items()}
    return {
        "log": reading.path,
        "files": reading.files,
        "unreadable": reading.unreadable,
        "since": None if keep.since is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(keep.since)),
        "since_age": since_text,
        "only_blocked": keep.blocked,
        "agent": keep.agent,
        "malformed": reading.malformed,
        "malformed_at": reading.malformed_at,
        "agents": [{
            "agent": agent,
            "listener": listeners.get(agent),
            "allowed": sum(h["allowed"] for h in hosts.values()),
            "blocked": sum(h["blocked"] for h in hosts.values()),
            "hosts": [{"host": host, "allowed": h["allowed"], "blocked": h["blocked"],
                       "reasons": dict(sorted(h["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))),
                       "last_seen": h["last"][1]} for host, h in ordered_hosts(hosts)],
        } for agent, hosts in agents.items() if hosts or keep.agent in (None, agent)],
    }


def table(rows):
    """Rows of cells as lines with aligned columns (numbers to the right)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.rjust(w) if cell.isdigit() else cell.ljust(w)
                             for cell, w in zip(row, widths)).rstrip() for row in rows]


def summary_text(summary):
    """The summary as the admin reads it."""
    lines = ["Audit log: %s" % (", ".join(summary["files"]) or "%s (nothing in it is recent enough)" % summary["log"])]
    scope = []
    if summary["since"]:
        scope.append("since %s UTC (%s)" % (summary["since"].replace("T", " ").rstrip("Z"), summary["since_age"]))
    if summary["only_blocked"]:
        scope.append("blocked requests only")
    if summary["agent"]:
        scope.append("agent %s only" % printable(summary["agent"]))
    if scope:
        lines.append("Showing " + ", ".join(scope) + ".")
    shown = [a for a in summary["agents"] if a["hosts"]]
    for agent in summary["agents"]:
        where = " (listener %s)" % agent["listener"] if agent["listener"] else " (no agent in doctor.json)"
        if not agent["hosts"]:
            lines += ["", "%s%s: nothing" % (agent["agent"], where)]
            continue
        counts = "%d blocked" % agent["blocked"]
        if not summary["only_blocked"]:
            counts = "%d allowed, %s" % (agent["allowed"], counts)
        lines += ["", "%s%s: %s" % (agent["agent"], where, counts)]
        header = ["HOST"] + ([] if summary["only_blocked"] else ["ALLOWED"]) + ["BLOCKED", "LAST SEEN (UTC)", "REASONS"]
        rows = [header] + [[h["host"]] + ([] if summary["only_blocked"] else [str(h["allowed"])])
                           + [str(h["blocked"]), shown_time(record_time(h["last_seen"])),
                              ", ".join("%s %d" % kv for kv in h["reasons"].items()) or "-"]
                           for h in agent["hosts"]]
        lines += table(rows)
    if not shown:
        lines += ["", "No requests%s." % (" match" if scope else " in the log")]
    for entry in summary["unreadable"]:
        lines.append("Not read: %s" % entry)
    if summary["malformed"]:
        lines += ["", "%d malformed line%s skipped (not audit records): %s%s" % (
            summary["malformed"], "" if summary["malformed"] == 1 else "s", ", ".join(summary["malformed_at"]),
            ", ..." if summary["malformed"] > len(summary["malformed_at"]) else "")]
    return lines


def blocked_recently(cfg, seconds, now=None):
    """(blocked count per agent, total) of the last `seconds`, for `agent-sandbox status`; LogError if unreadable."""
    names = agent_names(cfg)
    since = (time.time() if now is None else now) - seconds
    reading = Reading(cfg.get("audit_log") or AUDIT_LOG)
    keep = Filter(names, blocked=True, since=since)
    agents = summarise(reading.records(since), names, keep)
    counts = {agent: sum(h["blocked"] for h in hosts.values()) for agent, hosts in agents.items()}
    return counts, sum(counts.values()), reading


# --------------------------------------------------------------------------
# --follow
# --------------------------------------------------------------------------

class Follower:
    """Reads the live log as it grows and follows it across a rotation.

    step() reads what was written since the last step and hands each whole line to on_line.
    When the path names another file (the proxy renamed the log to .1 and started a new one), the
    rest of the old file is read first, then the new one from its start. An outside rotation
    (logrotate) is noticed by the proxy within a second, so the old file is still read for a few
    seconds after the switch: a line written there meanwhile is not lost.
    """

    LINGER = 3.0

    def __init__(self, path, on_line):
        self.path, self.on_line = path, on_line
        self.fh, self.ino, self.rest = None, None, b""
        self.old = None  # [file, rest, read until (monotonic)]

    def open(self, at_end):
        """Open the live file (at its end, or at its start); False while it does not exist."""
        try:
            fh = open(self.path, "rb")  # pylint: disable=consider-using-with  # kept open while following
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LogError(cannot_read(self.path, exc)) from exc
        if at_end:
            fh.seek(0, os.SEEK_END)
        self.fh, self.ino, self.rest = fh, os.fstat(fh.fileno()).st_ino, b""
        return True

    def _read(self, fh, rest):
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                return rest
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    self.on_line(line)

    def step(self):
        if self.old:
            self.old[1] = self._read(self.old[0], self.old[1])
            if time.monotonic() > self.old[2]:
                self.old[0].close()
                self.old = None
        if self.fh is None and not self.open(at_end=False):
            return
        if os.fstat(self.fh.fileno()).st_size < self.fh.tell():
            self.fh.seek(0)  # truncated in place
            self.rest = b""
        self.rest = self._read(self.fh, self.rest)
        try:
            moved = os.stat(self.path).st_ino != self.ino
        except FileNotFoundError:
            return  # renamed, the new one not made yet: keep reading the old one
        if moved:
            if self.old:
                self.old[0].close()
            self.old = [self.fh, self.rest, time.monotonic() + self.LINGER]
            self.fh = None
            if self.open(at_end=False):
                self.rest = self._read(self.fh, self.rest)

    def close(self):
        for fh in (self.fh, self.old[0] if self.old else None):
            if fh:
                fh.close()


def follow_line(record, names):
    """One request as one line: time, agent, allowed or BLOCKED (and why), what was asked, the status."""
    blocked = record["decision"] == "block"
    status = record.get("status")
    return "%s  %-12s %-8s %s%s%s" % (
        shown_time(record_time(record["time"])), printable(who(record, names)),
        "BLOCKED" if blocked else "allowed", target_of(record),
        "  [%s]" % printable(record.get("reason") or "unknown") if blocked else "",
        "  %s" % printable(status) if status is not None else "")


def follow(path, names, keep, as_json, out, poll=0.25):
    """Print each new line of the log (from keep.since, if given, else from now) until interrupted."""
    def emit(line):
        parsed = parse(line)
        if parsed is None:
            out.write((json.dumps({"malformed": True, "log": path}) if as_json
                       else "%s  MALFORMED line in the audit log (not an audit record)" % shown_time(time.time()))
                      + "\n")
        elif keep(*parsed):
            record = parsed[0]
            out.write((json.dumps(dict(record, agent=who(record, names))) if as_json
                       else follow_line(record, names)) + "\n")
        else:
            return
        out.flush()

    follower = Follower(path, emit)
    if keep.since is not None:
        reading = Reading(path)
        for rotated, fh in reading.open_files(keep.since):
            with fh:
                if rotated == path:
                    continue  # the follower reads it, from its start
                for line in fh:
                    if line.strip():
                        emit(line.rstrip(b"\n"))
        for entry in reading.unreadable:
            print("agent-sandbox log: not read: %s" % entry, file=sys.stderr)
    opened = follower.open(at_end=keep.since is None)
    print("agent-sandbox log: following %s%s (Ctrl-C to stop)" % (
        path, "" if opened else ", which does not exist yet"), file=sys.stderr, flush=True)
    try:
        while True:
            follower.step()
            time.sleep(poll)
    finally:
        follower.close()


def run(args, cfg):
    """`agent-sandbox log`: exit 0, or 2 when the log cannot be read."""
    names = agent_names(cfg)
    path = cfg.get("audit_log") or AUDIT_LOG
    if args.agent is not None and args.agent not in names.values() and not args.agent.isdigit():
        print("agent-sandbox log: no agent %s in doctor.json (agents: %s; a listener port also works)"
              % (printable(args.agent), ", ".join(names.values()) or "none"), file=sys.stderr)
        return 2
    try:
        since = None if args.since is None else time.time() - parse_age(args.since)
    except ValueError as exc:
        print("agent-sandbox log: --since: %s" % exc, file=sys.stderr)
        return 2
    keep = Filter(names, agent=args.agent, blocked=args.blocked, since=since)
    try:
        if args.follow:
            follow(path, names, keep, args.json, sys.stdout)
        reading = Reading(path)
        agents = summarise(reading.records(since), names, keep)
    except LogError as exc:
        print("agent-sandbox log: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # how --follow ends
        return 0
    except BrokenPipeError:  # agent-sandbox log --follow | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    summary = summary_json(agents, names, reading, keep, args.since)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(summary_text(summary)))
    return 0
