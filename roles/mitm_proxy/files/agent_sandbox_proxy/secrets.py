# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secrets file, the swap of placeholders for values, and the masking of values in responses.

Pure Python (no mitmproxy): `python -m agent_sandbox_proxy --check-secrets` runs it without mitmproxy.
The addon decides where a placeholder may go; this module knows what the secrets are and how to
find them in bytes (SecretSet.mask; streams.py does the same for bodies in flight).

A real value found in a response is replaced by as many asterisks: the length stays the same, so a
body already announced with its Content-Length stays true to it while it streams.
"""
from __future__ import annotations

import re

from .hosts import HostIndex
from .policy import TOKEN, PolicyError, check_keys, check_version, listener_port, parse_pattern, read_json
from .streams import prefixes

_SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_VISIBLE = re.compile(r"[\x21-\x7e]+\Z")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+\Z")


class Secret:
    __slots__ = ("name", "placeholder", "header", "rendered", "value", "mask")

    def __init__(self, name, placeholder, header, template, value):
        self.name = name
        self.placeholder = placeholder.encode("ascii")
        self.header = header.lower().encode("ascii")
        self.rendered = template.replace("{secret}", value).encode("latin-1")
        self.value = value.encode("latin-1")
        self.mask = b"*" * len(self.value)   # what the agent sees where the value came back

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
        # For bodies in flight (streams.Window): what may wait for the next chunk.
        self.placeholder_starts = prefixes(self.by_placeholder)
        self.value_starts = prefixes(self.by_value)

    def __bool__(self):
        return bool(self.secrets)

    def for_listener(self, port):
        return self.listeners.get(port, self.default)

    def mask(self, data):
        """Replace every real value in data (bytes) by its mask; return (data, names)."""
        names = set()

        def repl(match):
            secret = self.by_value[match.group(0)]
            names.add(secret.name)
            return secret.mask
        return self.value_re.sub(repl, data), names


def _literal_re(literals):
    if not literals:
        return None
    # Longest first, so that a match is never cut short by a shorter literal.
    return re.compile(b"|".join(re.escape(x) for x in sorted(literals, key=len, reverse=True)))


def _parse_secret(raw, where):
    check_keys(raw, where, ("name", "placeholder", "value", "hosts", "header", "comment"),
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
    if not TOKEN.match(header_name) or template.count("{secret}") != 1 or not _HEADER_VALUE.match(template):
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
    check_keys(doc, "secrets file", ("version", "secrets", "listeners", "comment"))
    check_version(doc, "secrets file")
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
        port = listener_port(port_text, "listeners")
        where = "listeners.%s" % port_text
        check_keys(profile, where, ("secrets", "comment"), ("secrets",))
        listeners[port] = scope(profile["secrets"], where + ".secrets")
    _check_collisions(everything)
    return SecretSet(default, listeners, [secret for where, secret in everything])


def load_secrets(path):
    return parse_secrets(read_json(path, secret=True))
