# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the agent is told: the 403 answer to a refused request, and text made safe to show or log."""
from __future__ import annotations

import re

from mitmproxy import http

from .policy import CONTROL

BLOCK_HEADER = "X-Agent-Sandbox-Block"
BLOCK_REASON_PHRASE = "Forbidden by agent-sandbox policy"

_UNSAFE_HEADER_CHARS = re.compile(r"[^A-Za-z0-9._:\-\[\]*]")


def clip(text, limit):
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + "..."


_DETAILS = {
    "no-rule": "{target} is not on the allowlist",
    "denied": "{target} is not on the allowlist, and an administrator refused it when asked",
    "ask-timeout": "{target} is not on the allowlist, and no administrator answered in time (ask mode)",
    "ask-busy": "{target} is not on the allowlist, and too many requests are already waiting for an administrator",
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
    return _UNSAFE_HEADER_CHARS.sub(lambda m: "%%%02X" % (ord(m.group(0)) & 0xFF), clip(text, limit) or "")


def text_safe(text, limit=200):
    return CONTROL.sub("?", clip(text, limit) or "")


def block_text(reason, host, port, hint, method=None, path=None, detail=None):
    target = "%s:%s" % (text_safe(host), port) if port else text_safe(host)
    first = _DETAILS.get(reason, "the request is not allowed").format(
        target=target, method=text_safe(method or ""), path=text_safe(path or ""), detail=text_safe(detail or ""))
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
