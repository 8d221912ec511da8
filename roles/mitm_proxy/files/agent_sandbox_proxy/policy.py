# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy file: reading and checking it, and deciding a host, port, method and path.

Pure Python (no mitmproxy): `python -m agent_sandbox_proxy --check-policy` runs it without mitmproxy.
The file format is described in docs/proxy-policy.md.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import stat
from urllib.parse import unquote

from .hosts import EXACT, IDN, IP, NAME, ODD, WILDCARD, HostIndex, classify_host, split_authority

MAX_FILE_BYTES = 16 * 1024 * 1024
DEFAULT_PORTS = (443, 80)
DEFAULT_HINT = "add it to mitm_proxy_allowlist and re-run the playbook"

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PolicyError(ValueError):
    """A policy or secrets file that must not be used. The message never contains a secret."""


def parse_pattern(text, where):
    """Parse a rule host pattern into (EXACT, (kind, key)) or (WILDCARD, suffix)."""
    if not isinstance(text, str) or not text:
        raise PolicyError("%s: must be a non-empty string" % where)
    if len(text) > 255 or CONTROL.search(text) or " " in text:
        raise PolicyError("%s: %r is not a host name" % (where, text[:80]))
    if "/" in text or "://" in text:
        raise PolicyError("%s: %r looks like a URL; give the host only (ports go in 'ports', paths in 'paths')" % (where, text))
    if text == "*":
        raise PolicyError("%s: a bare '*' would allow every host; list the hosts instead" % where)
    if text.startswith("*."):
        suffix = text[2:]
        kind, key = classify_host(suffix)
        if "*" in suffix or kind != NAME:
            raise PolicyError("%s: %r: a wildcard needs a plain ASCII DNS suffix after '*.' (e.g. '*.example.com')" % (where, text))
        return WILDCARD, key
    if "*" in text:
        raise PolicyError("%s: %r: '*' is only allowed as the whole first label ('*.example.com')" % (where, text))
    if split_authority(text)[1] is not None:
        raise PolicyError("%s: %r: put the port in 'ports', not in the host" % (where, text))
    return EXACT, classify_host(text)


def normalise_path(path):
    """Percent-decoded path without query, or None if it could mean something else upstream."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    decoded = unquote(path, errors="surrogateescape")
    if "\\" in decoded or "\x00" in decoded:
        return None
    for segment in decoded.split("/"):
        if segment in (".", ".."):
            return None
    return decoded


def path_matches(path, prefix):
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def make_rule(label, ports, methods, paths):
    """A rule is a plain tuple (label, ports, methods or None, paths or None) of strings and ints:
    with the index made of plain tuples too, the cyclic garbage collector stops tracking all of it,
    so 10,000 rules add nothing to its passes (a class or a namedtuple would stay tracked)."""
    return (label, ports, methods, paths)


class Decision:
    __slots__ = ("allowed", "reason", "rule", "how", "detail")

    def __init__(self, allowed, reason=None, rule=None, how=None, detail=None):
        self.allowed = allowed
        self.reason = reason
        self.rule = rule
        self.how = how
        self.detail = detail


_NO_RULE_REASON = {NAME: "no-rule", IP: "ip-literal", IDN: "idn-host", ODD: "odd-host"}
_STAGES = ("port", "method", "path")


class Profile:
    __slots__ = ("name", "index")

    def __init__(self, name, index):
        self.name = name
        self.index = index

    def decide(self, kind, key, port, method=None, path=None):
        """Decide host+port (CONNECT: method and path None) or a full request."""
        candidates = self.index.lookup(kind, key)
        if not candidates:
            return Decision(False, _NO_RULE_REASON[kind])
        stage, failed = -1, None
        npath = False
        for (label, ports, methods, paths), how in candidates:
            if port not in ports:
                here = 0
            elif method is not None and methods is not None and method not in methods:
                here = 1
            elif path is not None and paths is not None:
                if npath is False:
                    npath = normalise_path(path)
                if npath is not None and any(path_matches(npath, p) for p in paths):
                    return Decision(True, None, label, how)
                here = 2
            else:
                return Decision(True, None, label, how)
            if here > stage:
                stage, failed = here, label
        return Decision(False, _STAGES[stage], failed)


class Policy:
    def __init__(self, default, listeners, hint, rule_count):
        self.default = default
        self.listeners = listeners
        self.hint = hint
        self.rule_count = rule_count

    def profile_for(self, port):
        return self.listeners.get(port, self.default)


def _no_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise PolicyError("duplicate key %r" % key)
        seen[key] = value
    return seen


def read_json(path, secret=False):
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError("not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise PolicyError("larger than %d bytes" % MAX_FILE_BYTES)
        if secret and st.st_mode & 0o007:
            raise PolicyError("the secrets file is accessible to other users (mode %04o); make it 0600 or 0640"
                              % stat.S_IMODE(st.st_mode))
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError("cannot read it: %s" % (exc.strerror or exc)) from None
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise PolicyError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # Only the position: the message of a decode error never quotes the document.
        raise PolicyError("invalid JSON at line %d column %d: %s" % (exc.lineno, exc.colno, exc.msg)) from None


def check_keys(obj, where, allowed, required=()):
    if not isinstance(obj, dict):
        raise PolicyError("%s: must be a JSON object" % where)
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        raise PolicyError("%s: unknown key %r%s (allowed: %s)" % (
            where, unknown[0], " (did you mean %r?)" % near[0] if near else "", ", ".join(sorted(allowed))))
    for key in required:
        if key not in obj:
            raise PolicyError("%s: missing %r" % (where, key))


def check_version(doc, where):
    if doc.get("version", 1) != 1:
        raise PolicyError("%s: unsupported version %r (this addon reads version 1)" % (where, doc.get("version")))


def listener_port(text, where):
    if not isinstance(text, str) or not text.isdigit() or not 0 < int(text) < 65536:
        raise PolicyError("%s: listener %r is not a port number (1-65535)" % (where, text))
    return int(text)


def _parse_rule(raw, where):
    if isinstance(raw, str):
        raw = {"host": raw}
    check_keys(raw, where, ("host", "ports", "methods", "paths", "name", "comment", "trust_every_owner_below"),
               ("host",))
    pattern = parse_pattern(raw["host"], where + ".host")
    label = raw.get("name", raw["host"])
    if not isinstance(label, str) or not label or len(label) > 200 or CONTROL.search(label):
        raise PolicyError("%s.name: must be a short single-line string" % where)
    opt_in = raw.get("trust_every_owner_below", False)
    if not isinstance(opt_in, bool):
        raise PolicyError("%s.trust_every_owner_below: must be true or false" % where)
    if opt_in:
        # The audit log's `rule` shows that a wildcard over a shared suffix was opted into.
        label += " [trust_every_owner_below]"
    ports = raw.get("ports", list(DEFAULT_PORTS))
    if not isinstance(ports, list) or not ports:
        raise PolicyError("%s.ports: must be a non-empty list of port numbers" % where)
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise PolicyError("%s.ports: %r is not a port number (1-65535)" % (where, port))
    methods = raw.get("methods")
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            raise PolicyError("%s.methods: must be a non-empty list such as [\"GET\", \"HEAD\"]" % where)
        for method in methods:
            if not isinstance(method, str) or not TOKEN.match(method):
                raise PolicyError("%s.methods: %r is not an HTTP method" % (where, method))
        methods = tuple(sorted({m.upper() for m in methods}))
    paths = raw.get("paths")
    if paths is not None:
        if not isinstance(paths, list) or not paths:
            raise PolicyError("%s.paths: must be a non-empty list of path prefixes such as [\"/v1/\"]" % where)
        decoded = []
        for prefix in paths:
            if not isinstance(prefix, str) or not prefix.startswith("/") or "?" in prefix or "#" in prefix:
                raise PolicyError("%s.paths: %r must start with '/' and hold no query or fragment" % (where, prefix))
            norm = normalise_path(prefix)
            if norm is None:
                raise PolicyError("%s.paths: %r has '.' or '..' segments or a backslash" % (where, prefix))
            decoded.append(norm)
        paths = tuple(decoded)
    ports = tuple(sorted(set(ports)))
    return pattern, make_rule(label, ports if len(ports) <= 16 else frozenset(ports), methods, paths)


def _parse_rules(rules, where, profile_name):
    if not isinstance(rules, list):
        raise PolicyError("%s: must be a list of rules" % where)
    index = HostIndex()
    for i, raw in enumerate(rules):
        pattern, rule = _parse_rule(raw, "%s[%d]" % (where, i))
        index.add(pattern, rule)
    return Profile(profile_name, index.freeze())


def parse_policy(doc):
    check_keys(doc, "policy", ("version", "rules", "listeners", "block_hint", "comment"))
    check_version(doc, "policy")
    hint = doc.get("block_hint", DEFAULT_HINT)
    if not isinstance(hint, str) or not hint or len(hint) > 500 or CONTROL.search(hint):
        raise PolicyError("block_hint: must be one line of text")
    default = _parse_rules(doc.get("rules", []), "rules", "default")
    count = default.index.count
    listeners = {}
    raw_listeners = doc.get("listeners", {})
    if not isinstance(raw_listeners, dict):
        raise PolicyError("listeners: must be an object keyed by listener port")
    for port_text, profile in raw_listeners.items():
        port = listener_port(port_text, "listeners")
        where = "listeners.%s" % port_text
        check_keys(profile, where, ("rules", "comment"), ("rules",))
        listeners[port] = _parse_rules(profile["rules"], where + ".rules", port_text)
        count += listeners[port].index.count
    return Policy(default, listeners, hint, count)


def load_policy(path):
    return parse_policy(read_json(path))
