# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The admin's runtime answers: ask mode, approvals and denials, learning mode (control.json).

`agent-sandbox ask/allow/deny/learn` (run as root) write /etc/agent-sandbox/control.json;
the proxy only reads it, like the policy, and never writes it. Pure Python (no mitmproxy).
The format is described in docs/proxy-policy.md, "Ask and learn".

What it can open is narrow on purpose: exact host names (never IP literals, internationalised or
odd spellings, never wildcards) on ports 80 and 443, for one listener. A host opened this way is
also checked at connect time like a wildcard (no internal address), and no secret is ever
injected into a request to it.
"""
from __future__ import annotations

import math
import os

from .hosts import NAME, classify_host
from .policy import PolicyError, check_keys, check_version, listener_port, read_json

# How a decision that came from control.json is marked (Decision.how), beside hosts.EXACT/WILDCARD.
ASK, LEARN = "ask", "learn"
# Ports a held request may ask for, and learning mode may open: anything else the policy refuses outright.
ASKABLE_PORTS = (80, 443)
# Names that stand for this machine whatever they resolve to.
_LOCAL_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa")
MAX_TIMEOUT = 3600
MAX_ENTRIES = 10000


def approvable(host, port):
    """None if host:port may be approved or learned; else why not (a sentence)."""
    kind, key = classify_host(host)
    if kind != NAME:
        return "%s is not a plain DNS name (IP literals and unusual spellings need a rule in the inventory)" % host
    if key == "localhost" or key.rsplit(".", 1)[-1] in _LOCAL_SUFFIXES or key.endswith(".home.arpa"):
        return "%s names this machine or a local network" % host
    if "." not in key:
        return "%s is a single-label name" % host
    if port not in ASKABLE_PORTS:
        return "port %s is not 80 or 443" % port
    return None


def _number(value, where, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PolicyError("%s: must be a number of seconds since the epoch%s" % (where, " or null" if allow_none else ""))
    return float(value)


def _entries(raw, where):
    if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
        raise PolicyError("%s: must be a list of at most %d entries" % (where, MAX_ENTRIES))
    table = {}
    for i, entry in enumerate(raw):
        here = "%s[%d]" % (where, i)
        check_keys(entry, here, ("id", "listener", "host", "port", "until", "added", "by", "comment"),
                   ("listener", "host", "port", "until"))
        listener = entry["listener"]
        if isinstance(listener, bool) or not isinstance(listener, int) or not 0 < listener < 65536:
            raise PolicyError("%s.listener: %r is not a port number" % (here, listener))
        port = entry["port"]
        if not isinstance(entry["host"], str) or isinstance(port, bool) or not isinstance(port, int):
            raise PolicyError("%s: host must be a string and port a number" % here)
        why = approvable(entry["host"], port)
        if why:
            raise PolicyError("%s: %s" % (here, why))
        ident = entry.get("id", "")
        if not isinstance(ident, str) or len(ident) > 64:
            raise PolicyError("%s.id: must be a short string" % here)
        until = _number(entry["until"], here + ".until", allow_none=True)
        key = (listener, classify_host(entry["host"])[1], port)
        old = table.get(key)
        # Two entries for one target: the one that lasts longer counts.
        if old is None or until is None or (old[1] is not None and until > old[1]):
            table[key] = (ident or entry["host"], until)
    return table


class Control:
    """What control.json says, ready to be asked per request."""

    def __init__(self, ask=None, learn=None, approved=None, denied=None):
        self.ask = ask or {}            # listener -> seconds a request is held
        self.learn = learn or {}        # listener -> until (epoch seconds)
        self.approved = approved or {}  # (listener, host key, port) -> (id, until or None)
        self.denied = denied or {}      # the same shape

    def __bool__(self):
        return bool(self.ask or self.learn or self.approved or self.denied)

    def ask_timeout(self, listener):
        return self.ask.get(listener)

    def learning(self, listener, now):
        until = self.learn.get(listener)
        return until is not None and now < until

    def _live(self, table, listener, key, port, now):
        found = table.get((listener, key, port))
        if found is None or (found[1] is not None and now >= found[1]):
            return None
        return found[0]

    def approval(self, listener, key, port, now):
        """The id of a live approval of key:port for listener, or None."""
        return self._live(self.approved, listener, key, port, now)

    def denial(self, listener, key, port, now):
        return self._live(self.denied, listener, key, port, now)


def parse_control(doc):
    check_keys(doc, "control", ("version", "ask", "learn", "approved", "denied", "comment"))
    check_version(doc, "control")
    ask, learn = {}, {}
    for section, target in (("ask", ask), ("learn", learn)):
        raw = doc.get(section, {})
        if not isinstance(raw, dict):
            raise PolicyError("%s: must be an object keyed by listener port" % section)
        for port_text, value in raw.items():
            port = listener_port(port_text, section)
            where = "%s.%s" % (section, port_text)
            if section == "ask":
                check_keys(value, where, ("timeout", "comment"), ("timeout",))
                timeout = value["timeout"]
                if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= MAX_TIMEOUT:
                    raise PolicyError("%s.timeout: must be whole seconds from 1 to %d" % (where, MAX_TIMEOUT))
                target[port] = timeout
            else:
                check_keys(value, where, ("until", "started", "comment"), ("until",))
                target[port] = _number(value["until"], where + ".until")
    return Control(ask, learn, _entries(doc.get("approved", []), "approved"), _entries(doc.get("denied", []), "denied"))


def load_control(path):
    """The Control of path; an empty one when the file does not exist (nothing asked, learned or approved)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Control()
    except OSError as exc:
        raise PolicyError("cannot read it: %s" % (exc.strerror or exc)) from None
    # Whoever can write this file opens the network: only root (or the proxy's own user, in tests) may.
    if st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
        raise PolicyError("it must be owned by root and writable by no one else (owner uid %d, mode %04o)"
                          % (st.st_uid, st.st_mode & 0o7777))
    return parse_control(read_json(path))
