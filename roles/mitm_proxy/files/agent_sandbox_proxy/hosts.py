# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the proxy reads a host name: its kind and key, authorities, and the index of host patterns.

Pure Python (no mitmproxy): the validators import it too.
"""
from __future__ import annotations

import ipaddress
import re
import socket

# Host kinds. Only NAME hosts can match a wildcard; every other kind needs an exact rule.
NAME, IP, IDN, ODD = "name", "ip", "idn", "odd"
EXACT, WILDCARD = "exact", "wildcard"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


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
