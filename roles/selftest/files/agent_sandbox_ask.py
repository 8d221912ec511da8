# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox ask, pending, allow, deny, revoke and learn: the admin's answers at run time.

They write the proxy's control file (/etc/agent-sandbox/control.json, root's, 0644), which the
proxy reads within a second, like its policy; nothing restarts. The proxy lists the requests it holds
in ask mode in pending.json beside its audit log (0640, the audit group). The format of both is in
docs/proxy-policy.md, "Ask and learn".

What an answer can open is narrow: one exact host name on port 80 or 443 for one agent's listener,
never an IP literal, a local name or a wildcard, and never a secret (the proxy checks the same when it
reads the file, and refuses the whole file otherwise). `--always` approvals stay in the control file
until revoked; the next site.yml run lists those the inventory lacks.

The selftest role installs this file next to agent_sandbox_doctor.py, whose main() runs it.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import importlib.util
import json
import os
import re
import signal
import sys
import time

CONTROL = "/etc/agent-sandbox/control.json"
PENDING = "/var/log/agent-sandbox/proxy/pending.json"
ASKABLE_PORTS = (80, 443)
DENY_FOR = 600
FOLD_AT = 3  # siblings under one parent before learn proposes "*.parent"
PSL_FILES = ("/usr/share/publicsuffix/public_suffix_list.dat", "/usr/share/publicsuffix/public_suffix_list.dat.gz")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_LOCAL = ("localhost", "local", "internal", "localdomain")
PRIVATE = re.compile(r"\(private address ([0-9a-fA-F.:]+)\)")


class Refused(Exception):
    """What the admin asked cannot be done: the message says why, and nothing was changed."""


@functools.lru_cache(maxsize=None)
def audit():
    """agent_sandbox_audit.py, installed beside this file (its reader of the audit log, its table)."""
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "agent_sandbox_audit.py")
    spec = importlib.util.spec_from_file_location("agent_sandbox_audit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def approvable(host, port):
    """None if host:port may be opened at run time, else why not (the proxy applies the same rule)."""
    labels = host.split(".")
    if not host.isascii() or host != host.lower() or len(host) > 253 or len(labels) < 2 \
            or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit() \
            or any(label.startswith("xn--") for label in labels):
        return "%s is not a plain lowercase DNS name (IP literals and unusual spellings need a rule in the inventory)" % host
    if labels[-1] in _LOCAL or host.endswith(".home.arpa"):
        return "%s names this machine or a local network" % host
    if port not in ASKABLE_PORTS:
        return "port %s is not 80 or 443" % port
    return None


# --------------------------------------------------------------------------
# The control file
# --------------------------------------------------------------------------

def need_root(command):
    if os.geteuid() != 0:
        raise Refused("agent-sandbox %s changes the proxy's control file, which only root writes: run it with sudo"
                      % command)


def read_control(path):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return {"version": 1}
    except (OSError, ValueError) as exc:
        raise Refused("cannot read %s (%s); fix or remove it first" % (path, exc)) from None
    if not isinstance(doc, dict) or doc.get("version", 1) != 1:
        raise Refused("%s is not a version 1 control file; fix or remove it first" % path)
    return doc


@contextlib.contextmanager
def changing(path):
    """The control document, written back atomically (0644, root's) when the block ends without an error.
    One writer at a time: two admins answering at once do not lose each other's answer."""
    with open(path + ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = read_control(path)
        yield doc
        drop_expired(doc, time.time())
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o644)
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)


def drop_expired(doc, now):
    for section in ("approved", "denied"):
        kept = [e for e in doc.get(section, []) if e.get("until") is None or e["until"] > now]
        if kept:
            doc[section] = kept
        else:
            doc.pop(section, None)
    learn = {port: v for port, v in doc.get("learn", {}).items() if v.get("until", 0) > now}
    if learn:
        doc["learn"] = learn
    else:
        doc.pop("learn", None)
    if not doc.get("ask"):
        doc.pop("ask", None)


def listener_of(cfg, agent):
    """The listener port of the agent named in doctor.json (or given as a port number)."""
    names = audit().agent_names(cfg)
    for port, name in names.items():
        if agent in (name, str(port)):
            return port, name
    raise Refused("no agent %s in doctor.json (agents: %s)" % (audit().printable(agent), ", ".join(names.values()) or "none"))


def read_pending(path, now):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return []
    except PermissionError as exc:
        raise Refused("cannot read %s: %s (members of the audit group can)" % (path, exc.strerror)) from None
    except (OSError, ValueError) as exc:
        raise Refused("cannot read %s (%s)" % (path, exc)) from None
    entries = doc.get("pending") if isinstance(doc, dict) else None
    # A proxy that stopped while holding requests leaves its list behind: only the live ones count.
    return [e for e in entries or [] if isinstance(e, dict) and e.get("expires", 0) > now]


def parse_age(text, option):
    try:
        return audit().parse_age(text)
    except ValueError as exc:
        raise Refused("%s: %s" % (option, exc)) from None


# --------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------

def cmd_ask(args, cfg, paths):
    need_root("ask")
    port, name = listener_of(cfg, args.agent)
    if not 0 < args.timeout <= 3600:
        raise Refused("--timeout must be from 1 to 3600 seconds")
    with changing(paths["control"]) as doc:
        ask = doc.setdefault("ask", {})
        if args.state == "on":
            ask[str(port)] = {"timeout": args.timeout}
        else:
            ask.pop(str(port), None)
    print("ask mode %s for %s (listener %d)%s" % (
        args.state, name, port, ": a request to a host with no rule waits up to %d s for `agent-sandbox allow`"
        % args.timeout if args.state == "on" else ""))
    return 0


def cmd_pending(args, cfg, paths):
    now = time.time()
    names = audit().agent_names(cfg)
    entries = read_pending(paths["pending"], now)
    control = read_control(paths["control"])
    approvals = [e for e in control.get("approved", []) if e.get("until") is None or e["until"] > now]
    if args.json:
        print(json.dumps({"pending": entries, "approved": approvals,
                          "ask": control.get("ask", {}), "learn": control.get("learn", {})}, indent=2))
        return 0
    printable = audit().printable
    lines = []
    if entries:
        rows = [["ID", "AGENT", "REQUEST", "LEADS TO", "WAITING", "ANSWER WITHIN"]] + [[
            printable(e.get("id")), printable(names.get(e.get("listener"), "listener %s" % e.get("listener"))),
            "%s %s:%s%s" % (printable(e.get("method")), printable(e.get("host")), printable(e.get("port")),
                            printable(e.get("path") or "")),
            printable(", ".join(e.get("addresses") or []) or "?") + (" (PRIVATE)" if e.get("private") else ""),
            "%ds" % (now - e.get("since", now)), "%ds" % (e["expires"] - now)] for e in entries]
        lines += ["Held, waiting for an answer (agent-sandbox allow ID [--for 1h | --always] or deny ID):"]
        lines += audit().table(rows)
    else:
        asking = ", ".join(names.get(int(p), p) for p in control.get("ask", {})) or "no agent"
        lines.append("Nothing is waiting (ask mode is on for %s)." % asking)
    if approvals:
        rows = [["AGENT", "HOST", "PORT", "UNTIL (UTC)", "ID"]] + [[
            printable(names.get(e["listener"], e["listener"])), printable(e["host"]), str(e["port"]),
            "always" if e.get("until") is None else audit().shown_time(e["until"]), printable(e.get("id", ""))]
            for e in approvals]
        lines += ["", "Approved at run time (agent-sandbox revoke HOST --agent NAME takes one back):"]
        lines += audit().table(rows)
    print("\n".join(lines))
    return 0


def answer(args, cfg, paths, verdict):
    need_root(verdict)
    now = time.time()
    found = [e for e in read_pending(paths["pending"], now) if e.get("id") == args.id]
    if not found:
        raise Refused("nothing is waiting with id %s (agent-sandbox pending lists them; a request waits only"
                      " as long as its listener's ask timeout)" % audit().printable(args.id))
    entry = found[0]
    host, port, listener = entry.get("host"), entry.get("port"), entry.get("listener")
    why = approvable(str(host), port) if isinstance(host, str) and isinstance(port, int) else "a malformed entry"
    if why:
        raise Refused("%s cannot be %s at run time: %s" % (audit().printable(host), "approved" if verdict == "allow"
                                                           else "denied", why))
    if verdict == "allow":
        until = None if args.always else now + parse_age(args.for_, "--for")
        section = "approved"
    else:
        until = now + (parse_age(args.for_, "--for") if args.for_ else DENY_FOR)
        section = "denied"
    with changing(paths["control"]) as doc:
        entries = [e for e in doc.get(section, [])
                   if (e.get("listener"), e.get("host"), e.get("port")) != (listener, host, port)]
        entries.append({"id": args.id, "listener": listener, "host": host, "port": port, "until": until,
                        "added": round(now), "by": os.environ.get("SUDO_USER") or "root"})
        doc[section] = entries
        if verdict == "allow":   # an approval ends an earlier denial of the same target
            doc["denied"] = [e for e in doc.get("denied", [])
                             if (e.get("listener"), e.get("host"), e.get("port")) != (listener, host, port)]
    name = audit().agent_names(cfg).get(listener, "listener %s" % listener)
    print("%s %s:%s for %s %s" % ("allowed" if verdict == "allow" else "denied", host, port, name,
                                  "always (kept in %s; add it to the inventory)" % paths["control"] if until is None
                                  else "until %s UTC" % audit().shown_time(until)))
    return 0


def cmd_revoke(args, cfg, paths):
    need_root("revoke")
    port, name = listener_of(cfg, args.agent)
    with changing(paths["control"]) as doc:
        before = doc.get("approved", [])
        doc["approved"] = [e for e in before if (e.get("listener"), e.get("host")) != (port, args.host)]
        removed = len(before) - len(doc["approved"])
    if not removed:
        raise Refused("%s was not approved at run time for %s" % (audit().printable(args.host), name))
    print("revoked %s for %s (%d approval%s)" % (args.host, name, removed, "" if removed == 1 else "s"))
    return 0


# --------------------------------------------------------------------------
# learn
# --------------------------------------------------------------------------

def public_suffixes():
    """The Public Suffix List's rules if this machine has a copy (Debian's publicsuffix package), else None."""
    for path in PSL_FILES:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                return {line.strip().lstrip("!").lstrip("*.") for line in fh
                        if line.strip() and not line.startswith("//")}
        except OSError:
            continue
    return None


def segment(path):
    """The first path segment as a prefix rule ("/simple/"), or None for the root or an odd path."""
    if not path or not path.startswith("/"):
        return None
    parts = path.split("?", 1)[0].split("/")
    if len(parts) < 3 or not parts[1] or parts[1] in (".", ".."):
        return None
    return "/%s/" % parts[1]


def propose(records, suffixes):
    """[(pattern, rule dict, hosts folded in)] for the allowed records of a learning run."""
    hosts = {}
    for record in records:
        host = record.get("host")
        if not isinstance(host, str):
            continue
        entry = hosts.setdefault(host.lower(), {"ports": set(), "methods": set(), "paths": set(), "count": 0,
                                                "private": set()})
        entry["count"] += 1
        private = PRIVATE.search(str(record.get("rule") or ""))
        if private:
            entry["private"].add(private.group(1))
        if isinstance(record.get("port"), int):
            entry["ports"].add(record["port"])
        method = record.get("method")
        if method and method != "CONNECT":
            entry["methods"].add(method)
            entry["paths"].add(segment(record.get("path")))
    parents = {}
    for host in hosts:
        if approvable(host, 443) is None and host.count(".") >= 2:
            parents.setdefault(host.split(".", 1)[1], []).append(host)
    groups = []
    folded = set()
    for parent, children in sorted(parents.items()):
        safe = parent.count(".") >= 1 and (suffixes is None or parent not in suffixes)
        if len(children) >= FOLD_AT and safe:
            groups.append(("*." + parent, sorted(children)))
            folded.update(children)
    groups += [(host, [host]) for host in sorted(hosts) if host not in folded]
    proposal = []
    for pattern, members in sorted(groups, key=lambda g: g[0].lstrip("*.")):
        ports = set().union(*(hosts[h]["ports"] for h in members))
        methods = set().union(*(hosts[h]["methods"] for h in members))
        paths = set().union(*(hosts[h]["paths"] for h in members))
        rule = {"host": pattern}
        if ports and ports != {80, 443}:
            rule["ports"] = sorted(ports)
        if methods and len(methods) <= 3:
            rule["methods"] = sorted(methods | ({"HEAD"} if "GET" in methods else set()))
        if paths and None not in paths and len(paths) <= 3:
            rule["paths"] = sorted(paths)
        private = sorted(set().union(*(hosts[h]["private"] for h in members)))
        proposal.append((pattern, rule, members, sum(hosts[h]["count"] for h in members), private))
    return proposal


def yaml_rule(rule):
    def value(items):
        return "[%s]" % ", ".join(json.dumps(v) if isinstance(v, str) else str(v) for v in items)
    if set(rule) == {"host"}:
        return ["  - %s" % json.dumps(rule["host"])]
    lines = ["  - host: %s" % json.dumps(rule["host"])]
    lines += ["    %s: %s" % (key, value(rule[key])) for key in ("ports", "methods", "paths") if key in rule]
    return lines


def current_rules(policy_path, port):
    """The host patterns the managed policy has for a listener now, or None if it cannot be read."""
    try:
        with open(policy_path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    profile = (doc.get("listeners") or {}).get(str(port))
    rules = profile["rules"] if profile else doc.get("rules", [])
    return [r if isinstance(r, str) else r.get("host") for r in rules]


def covered(host, patterns):
    for pattern in patterns:
        if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return pattern
    return None


def proposal_text(name, port, start, end, proposal, refused, patterns):
    lines = ["# agent-sandbox learn: what agent %s (listener %d) used from %s to %s UTC." % (
        name, port, audit().shown_time(start), audit().shown_time(end)),
        "# Put these under the agent's `allowlist` in agent_sandbox_agents (or in mitm_proxy_allowlist for",
        "# every agent), review them, and run site.yml. Wildcards fold %d or more names under one parent." % FOLD_AT,
        "allowlist:"]
    if not proposal:
        lines.append("  []")
    for pattern, rule, members, count, private in proposal:
        note = "%d request%s" % (count, "" if count == 1 else "s")
        if len(members) > 1:
            note += "; %s" % ", ".join(members)
        if private:
            note += "; CHECK: it led into a private network (%s)" % ", ".join(private)
        lines += ["  # %s" % note] + yaml_rule(rule)
    diff = []
    if patterns is None:
        diff.append("# (the current allowlist could not be read: no diff)")
    else:
        for pattern, rule, members, count, private in proposal:
            already = [covered(m, patterns) for m in members]
            if pattern in patterns or all(already):
                diff.append("  %s  (already allowed)" % pattern)
            else:
                diff.append("+ %s  (new)" % pattern)
        used = {m for entry in proposal for m in entry[2]} | {entry[0] for entry in proposal}
        for pattern in patterns:
            if pattern and pattern not in used and not any(covered(m, [pattern]) for m in used):
                diff.append("- %s  (allowed, not used while learning)" % pattern)
    lines += ["", "# Against the current allowlist of this agent:"] + ["# " + d for d in diff]
    if refused:
        lines += ["", "# Refused while learning (never opened by learning mode; these need a rule of their own):"]
        lines += ["#   %s  (%s, %d)" % (audit().printable(t), audit().printable(r), n)
                  for (t, r), n in sorted(refused.items())]
    return "\n".join(lines) + "\n"


def cmd_learn(args, cfg, paths):
    need_root("learn")
    port, name = listener_of(cfg, args.agent)
    seconds = parse_age(args.for_, "--for")
    if not 0 < seconds <= 86400:
        raise Refused("--for must be from 1s to 1d")
    if args.write:
        try:
            with open(args.write, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise Refused("--write %s: %s" % (args.write, exc.strerror or exc)) from None
    start = time.time()
    until = start + seconds
    with changing(paths["control"]) as doc:
        doc.setdefault("learn", {})[str(port)] = {"until": until, "started": start}
    print("learning mode on for %s (listener %d) until %s UTC: every name on ports 80 and 443 is allowed"
          " and recorded, no secret is injected. Ctrl-C (or SIGTERM) ends it early." % (name, port, audit().shown_time(until)),
          file=sys.stderr)

    def stop(signum, frame):  # pylint: disable=unused-argument
        raise KeyboardInterrupt

    # SIGTERM (kill, timeout(1)) ends it early like Ctrl-C, with the proposal printed.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while time.time() < until:
            time.sleep(min(1.0, max(until - time.time(), 0.01)))
    except KeyboardInterrupt:
        pass
    finally:
        # The proxy ends learning at `until` by itself; this ends it now and keeps the file tidy.
        with changing(paths["control"]) as doc:
            mine = doc.get("learn", {}).get(str(port))
            if mine and mine.get("started") == start:
                del doc["learn"][str(port)]
        signal.signal(signal.SIGTERM, previous)
    end = time.time()
    time.sleep(0.3)   # the proxy writes a request's audit line when its response has gone
    reading = audit().Reading(cfg.get("audit_log") or audit().AUDIT_LOG)
    records, refused = [], {}
    try:
        for record, when in reading.records(start):
            if record.get("listener") != port or not start <= when <= end + 1:
                continue
            if record["decision"] == "allow":
                records.append(record)
            else:
                key = (audit().host_of(record), record.get("reason") or "?")
                refused[key] = refused.get(key, 0) + 1
    except audit().LogError as exc:
        raise Refused("learning ended, but the audit log cannot be read: %s" % exc) from None
    text = proposal_text(name, port, start, end, propose(records, public_suffixes()), refused,
                         current_rules(cfg.get("policy_file") or "/etc/agent-sandbox/proxy/policy.json", port))
    print(text, end="")
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            fh.write(text)
        print("# written to %s" % args.write, file=sys.stderr)
    return 0


def add_parsers(sub):
    ask = sub.add_parser("ask", help="hold an agent's requests to hosts with no rule until you answer (run as root)")
    ask.add_argument("state", choices=("on", "off"))
    ask.add_argument("--agent", required=True, metavar="NAME")
    ask.add_argument("--timeout", type=int, default=60, help="seconds a request waits for an answer (default 60)")
    pend = sub.add_parser("pending", help="the requests waiting for an answer, and the run-time approvals")
    pend.add_argument("--json", action="store_true")
    for verdict in ("allow", "deny"):
        cmd = sub.add_parser(verdict, help="%s a waiting request's host for its agent (run as root)" % verdict)
        cmd.add_argument("id", help="the ID that agent-sandbox pending shows")
        if verdict == "allow":
            how = cmd.add_mutually_exclusive_group()
            how.add_argument("--for", dest="for_", default="1h", metavar="AGE", help="for how long (default 1h)")
            how.add_argument("--always", action="store_true",
                             help="until revoked (kept in the control file; site.yml lists it until the inventory has it)")
        else:
            cmd.add_argument("--for", dest="for_", metavar="AGE",
                             help="refuse that host at once, without asking, for this long (default 10m)")
    rev = sub.add_parser("revoke", help="take back a run-time approval (run as root)")
    rev.add_argument("host")
    rev.add_argument("--agent", required=True, metavar="NAME")
    learn = sub.add_parser("learn", help="allow and record every name an agent uses for a while, then propose an"
                           " allowlist (run as root)")
    learn.add_argument("--agent", required=True, metavar="NAME")
    learn.add_argument("--for", dest="for_", required=True, metavar="AGE", help="e.g. 10m; the proxy ends it then")
    learn.add_argument("--write", metavar="FILE", help="also write the proposal to FILE")
    for cmd in (ask, pend, rev, learn) + tuple(sub.choices[v] for v in ("allow", "deny")):
        cmd.add_argument("--config", default="/etc/agent-sandbox/doctor.json")


COMMANDS = {"ask": cmd_ask, "pending": cmd_pending, "allow": lambda a, c, p: answer(a, c, p, "allow"),
            "deny": lambda a, c, p: answer(a, c, p, "deny"), "revoke": cmd_revoke, "learn": cmd_learn}


def run(args, cfg):
    paths = {"control": cfg.get("control_file") or CONTROL, "pending": cfg.get("pending_file") or PENDING}
    try:
        return COMMANDS[args.command](args, cfg, paths)
    except Refused as exc:
        print("agent-sandbox %s: %s" % (args.command, exc), file=sys.stderr)
        return 2
