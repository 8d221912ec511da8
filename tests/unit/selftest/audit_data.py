# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An audit log as the proxy writes it (docs/proxy-policy.md, "Audit log"; the records are built like
the addon's `_record` and `_record_connection`), rotated once, for the tests of `agent-sandbox log`
and `agent-sandbox status`. Times are relative to now, so that --since cuts where a real log would."""
from __future__ import annotations

import json
import os
import time

AGENTS = [{"name": "claude", "proxy_port": 8080}, {"name": "codex", "proxy_port": 8081}]


def stamp(seconds):
    """The addon's time format: UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % (int(seconds * 1000) % 1000)


def request(when, listener, method, host, decision, reason=None, path="/", scheme="https", port=443, status=None):
    return {"time": stamp(when), "listener": listener, "client": "127.0.0.1", "method": method,
            "scheme": scheme, "host": host, "port": port, "path": None if method == "CONNECT" else path,
            "decision": decision, "reason": reason, "rule": host if decision == "allow" else None,
            "profile": "default", "status": status if status is not None else (200 if decision == "allow" else 403),
            "bytes": 10, "request_bytes": 0, "leak": False, "secrets": [], "masked": False}


def connection(when, listener, what, host, port, reason="not-http"):
    return {"time": stamp(when), "listener": listener, "client": "127.0.0.1", "method": None, "scheme": what,
            "host": host, "port": port, "path": None, "decision": "block", "reason": reason, "rule": None,
            "profile": None, "status": None, "bytes": None, "request_bytes": None, "leak": False,
            "secrets": [], "masked": False}


def line(record):
    return json.dumps(record, separators=(",", ":")) + "\n"


def write_log(folder, now):
    """audit.jsonl and audit.jsonl.1 in folder; returns (path, the records by name)."""
    hour = 3600
    rec = {
        "old_allow": request(now - 3 * hour - 600, 8080, "GET", "api.github.com", "allow", path="/repos/a/b"),
        "old_block": request(now - 3 * hour, 8080, "CONNECT", "evil.test", "block", "no-rule"),
        "connect": request(now - 50 * 60, 8080, "CONNECT", "api.github.com", "allow"),
        "get": request(now - 50 * 60 + 1, 8080, "GET", "api.github.com", "allow", path="/repos/a/b"),
        "evil": request(now - 40 * 60, 8080, "CONNECT", "evil.test", "block", "no-rule"),
        "post": request(now - 30 * 60, 8080, "POST", "api.github.com", "block", "method", path="/repos/a/b/issues"),
        "codex_http": request(now - 20 * 60, 8081, "GET", "example.org", "block", "no-rule", scheme="http", port=80),
        "codex_pypi": request(now - 10 * 60, 8081, "GET", "pypi.org", "allow", path="/simple/requests/"),
        "udp": connection(now - 5 * 60, 8079, "udp", "1.1.1.1", 53),
    }
    path = folder / "audit.jsonl"
    rotated = folder / "audit.jsonl.1"
    rotated.write_text(line(rec["old_allow"]) + line(rec["old_block"]) + "not json{\n")
    # A rotated file's mtime is the time of its last line: the proxy renamed it when it was full.
    os.utime(rotated, (now - 3 * hour, now - 3 * hour))
    path.write_text(
        line(rec["connect"]) + line(rec["get"]) + line(rec["evil"])
        + '{"time":"yesterday","decision":"allow"}\n'  # a time that is not the proxy's
        + line(rec["post"]) + line(rec["codex_http"]) + "\n" + '["a", "list"]\n'
        + line(rec["codex_pypi"]) + line(rec["udp"]))
    return path, rec


def write_config(folder, audit_log, **more):
    config = folder / "doctor.json"
    config.write_text(json.dumps(dict({"agents": AGENTS, "proxy_port": 8080, "audit_log": str(audit_log),
                                       "proxy_unit": "agent-sandbox-proxy.service"}, **more)))
    return config
