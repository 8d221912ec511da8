# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox egress policy for mitmproxy: host allowlist, secret injection, audit log.

One self-contained module (stdlib + mitmproxy). Three ways to use it:

    mitmdump -s agent_sandbox_policy.py --set agent_sandbox_policy=/etc/agent-sandbox/proxy/policy.json ...
    python3 agent_sandbox_policy.py --mitmdump [mitmdump arguments]   # the addon built in: fail closed
    python3 agent_sandbox_policy.py --check-policy FILE | --check-secrets FILE   # exit 0, or 2 and why

With ``-s`` mitmproxy keeps running *without* the addon if the module cannot be imported; the
``--mitmdump`` launcher adds the addon to the master itself, so an import error stops the proxy.

mitmproxy options added by the addon
------------------------------------
agent_sandbox_policy           path of the policy file (JSON). Unset or invalid at start: refuse everything.
agent_sandbox_secrets          path of the secrets file (JSON). Must not be readable by "other".
agent_sandbox_audit            path of the JSON-lines audit log (created 0640). Unopenable: refuse everything.
agent_sandbox_audit_max_bytes  rotate the audit log when it would grow past this size (default 50 MiB).
agent_sandbox_audit_backups    rotated files kept as FILE.1 .. FILE.N (default 5).

Both files are re-read when they change (checked at most once a second, on traffic) and on SIGHUP.
A file that fails validation is refused with a logged error; the previous version stays in force.

Policy file
-----------
::

    {
      "version": 1,
      "block_hint": "add it to mitm_proxy_allowlist and re-run the playbook",   # optional
      "rules": [                                   # default profile: every listener not named below
        "pypi.org",                                # shorthand for {"host": "pypi.org"}
        {"host": "*.example.com"},                 # any subdomain, not the apex
        {"host": "api.github.com", "ports": [443], "methods": ["GET", "HEAD"],
         "paths": ["/repos/", "/user"], "name": "github-read"}
      ],
      "listeners": {"8081": {"rules": ["example.org"]}}   # profile for the listener on port 8081
    }

- ``host``: an exact name, ``*.suffix`` (subdomains at any depth, never the apex), or an exact IP
  literal. IP literals, trailing-dot names, numeric spellings (``127.1``, ``2130706433``,
  ``0x7f.1``), internationalised names and anything else unusual only match a rule that names the
  same thing exactly; wildcards match plain ASCII names only.
- ``ports`` default ``[443, 80]``; ``methods`` (any by default); ``paths``: prefixes of the
  percent-decoded path without query, matched on segment boundaries (``/v1`` matches ``/v1`` and
  ``/v1/x``, not ``/v1x``; a prefix ending in ``/`` matches below it only). A path with ``.``/``..``
  segments or a backslash never matches a rule that has ``paths``.
- A request is allowed when any rule of its listener's profile allows it (union). A listener
  profile replaces the default rules for that port. Hosts matched only by a wildcard are refused
  if they resolve to a loopback, private, link-local or otherwise internal address.

Secrets file
------------
::

    {
      "version": 1,
      "secrets": [
        {"name": "github", "placeholder": "AGENT_SANDBOX_PLACEHOLDER_github_3f9c2a",
         "value": "<the real token>", "hosts": ["api.github.com"],
         "header": "Authorization: Bearer {secret}"}
      ],
      "listeners": {"8081": {"secrets": [...]}}     # replaces the default list for that listener
    }

The agent sends the placeholder in the configured header (``Authorization: Bearer <placeholder>``);
on an HTTPS request to a host matching ``hosts`` (same syntax as rules) the proxy sets that header
to the template with the real value. The placeholder anywhere else (another host or listener,
another header, the URL, the body, plain HTTP, a WebSocket message) is refused with 403 and
logged as a leak. Real values echoed by an upstream are replaced by their placeholder in the
response. Placeholders: at least 8 visible ASCII characters, unique, none inside another or
inside a value. Values never appear in a log, an error message or the audit trail.

Audit log
---------
One JSON object per line: ``time, listener, client, method, scheme, host, port, path`` (no query),
``decision`` (allow/block), ``reason``, ``rule``, ``profile``, ``status``, ``bytes`` (response
body), ``request_bytes``, ``leak``, ``secrets`` (names injected or leaked), ``masked``, ``error``.
"""
from __future__ import annotations

import argparse
import asyncio
import difflib
import functools
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import stat
import sys
import time
import traceback
from urllib.parse import unquote, unquote_to_bytes

try:
    from mitmproxy import ctx, http
    from mitmproxy.proxy import commands as mcommands
    from mitmproxy.proxy import layer as mlayer
    from mitmproxy.proxy import layers as mlayers
    from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode, UpstreamMode
    HAVE_MITMPROXY = True
except ImportError:  # the --check-* validators run with any python3
    HAVE_MITMPROXY = False

LOG = logging.getLogger("agent_sandbox_policy")

META = "agent_sandbox"
RELOAD_INTERVAL = 1.0
MAX_FILE_BYTES = 16 * 1024 * 1024
DEFAULT_PORTS = (443, 80)
DEFAULT_HINT = "add it to mitm_proxy_allowlist and re-run the playbook"
BLOCK_HEADER = "X-Agent-Sandbox-Block"
BLOCK_REASON_PHRASE = "Forbidden by agent-sandbox policy"

# Host kinds. Only NAME hosts can match a wildcard; every other kind needs an exact rule.
NAME, IP, IDN, ODD = "name", "ip", "idn", "odd"
EXACT, WILDCARD = "exact", "wildcard"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_VISIBLE = re.compile(r"[\x21-\x7e]+\Z")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+\Z")
_UNSAFE_HEADER_CHARS = re.compile(r"[^A-Za-z0-9._:\-\[\]*]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PolicyError(ValueError):
    """A policy or secrets file that must not be used. The message never contains a secret."""


# --------------------------------------------------------------------------- host names

def classify_host(raw):
    """Return (kind, key) for a host as a client or a rule spells it.

    Keys are compared together with their kind, so an odd spelling can only ever equal the same
    odd spelling. NAME keys are lowercase LDH names, IP keys the canonical address, IDN keys the
    ASCII (punycode) form, ODD keys the lowercased text itself.
    """
    host = raw
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or len(host) > 253:
        return ODD, host.lower()
    if not host.isascii():
        try:
            ace = host.encode("idna").decode("ascii").lower()
            back = ace.encode("ascii").decode("idna")
        except UnicodeError:
            return ODD, host.lower()
        # IDNA 2003 maps look-alikes (full-width letters, ß, ...) onto other names: only a name
        # that survives the round trip is the name it looks like.
        if back != host.lower():
            return ODD, host.lower()
        return IDN, ace
    lower = host.lower()
    if "%" in lower:  # IPv6 zone ids and percent-encoded names
        return ODD, lower
    try:
        return IP, str(ipaddress.ip_address(lower))
    except ValueError:
        pass
    if lower.endswith("."):
        return ODD, lower
    labels = lower.split(".")
    for label in labels:
        if not _LABEL.match(label):
            return ODD, lower
    if labels[-1].isdigit() or _inet_aton_accepts(lower):
        return ODD, lower
    if any(label.startswith("xn--") for label in labels):
        return IDN, lower
    return NAME, lower


def _inet_aton_accepts(text):
    # getaddrinfo() takes "0x7f000001", "127.1" and "017700000001" as IPv4 addresses.
    try:
        socket.inet_aton(text)
    except (OSError, ValueError):
        return False
    return True


def split_authority(value):
    """Split a Host header or authority into (host, port or None); port -1 when malformed."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, -1
        host, rest = value[:end + 1], value[end + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return value, -1
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        return value, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, -1
    return host, int(port_text)


def parse_pattern(text, where):
    """Parse a rule host pattern into (EXACT, (kind, key)) or (WILDCARD, suffix)."""
    if not isinstance(text, str) or not text:
        raise PolicyError("%s: must be a non-empty string" % where)
    if len(text) > 255 or _CONTROL.search(text) or " " in text:
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


class HostIndex:
    """Items indexed by host pattern. A lookup costs one dict probe per label of the host,
    whatever the number of patterns."""

    __slots__ = ("exact", "wild", "count")

    def __init__(self):
        self.exact = {}
        self.wild = {}
        self.count = 0

    def add(self, pattern, item):
        how, key = pattern
        table = self.exact if how == EXACT else self.wild
        table.setdefault(key, []).append(item)
        self.count += 1

    def freeze(self):
        self.exact = {key: tuple(items) for key, items in self.exact.items()}
        self.wild = {key: tuple(items) for key, items in self.wild.items()}
        return self

    def lookup(self, kind, key):
        """Return [(item, EXACT|WILDCARD)], exact matches first."""
        found = []
        hit = self.exact.get((kind, key))
        if hit:
            found.extend((item, EXACT) for item in hit)
        if kind == NAME and self.wild:
            dot = key.find(".")
            while dot >= 0:
                hit = self.wild.get(key[dot + 1:])
                if hit:
                    found.extend((item, WILDCARD) for item in hit)
                dot = key.find(".", dot + 1)
        return found

    def __bool__(self):
        return self.count > 0


# --------------------------------------------------------------------------- policy

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


def _check_keys(obj, where, allowed, required=()):
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


def _check_version(doc, where):
    if doc.get("version", 1) != 1:
        raise PolicyError("%s: unsupported version %r (this addon reads version 1)" % (where, doc.get("version")))


def _listener_port(text, where):
    if not isinstance(text, str) or not text.isdigit() or not 0 < int(text) < 65536:
        raise PolicyError("%s: listener %r is not a port number (1-65535)" % (where, text))
    return int(text)


def _parse_rule(raw, where):
    if isinstance(raw, str):
        raw = {"host": raw}
    _check_keys(raw, where, ("host", "ports", "methods", "paths", "name", "comment", "trust_every_owner_below"),
                ("host",))
    pattern = parse_pattern(raw["host"], where + ".host")
    label = raw.get("name", raw["host"])
    if not isinstance(label, str) or not label or len(label) > 200 or _CONTROL.search(label):
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
            if not isinstance(method, str) or not _TOKEN.match(method):
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
    _check_keys(doc, "policy", ("version", "rules", "listeners", "block_hint", "comment"))
    _check_version(doc, "policy")
    hint = doc.get("block_hint", DEFAULT_HINT)
    if not isinstance(hint, str) or not hint or len(hint) > 500 or _CONTROL.search(hint):
        raise PolicyError("block_hint: must be one line of text")
    default = _parse_rules(doc.get("rules", []), "rules", "default")
    count = default.index.count
    listeners = {}
    raw_listeners = doc.get("listeners", {})
    if not isinstance(raw_listeners, dict):
        raise PolicyError("listeners: must be an object keyed by listener port")
    for port_text, profile in raw_listeners.items():
        port = _listener_port(port_text, "listeners")
        where = "listeners.%s" % port_text
        _check_keys(profile, where, ("rules", "comment"), ("rules",))
        listeners[port] = _parse_rules(profile["rules"], where + ".rules", port_text)
        count += listeners[port].index.count
    return Policy(default, listeners, hint, count)


def load_policy(path):
    return parse_policy(read_json(path))


# --------------------------------------------------------------------------- secrets

class Secret:
    __slots__ = ("name", "placeholder", "header", "rendered", "value")

    def __init__(self, name, placeholder, header, template, value):
        self.name = name
        self.placeholder = placeholder.encode("ascii")
        self.header = header.lower().encode("ascii")
        self.rendered = template.replace("{secret}", value).encode("latin-1")
        self.value = value.encode("latin-1")

    def __repr__(self):  # never show the value, not even in a debugger or a traceback
        return "Secret(%r)" % self.name


class SecretSet:
    def __init__(self, default=None, listeners=None, secrets=()):
        self.default = default or HostIndex()
        self.listeners = listeners or {}
        self.secrets = list(secrets)
        self.by_placeholder = {s.placeholder: s for s in self.secrets}
        self.by_value = {s.value: s for s in self.secrets}
        self.placeholder_re = _literal_re(self.by_placeholder)
        self.value_re = _literal_re(self.by_value)
        self.max_value = max((len(v) for v in self.by_value), default=0)

    def __bool__(self):
        return bool(self.secrets)

    def for_listener(self, port):
        return self.listeners.get(port, self.default)

    def mask(self, data):
        """Replace every real value in data (bytes) by its placeholder; return (data, names)."""
        names = set()

        def repl(match):
            secret = self.by_value[match.group(0)]
            names.add(secret.name)
            return secret.placeholder
        return self.value_re.sub(repl, data), names


def _literal_re(literals):
    if not literals:
        return None
    # Longest first, so that a match is never cut short by a shorter literal.
    return re.compile(b"|".join(re.escape(x) for x in sorted(literals, key=len, reverse=True)))


def _parse_secret(raw, where):
    _check_keys(raw, where, ("name", "placeholder", "value", "hosts", "header", "comment"),
                ("name", "placeholder", "value", "hosts", "header"))
    name = raw["name"]
    if not isinstance(name, str) or not _SECRET_NAME.match(name):
        raise PolicyError("%s.name: must be 1-64 characters of A-Z a-z 0-9 _ . -" % where)
    where = "%s (%s)" % (where, name)
    placeholder = raw["placeholder"]
    if not isinstance(placeholder, str) or len(placeholder) < 8 or not _VISIBLE.match(placeholder) \
            or "{" in placeholder or "}" in placeholder:
        raise PolicyError("%s.placeholder: must be at least 8 visible ASCII characters without spaces or braces" % where)
    value = raw["value"]
    if not isinstance(value, str) or not value or not _HEADER_VALUE.match(value) or value != value.strip():
        # The value itself is never part of a message.
        raise PolicyError("%s.value: must be a non-empty single line of printable ASCII without surrounding spaces" % where)
    header = raw["header"]
    if not isinstance(header, str) or ":" not in header:
        raise PolicyError("%s.header: must look like 'x-api-key: {secret}' or 'Authorization: Bearer {secret}'" % where)
    header_name, template = header.split(":", 1)
    template = template.strip()
    if not _TOKEN.match(header_name) or template.count("{secret}") != 1 or not _HEADER_VALUE.match(template):
        raise PolicyError("%s.header: %r must be 'Header-Name: text with {secret} once'" % (where, header))
    hosts = raw["hosts"]
    if not isinstance(hosts, list) or not hosts:
        raise PolicyError("%s.hosts: a secret needs at least one host pattern it may be sent to" % where)
    patterns = [parse_pattern(h, "%s.hosts[%d]" % (where, i)) for i, h in enumerate(hosts)]
    return patterns, Secret(name, placeholder, header_name, template, value)


def _check_collisions(secrets):
    names, placeholders = {}, {}
    for where, secret in secrets:
        if secret.name in names:
            raise PolicyError("%s: name %r is used twice" % (where, secret.name))
        names[secret.name] = where
        if secret.placeholder in placeholders:
            raise PolicyError("%s: placeholder is also used by %s" % (where, placeholders[secret.placeholder]))
        placeholders[secret.placeholder] = where
    for where, secret in secrets:
        for other_where, other in secrets:
            if other is secret:
                continue
            if secret.placeholder in other.placeholder:
                raise PolicyError("%s: placeholder is part of the placeholder of %s; make them distinct" % (where, other_where))
            if secret.placeholder in other.value or other.value in secret.placeholder:
                raise PolicyError("%s: placeholder overlaps the value of %s" % (where, other_where))
        if secret.placeholder in secret.value or secret.value in secret.placeholder:
            raise PolicyError("%s: placeholder and value overlap" % where)


def parse_secrets(doc):
    _check_keys(doc, "secrets file", ("version", "secrets", "listeners", "comment"))
    _check_version(doc, "secrets file")
    everything = []

    def scope(entries, where):
        if not isinstance(entries, list):
            raise PolicyError("%s: must be a list of secrets" % where)
        index = HostIndex()
        for i, raw in enumerate(entries):
            item = "%s[%d]" % (where, i)
            patterns, secret = _parse_secret(raw, item)
            for pattern in patterns:
                index.add(pattern, secret)
            everything.append((item, secret))
        return index.freeze()

    default = scope(doc.get("secrets", []), "secrets")
    listeners = {}
    raw_listeners = doc.get("listeners", {})
    if not isinstance(raw_listeners, dict):
        raise PolicyError("listeners: must be an object keyed by listener port")
    for port_text, profile in raw_listeners.items():
        port = _listener_port(port_text, "listeners")
        where = "listeners.%s" % port_text
        _check_keys(profile, where, ("secrets", "comment"), ("secrets",))
        listeners[port] = scope(profile["secrets"], where + ".secrets")
    _check_collisions(everything)
    return SecretSet(default, listeners, [secret for where, secret in everything])


def load_secrets(path):
    return parse_secrets(read_json(path, secret=True))


# --------------------------------------------------------------------------- audit log

class AuditLog:
    """JSON lines, mode 0640, renamed to FILE.1 (FILE.1 to FILE.2, ...) when over max_bytes."""

    def __init__(self):
        self.path = None
        self.fd = None
        self.ino = None
        self.size = 0
        self.max_bytes = 50 * 1024 * 1024
        self.backups = 5
        self._last_error = 0.0

    def open(self, path, max_bytes, backups):
        self.close()
        self.path, self.max_bytes, self.backups = path or None, max_bytes, max(1, backups)
        if self.path:
            self._open()

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) != 0o640 and st.st_uid == os.geteuid():
                os.fchmod(fd, 0o640)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.ino, self.size = fd, st.st_ino, st.st_size

    @property
    def broken(self):
        return self.path is not None and self.fd is None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None

    def reopen_if_moved(self):
        """Follow an outside rotation (file renamed or removed); retry a failed open."""
        if not self.path:
            return
        try:
            moved = os.stat(self.path).st_ino != self.ino
        except OSError:
            moved = True
        if moved or self.fd is None:
            try:
                self.close()
                self._open()
            except OSError as exc:
                self._complain("cannot open audit log %s: %s" % (self.path, exc.strerror or exc))

    def write(self, record):
        if not self.path:
            return
        line = (_ENCODE(record) + "\n").encode("utf-8")
        try:
            if self.fd is None:
                self._open()
            if self.size and self.size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self.fd, line)
            self.size += len(line)
        except OSError as exc:
            self._complain("cannot write audit log %s: %s" % (self.path, exc.strerror or exc))

    def _rotate(self):
        self.close()
        for i in range(self.backups - 1, 0, -1):
            older = "%s.%d" % (self.path, i)
            if os.path.exists(older):
                os.replace(older, "%s.%d" % (self.path, i + 1))
        os.replace(self.path, self.path + ".1")
        self._open()

    def _complain(self, message):
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            LOG.error("agent-sandbox: %s", message)


_SECOND = [None, ""]


def _now():
    """UTC time with milliseconds, e.g. 2026-05-02T10:31:07.412Z (the seconds part is cached)."""
    now = time.time()
    second = int(now)
    if _SECOND[0] != second:
        _SECOND[0], _SECOND[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return "%s.%03dZ" % (_SECOND[1], int((now - second) * 1000))


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _clip(text, limit):
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- messages

_DETAILS = {
    "no-rule": "{target} is not on the allowlist",
    "ip-literal": "{target} is an IP address; only a rule naming this exact address allows it",
    "idn-host": "{target} is an internationalised name; only a rule naming it exactly allows it",
    "odd-host": "{target} is an unusual spelling of a host (trailing dot, numeric or other non-standard form); "
                "only a rule naming it exactly allows it",
    "port": "{target}: the host is on the allowlist, but not this port",
    "method": "{target}: the host is on the allowlist, but not for {method} requests",
    "path": "{target}: the host is on the allowlist, but not for the path {path}",
    "sni-mismatch": "the TLS server name {detail} does not match the CONNECT target {target}; "
                    "use the same host name for CONNECT, TLS and the Host header (no domain fronting)",
    "sni-missing": "the TLS handshake for {target} named no server (SNI); send the host name in the TLS handshake",
    "host-mismatch": "the Host header or authority {detail} does not match the target {target}; "
                     "use the same host name for CONNECT, TLS and the Host header (no domain fronting)",
    "internal-address": "{target} resolves to an internal address ({detail}); only a rule naming the host exactly allows that",
    "leak": "the request carries a secret placeholder ({detail}) outside the one header it may be used in; "
            "placeholders are only replaced in their configured header of HTTPS requests to their configured hosts. "
            "This was logged as a leak attempt",
    "http3": "HTTP/3 (QUIC) is not allowed through this proxy; use HTTP/1.1 or HTTP/2",
    "scheme": "only http and https requests are allowed",
    "upgrade": "protocol upgrade to {detail} is not allowed (only WebSockets are)",
    "policy-unavailable": "no valid network policy is loaded, so every request is refused",
    "proxy-misconfigured": "the proxy is started with options that would bypass the policy ({detail}), "
                           "so every request is refused",
    "audit-unavailable": "the audit log cannot be written, so every request is refused",
    "internal-error": "the policy check failed unexpectedly, so the request was refused",
}

_ADMIN_PROBLEMS = ("policy-unavailable", "proxy-misconfigured", "audit-unavailable", "internal-error")


def _header_safe(text, limit=255):
    return _UNSAFE_HEADER_CHARS.sub(lambda m: "%%%02X" % (ord(m.group(0)) & 0xFF), _clip(text, limit) or "")


def _text_safe(text, limit=200):
    return _CONTROL.sub("?", _clip(text, limit) or "")


def block_text(reason, host, port, hint, method=None, path=None, detail=None):
    target = "%s:%s" % (_text_safe(host), port) if port else _text_safe(host)
    first = _DETAILS.get(reason, "the request is not allowed").format(
        target=target, method=_text_safe(method or ""), path=_text_safe(path or ""), detail=_text_safe(detail or ""))
    lines = ["Blocked by the agent-sandbox network policy: %s." % first,
             "This is a deliberate policy decision, not a network fault: retrying will not help."]
    if reason in _ADMIN_PROBLEMS:
        lines.append("An administrator has to fix the proxy configuration (see the proxy's log).")
    elif reason == "leak":
        lines.append("Send the placeholder only where it is configured; an administrator can change where it may go.")
    else:
        lines.append("To allow it, an administrator can %s." % hint)
    return "\n".join(lines) + "\n"


def block_response(reason, host, port, hint, method=None, path=None, detail=None):
    body = block_text(reason, host, port, hint, method, path, detail)
    response = http.Response.make(403, body.encode("utf-8"), {
        "Content-Type": "text/plain; charset=utf-8",
        "Cache-Control": "no-store",
        BLOCK_HEADER: "policy; host=%s; reason=%s" % (_header_safe(host), reason),
    })
    response.reason = BLOCK_REASON_PHRASE
    return response


# --------------------------------------------------------------------------- the addon

def _is_internal(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified
            or ip.is_multicast or ip.is_reserved or getattr(ip, "is_site_local", False))


def _header_values(fields, wanted):
    """Values (bytes) of the wanted lowercase header names, in one pass over the raw fields."""
    found = {}
    for name, value in fields:
        lname = name.lower()
        if lname in wanted:
            found.setdefault(lname, []).append(value)
    return found


_REQUEST_HEADERS = frozenset((b"host", b"upgrade"))


def _listener_of(client):
    sockname = getattr(client, "sockname", None)
    if sockname and len(sockname) > 1 and isinstance(sockname[1], int):
        return sockname[1]
    return 0


def _guard(hook):
    """Turn any exception in a hook into a refusal: mitmproxy would log it and let the flow pass."""
    if asyncio.iscoroutinefunction(hook):
        @functools.wraps(hook)
        async def async_wrapper(self, arg):
            try:
                return await hook(self, arg)
            except Exception as exc:  # pylint: disable=broad-except
                self.internal_error(hook.__name__, exc, arg)
            return None
        return async_wrapper

    @functools.wraps(hook)
    def wrapper(self, arg):
        try:
            return hook(self, arg)
        except Exception as exc:  # pylint: disable=broad-except
            self.internal_error(hook.__name__, exc, arg)
        return None
    return wrapper


if HAVE_MITMPROXY:
    class RefuseLayer(mlayer.Layer):
        """Stands in for a raw TCP/UDP/DNS/QUIC layer: closes the connection on its first event."""

        def __init__(self, context):
            super().__init__(context)
            self.closed = False

        def _handle_event(self, event):
            if self.closed:
                return
            self.closed = True
            yield mcommands.CloseConnection(self.context.client)
            if self.context.server.connected:
                yield mcommands.CloseConnection(self.context.server)

    _REFUSED_LAYERS = (mlayers.TCPLayer, mlayers.UDPLayer, mlayers.DNSLayer, mlayers.ServerQuicLayer,
                       mlayers.ClientQuicLayer, mlayers.RawQuicLayer, mlayers.QuicStreamLayer)


class AgentSandboxPolicy:
    """The mitmproxy addon. State: the policy, the secrets, the audit log."""

    def __init__(self):
        self.policy = None
        self.secrets = SecretSet()
        self.audit = AuditLog()
        self.config_problem = None
        self._stamps = {"policy": None, "secrets": None}
        self._next_check = 0.0
        self._host_cache = {}
        self._vetted = {}
        self._injected = {}   # flow id -> secrets swapped into its request, until it is sent
        self._hup_installed = False

    # ---- lifecycle

    def load(self, loader):
        loader.add_option("agent_sandbox_policy", str, "", "agent-sandbox: path of the policy file (JSON).")
        loader.add_option("agent_sandbox_secrets", str, "", "agent-sandbox: path of the secrets file (JSON).")
        loader.add_option("agent_sandbox_audit", str, "", "agent-sandbox: path of the JSON-lines audit log.")
        loader.add_option("agent_sandbox_audit_max_bytes", int, 50 * 1024 * 1024,
                          "agent-sandbox: rotate the audit log past this size.")
        loader.add_option("agent_sandbox_audit_backups", int, 5, "agent-sandbox: rotated audit logs kept.")

    def configure(self, updated):
        self.config_problem = self._check_options()
        if self.config_problem:
            LOG.error("agent-sandbox: refusing all traffic: %s", self.config_problem)
        if {"agent_sandbox_audit", "agent_sandbox_audit_max_bytes", "agent_sandbox_audit_backups"} & set(updated):
            try:
                self.audit.open(ctx.options.agent_sandbox_audit, ctx.options.agent_sandbox_audit_max_bytes,
                                ctx.options.agent_sandbox_audit_backups)
            except OSError as exc:
                LOG.error("agent-sandbox: cannot open audit log %s (%s): refusing all traffic until it can be written",
                          ctx.options.agent_sandbox_audit, exc.strerror or exc)
        if "agent_sandbox_policy" in updated:
            self.reload_policy(force=True)
        if "agent_sandbox_secrets" in updated:
            self.reload_secrets(force=True)

    def running(self):
        if self._hup_installed or not hasattr(signal, "SIGHUP"):
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_sighup)
            self._hup_installed = True
        except (RuntimeError, NotImplementedError, ValueError):
            LOG.warning("agent-sandbox: cannot handle SIGHUP here; files are still reloaded when they change")
        LOG.info("agent-sandbox policy active: %s rules, %d secrets",
                 self.policy.rule_count if self.policy else "no valid", len(self.secrets.secrets))

    def done(self):
        if self._hup_installed:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except (RuntimeError, NotImplementedError, ValueError):
                pass
            self._hup_installed = False
        self.audit.close()

    def on_sighup(self):
        LOG.info("agent-sandbox: SIGHUP: reloading policy and secrets")
        self.reload_policy(force=True)
        self.reload_secrets(force=True)
        self.audit.reopen_if_moved()

    def _check_options(self):
        opts = ctx.options
        for spec in opts.mode:
            try:
                mode = ProxyMode.parse(spec)
            except ValueError:
                return "mode %s cannot be parsed" % spec
            if not isinstance(mode, (RegularMode, UpstreamMode)):
                return "mode %s (only regular and upstream modes are supported)" % spec
        for name in ("ignore_hosts", "allow_hosts", "tcp_hosts", "udp_hosts"):
            if getattr(opts, name, None):
                return "%s is set, which would pass traffic around the policy" % name
        if opts.agent_sandbox_secrets and (getattr(opts, "flow_detail", 0) >= 2 or getattr(opts, "save_stream_file", None)):
            return "flow_detail >= 2 or save_stream_file would write injected secrets to a log or file"
        return None

    # ---- reloading

    def tick(self):
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_INTERVAL
        self.reload_policy()
        self.reload_secrets()
        self.audit.reopen_if_moved()

    def _changed(self, which, path, force):
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as exc:
            stamp = ("error", exc.errno)
        if stamp == self._stamps[which] and not force:
            return False
        self._stamps[which] = stamp
        return True

    def reload_policy(self, force=False):
        path = ctx.options.agent_sandbox_policy
        if not path:
            if self.policy is not None or force:
                LOG.error("agent-sandbox: option agent_sandbox_policy is not set: refusing every request")
            self.policy = None
            return
        if not self._changed("policy", path, force):
            return
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            LOG.error("agent-sandbox: policy %s refused: %s; %s", path, exc,
                      "the previous policy stays in force" if self.policy else "refusing every request")
            return
        self.policy = policy
        self._host_cache.clear()
        LOG.info("agent-sandbox: policy %s loaded: %d rules, %d listener profiles",
                 path, policy.rule_count, len(policy.listeners))

    def reload_secrets(self, force=False):
        path = ctx.options.agent_sandbox_secrets
        if not path:
            self.secrets = SecretSet()
            return
        if not self._changed("secrets", path, force):
            return
        try:
            secrets = load_secrets(path)
        except PolicyError as exc:
            LOG.error("agent-sandbox: secrets file %s refused: %s; the previous secrets stay in force", path, exc)
            return
        self.secrets = secrets
        LOG.info("agent-sandbox: secrets file %s loaded: %d secrets", path, len(secrets.secrets))

    # ---- helpers

    def classify(self, host):
        found = self._host_cache.get(host)
        if found is None:
            if len(self._host_cache) > 8192:
                self._host_cache.clear()
            found = self._host_cache[host] = classify_host(host)
        return found

    def _global_refusal(self):
        if self.config_problem:
            return Decision(False, "proxy-misconfigured", detail=self.config_problem)
        if self.policy is None:
            return Decision(False, "policy-unavailable")
        if self.audit.broken:
            return Decision(False, "audit-unavailable")
        return None

    def _hint(self):
        return self.policy.hint if self.policy else DEFAULT_HINT

    def _meta(self, flow, decision, profile):
        meta = {"decision": "allow" if decision.allowed else "block", "reason": decision.reason,
                "rule": decision.rule, "how": decision.how, "profile": profile, "leak": False,
                "secrets": [], "masked": False}
        flow.metadata[META] = meta
        return meta

    def _block(self, flow, meta, reason, detail=None):
        req = flow.request
        meta.update(decision="block", reason=reason)
        path = req.path.split("?", 1)[0] if req.method != "CONNECT" else None
        flow.response = block_response(reason, req.host, req.port, self._hint(), req.method, path, detail)
        if req.method == "CONNECT":
            flow.response.headers["Connection"] = "close"   # nothing more can happen on this connection
        req.stream = False

    def internal_error(self, hook, exc, arg):
        # The type and the frames only: an exception message could quote request data.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        LOG.error("agent-sandbox: internal error in %s (%s), refusing:\n%s", hook, type(exc).__name__, frames)
        flow = arg if isinstance(arg, http.HTTPFlow) else None
        if flow is None:
            if isinstance(arg, mlayer.NextLayer):
                arg.layer = RefuseLayer(arg.context)
            elif hasattr(getattr(arg, "server", None), "error"):
                arg.server.error = "agent-sandbox policy: internal error"
            elif getattr(arg, "killable", False):
                arg.kill()
            return
        meta = flow.metadata.setdefault(META, {"profile": None, "rule": None, "leak": False, "secrets": []})
        if hook in ("http_connect", "requestheaders", "request", "response", "responseheaders"):
            meta.update(decision="block", reason="internal-error")
            flow.response = block_response("internal-error", flow.request.host, flow.request.port, DEFAULT_HINT)
            flow.request.stream = False
            if hook == "response":   # the audit line would have been written by this hook
                try:
                    self._record(flow)
                except Exception:  # pylint: disable=broad-except
                    LOG.error("agent-sandbox: cannot write the audit line for a refused response")
        elif hook == "websocket_message" and flow.websocket and flow.websocket.messages:
            flow.websocket.messages[-1].drop()

    def _record(self, flow, status=None, error=None):
        req = flow.request
        meta = flow.metadata.get(META) or {}
        resp = flow.response
        record = {
            "time": _now(),
            "listener": _listener_of(flow.client_conn),
            "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
            "method": req.method,
            "scheme": req.scheme or None,
            "host": _clip(req.host, 255),
            "port": req.port,
            "path": _clip(req.path.split("?", 1)[0], 1024) if req.method != "CONNECT" else None,
            "decision": meta.get("decision", "block"),
            "reason": meta.get("reason"),
            "rule": meta.get("rule"),
            "profile": meta.get("profile"),
            "status": status if status is not None else (resp.status_code if resp else None),
            "bytes": len(resp.raw_content) if resp is not None and resp.raw_content is not None else None,
            "request_bytes": len(req.raw_content) if req.raw_content is not None else None,
            "leak": meta.get("leak", False),
            "secrets": meta.get("secrets", []),
            "masked": meta.get("masked", False),
        }
        if error:
            record["error"] = _clip(error, 300)
        self.audit.write(record)

    def _record_connection(self, what, client, server_address, reason):
        host, port = (server_address or (None, None))[:2]
        self.audit.write({
            "time": _now(), "listener": _listener_of(client),
            "client": client.peername[0] if client.peername else None, "method": None, "scheme": what,
            "host": host, "port": port, "path": None, "decision": "block", "reason": reason, "rule": None,
            "profile": None, "status": None, "bytes": None, "request_bytes": None, "leak": False,
            "secrets": [], "masked": False,
        })

    async def _internal_address(self, host, port):
        """The first internal address host resolves to, or None (also None if it does not resolve)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return None
        for info in infos:
            address = info[4][0]
            if _is_internal(address):
                return address
        return None

    # ---- CONNECT

    @_guard
    async def http_connect(self, flow):
        self.tick()
        req = flow.request
        listener = _listener_of(flow.client_conn)
        decision = self._global_refusal()
        profile = None
        if decision is None:
            profile_obj = self.policy.profile_for(listener)
            profile = profile_obj.name
            kind, key = self.classify(req.host)
            decision = profile_obj.decide(kind, key, req.port)
        meta = self._meta(flow, decision, profile)
        if not decision.allowed:
            self._block(flow, meta, decision.reason, decision.detail)
        leaked = self._placeholders_in_connect(flow)
        if leaked:
            meta.update(leak=True, secrets=sorted(leaked))
            if decision.allowed:
                self._block(flow, meta, "leak", ", ".join(sorted(leaked)))
            return
        if decision.allowed and decision.how == WILDCARD and flow.server_conn.via is None:
            internal = await self._internal_address(req.host, req.port)
            if internal:
                self._block(flow, meta, "internal-address", internal)
                return
            if len(self._vetted) > 10000:
                self._vetted.clear()
            self._vetted.setdefault(flow.client_conn.id, set()).add((req.host, req.port))

    def _placeholders_in_connect(self, flow):
        pre = self.secrets.placeholder_re
        if pre is None:
            return set()
        names = set()
        blobs = [flow.request.data.authority or b"", flow.request.host.encode("utf-8", "surrogateescape")]
        blobs.extend(value for name, value in flow.request.headers.fields)
        for blob in blobs:
            for match in pre.finditer(blob):
                names.add(self.secrets.by_placeholder[match.group(0)].name)
        return names

    @_guard
    def http_connected(self, flow):
        self._record(flow)

    @_guard
    def http_connect_error(self, flow):
        self._record(flow)

    @_guard
    def tls_clienthello(self, data):
        # Never pass a tunnel through unexamined, whatever another addon decided.
        data.ignore_connection = False
        server = data.context.server.address
        sni = data.client_hello.sni
        if server and sni is not None and self.classify(sni) != self.classify(server[0]):
            # Do not let a foreign server name reach the upstream in an eager TLS handshake;
            # the first request in this tunnel is answered with a 403 (sni-mismatch).
            data.establish_server_tls_first = False

    @_guard
    async def server_connect(self, data):
        """Last check before any upstream connection: the host is allowed for this listener and,
        when only a wildcard allows it, does not resolve to an internal address."""
        server = data.server
        if server.via is not None or not server.address:
            return
        host, port = server.address[:2]
        vetted = self._vetted.get(data.client.id)
        if vetted and (host, port) in vetted:
            vetted.discard((host, port))
            return
        refusal = self._global_refusal()
        if refusal is not None:
            server.error = "agent-sandbox policy: " + block_text(refusal.reason, host, port, self._hint()).splitlines()[0]
            return
        kind, key = self.classify(host)
        decision = self.policy.profile_for(_listener_of(data.client)).decide(kind, key, port)
        if not decision.allowed:
            server.error = "agent-sandbox policy: " + block_text(decision.reason, host, port, self._hint()).splitlines()[0]
            return
        if decision.how == WILDCARD:
            internal = await self._internal_address(host, port)
            if internal:
                server.error = "agent-sandbox policy: " + block_text(
                    "internal-address", host, port, self._hint(), detail=internal).splitlines()[0]

    def client_disconnected(self, client):
        self._vetted.pop(client.id, None)

    # ---- HTTP requests

    @_guard
    def requestheaders(self, flow):
        self.tick()
        req = flow.request
        listener = _listener_of(flow.client_conn)
        decision = self._global_refusal()
        profile = None
        if decision is None:
            profile_obj = self.policy.profile_for(listener)
            profile = profile_obj.name
            decision = self._decide_request(flow, profile_obj)
        meta = self._meta(flow, decision, profile)
        if not decision.allowed:
            self._block(flow, meta, decision.reason, decision.detail)
        elif self.secrets:
            # The whole body has to be seen to find a placeholder in it.
            req.stream = False

    def _decide_request(self, flow, profile):
        req = flow.request
        if req.is_http3:
            return Decision(False, "http3")
        if req.scheme not in ("http", "https"):
            return Decision(False, "scheme")
        headers = _header_values(req.headers.fields, _REQUEST_HEADERS)
        for upgrade in headers.get(b"upgrade", ()):
            if upgrade.strip().lower() != b"websocket":
                return Decision(False, "upgrade", detail=upgrade.decode("latin-1"))
        kind, key = self.classify(req.host)
        decision = profile.decide(kind, key, req.port, req.method.upper(), req.path)
        if not decision.allowed:
            return decision
        mismatch = self._disagreement(flow, kind, key, headers.get(b"host", []))
        return mismatch or decision

    def _disagreement(self, flow, kind, key, host_headers):
        """The CONNECT target (or absolute URL), TLS server name and Host/authority must agree."""
        req = flow.request
        if len(host_headers) > 1:
            return Decision(False, "host-mismatch", detail="(several Host headers)")
        names = [value.decode("utf-8", "surrogateescape") for value in host_headers]
        if req.authority:
            names.insert(0, req.authority)
        default_port = 443 if req.scheme == "https" else 80
        for value in names:
            host, port = split_authority(value)
            if port is None:
                port = default_port
            if port != req.port or self.classify(host) != (kind, key):
                return Decision(False, "host-mismatch", detail=value)
        client = flow.client_conn
        if client.tls:
            sni = client.sni
            if sni is None:
                if kind != IP:
                    return Decision(False, "sni-missing")
            elif self.classify(sni) != (kind, key):
                return Decision(False, "sni-mismatch", detail=sni)
        return None

    @_guard
    def request(self, flow):
        meta = flow.metadata.get(META)
        if meta is None:  # the addon was (re)loaded in the middle of this flow
            self.requestheaders(flow)
            meta = flow.metadata[META]
        if not self.secrets:
            return
        leaked, swaps = self._scan_request(flow)
        if leaked:
            meta.update(leak=True, secrets=sorted(leaked))
            if meta["decision"] == "allow":
                self._block(flow, meta, "leak", ", ".join(sorted(leaked)))
            LOG.warning("agent-sandbox: leak attempt: placeholder of %s sent to %s (listener %s)",
                        ", ".join(sorted(leaked)), _text_safe(flow.request.host), _listener_of(flow.client_conn))
            return
        if swaps and meta["decision"] == "allow":
            fields = list(flow.request.headers.fields)
            for i, secret in swaps:
                fields[i] = (fields[i][0], secret.rendered)
            flow.request.headers.fields = tuple(fields)
            if len(self._injected) > 10000:
                self._injected.clear()
            self._injected[flow.id] = [secret for index, secret in swaps]
            meta.update(secrets=sorted({secret.name for index, secret in swaps}))

    def _scan_request(self, flow):
        """Find placeholders. Returns (names of leaked secrets, [(header index, secret)] to swap)."""
        secrets = self.secrets
        pre = secrets.placeholder_re
        req = flow.request
        leaked = set()
        # Fast path: one search over everything; the detailed walk below only runs on a hit.
        fields = req.headers.fields
        blob = b"\n".join([req.data.path, unquote_to_bytes(req.data.path), req.data.authority or b"",
                           req.host.encode("utf-8", "surrogateescape")] + [b"%s:%s" % field for field in fields])
        body = req.raw_content
        encoded = body and req.headers.get("content-encoding", "identity").lower() != "identity"
        if (pre.search(blob) is None and not (body and pre.search(body)) and not req.trailers
                and not (encoded and pre.search(req.get_content(strict=False) or b""))):
            return leaked, []

        def scan(blob):
            for match in pre.finditer(blob):
                leaked.add(secrets.by_placeholder[match.group(0)].name)

        scan(req.data.path)
        scan(unquote_to_bytes(req.data.path))
        scan(req.data.authority or b"")
        scan(req.host.encode("utf-8", "surrogateescape"))
        allowed = None
        if req.scheme == "https":
            kind, key = self.classify(req.host)
            allowed = {secret for secret, how in secrets.for_listener(_listener_of(flow.client_conn)).lookup(kind, key)}
        swaps = []
        for i, (name, value) in enumerate(fields):
            scan(name)
            found = {m.group(0) for m in pre.finditer(value)}
            if not found:
                continue
            secret = secrets.by_placeholder[found.pop()] if len(found) == 1 else None
            if secret is not None and allowed and secret in allowed and name.lower() == secret.header:
                swaps.append((i, secret))
            else:
                if secret is not None:
                    leaked.add(secret.name)
                for placeholder in found:
                    leaked.add(secrets.by_placeholder[placeholder].name)
        if req.trailers:
            for name, value in req.trailers.fields:
                scan(name + b":" + value)
        if body:
            scan(body)
            if encoded:
                decoded = req.get_content(strict=False)
                if decoded and decoded is not body:
                    scan(decoded)
        return leaked, swaps

    def _restore(self, flow):
        """Put placeholders back once the request is sent: no later hook, dump or log sees a secret.
        The secrets come from the swap itself, so a reload in between does not matter."""
        injected = self._injected.pop(flow.id, None)
        if not injected:
            return
        fields = []
        for name, value in flow.request.headers.fields:
            for secret in injected:
                value = value.replace(secret.value, secret.placeholder)
            fields.append((name, value))
        flow.request.headers.fields = tuple(fields)

    # ---- responses

    @_guard
    def responseheaders(self, flow):
        self._restore(flow)
        resp = flow.response
        if not self.secrets or resp.stream is not True:
            return
        if resp.headers.get("content-encoding", "identity").lower() != "identity":
            resp.stream = False  # buffer it so that it can be decoded and masked
        else:
            resp.stream = StreamMasker(self.secrets, flow.metadata.setdefault(META, {}))

    @_guard
    def response(self, flow):
        self._restore(flow)
        meta = flow.metadata.setdefault(META, {})
        resp = flow.response
        if self.secrets and meta.get("decision") == "allow":
            names = set()
            value_re = self.secrets.value_re
            if value_re.search(b"\n".join(value for name, value in resp.headers.fields)):
                fields = []
                for name, value in resp.headers.fields:
                    value, found = self.secrets.mask(value)
                    names |= found
                    fields.append((name, value))
                resp.headers.fields = tuple(fields)
            raw = resp.raw_content
            if raw:
                if resp.headers.get("content-encoding", "identity").lower() != "identity":
                    content = resp.get_content(strict=False) or raw
                else:
                    content = raw
                if value_re.search(content):
                    masked, found = self.secrets.mask(content)
                    names |= found
                    resp.content = masked
            if names:
                meta["masked"] = True
                LOG.warning("agent-sandbox: masked %s in a response from %s", ", ".join(sorted(names)),
                            _text_safe(flow.request.host))
        self._record(flow)

    @_guard
    def error(self, flow):
        self._restore(flow)
        if flow.request is not None:
            self._record(flow, error=flow.error.msg if flow.error else None)

    # ---- WebSockets

    @_guard
    def websocket_start(self, flow):
        meta = flow.metadata.get(META) or {}
        if meta.get("decision") != "allow":
            LOG.warning("agent-sandbox: WebSocket to %s without an allowed handshake; dropping its messages",
                        _text_safe(flow.request.host))

    @_guard
    def websocket_message(self, flow):
        meta = flow.metadata.get(META) or {}
        message = flow.websocket.messages[-1]
        if meta.get("decision") != "allow":
            message.drop()
            return
        if not self.secrets:
            return
        if message.from_client:
            names = {self.secrets.by_placeholder[m.group(0)].name for m in self.secrets.placeholder_re.finditer(message.content)}
            if names:
                message.drop()
                meta.update(leak=True, secrets=sorted(set(meta.get("secrets", [])) | names))
                LOG.warning("agent-sandbox: leak attempt: placeholder of %s in a WebSocket message to %s",
                            ", ".join(sorted(names)), _text_safe(flow.request.host))
                self._record(flow, status=101, error="WebSocket message with a secret placeholder dropped")
        elif self.secrets.value_re.search(message.content):
            message.content, names = self.secrets.mask(message.content)
            meta["masked"] = True

    # ---- everything that is not HTTP

    @_guard
    def next_layer(self, nextlayer):
        if isinstance(nextlayer.layer, _REFUSED_LAYERS):
            kind = type(nextlayer.layer).__name__
            LOG.warning("agent-sandbox: refusing a %s connection to %s", kind, nextlayer.context.server.address)
            self._record_connection(kind, nextlayer.context.client, nextlayer.context.server.address, "not-http")
            nextlayer.layer = RefuseLayer(nextlayer.context)

    @_guard
    def tcp_start(self, flow):
        # Normally unreachable (next_layer refuses raw TCP). mitmproxy 11 does not stop a killed
        # TCP flow in transit, so the messages are also emptied below.
        self._record_connection("tcp", flow.client_conn, flow.server_conn.address, "not-http")
        flow.server_conn.error = "agent-sandbox policy: raw TCP is not allowed"
        if flow.killable:
            flow.kill()

    def tcp_message(self, flow):
        flow.messages[-1].content = b""

    @_guard
    def udp_start(self, flow):
        self._record_connection("udp", flow.client_conn, flow.server_conn.address, "not-http")
        flow.server_conn.error = "agent-sandbox policy: UDP is not allowed"
        if flow.killable:
            flow.kill()

    def udp_message(self, flow):
        flow.messages[-1].content = b""

    @_guard
    def dns_request(self, flow):
        self._record_connection("dns", flow.client_conn, flow.server_conn.address, "not-http")
        if flow.killable:
            flow.kill()


class StreamMasker:
    """Masks real secret values in a streamed response body, across chunk boundaries."""

    def __init__(self, secrets, meta):
        self.secrets = secrets
        self.meta = meta
        self.keep = max(secrets.max_value - 1, 0)
        self.tail = b""

    def __call__(self, chunk):
        data = self.tail + chunk
        # A match starting before `cut` is complete in `data`; later ones wait for more data.
        cut = len(data) - self.keep if chunk else len(data)
        out, pos = [], 0
        for match in self.secrets.value_re.finditer(data):
            if match.start() >= cut:
                break
            out.append(data[pos:match.start()])
            out.append(self.secrets.by_value[match.group(0)].placeholder)
            self.meta["masked"] = True
            pos = match.end()
        cut = max(cut, pos)
        out.append(data[pos:cut])
        self.tail = data[cut:]
        return b"".join(out)


addons = [AgentSandboxPolicy()] if HAVE_MITMPROXY else []


# --------------------------------------------------------------------------- command line

def run_mitmdump(argv):
    """mitmdump with the addon built into the master: if it cannot load, the proxy does not start."""
    from mitmproxy.tools import cmdline, dump, main  # pylint: disable=import-outside-toplevel

    class SandboxDumpMaster(dump.DumpMaster):
        def __init__(self, options, **kwargs):
            super().__init__(options, **kwargs)
            self.addons.add(AgentSandboxPolicy())

    main.run(SandboxDumpMaster, cmdline.mitmdump, argv)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--mitmdump"]:
        if not HAVE_MITMPROXY:
            print("agent_sandbox_policy: mitmproxy is not importable by %s" % sys.executable, file=sys.stderr)
            return 2
        return run_mitmdump(argv[1:])
    parser = argparse.ArgumentParser(
        prog="agent_sandbox_policy.py",
        description="Validate agent-sandbox proxy files (exit 0 when valid, 2 with the reason when not), "
                    "or run mitmdump with the policy addon built in (--mitmdump ARGS...).")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check-policy", metavar="FILE")
    group.add_argument("--check-secrets", metavar="FILE")
    args = parser.parse_args(argv)
    path = args.check_policy or args.check_secrets
    try:
        if args.check_policy:
            policy = load_policy(path)
            print("%s: valid policy: %d rules, %d listener profiles" % (path, policy.rule_count, len(policy.listeners)))
        else:
            secrets = load_secrets(path)
            print("%s: valid secrets file: %d secrets" % (path, len(secrets.secrets)))
    except PolicyError as exc:
        print("%s: %s" % (path, exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
