"""Helpers for the proxy policy addon tests: build flows, drive the addon's hooks, run its command line."""
import asyncio
import gzip
import json
import os
import pathlib
import sys

from mitmproxy import http
from mitmproxy.test import taddons, tflow

# The folder that holds the package, as PYTHONPATH holds it for the proxy's unit.
PACKAGE_PARENT = pathlib.Path(__file__).resolve().parents[3] / "roles" / "mitm_proxy" / "files"
if str(PACKAGE_PARENT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_PARENT))

from agent_sandbox_proxy.addon import AgentSandboxPolicy  # noqa: E402  pylint: disable=wrong-import-position


def package_command(*args, python=sys.executable):
    """argv and environment that run the package as the proxy's service does: python -P -m agent_sandbox_proxy."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT))
    return [python, "-P", "-m", "agent_sandbox_proxy"] + list(args), env


SECRET = "ghp_REALSECRET_do_not_leak_42"
PLACEHOLDER = "AGENT_SANDBOX_PLACEHOLDER_github_7f3a"
OTHER_SECRET = "sk-OTHERSECRET-9876543210"
OTHER_PLACEHOLDER = "AGENT_SANDBOX_PLACEHOLDER_openai_b21c"
SCOPED_SECRET = "scoped-SECRET-value-555"
SCOPED_PLACEHOLDER = "AGENT_SANDBOX_PLACEHOLDER_scoped_44d0"
ALL_SECRETS = (SECRET, OTHER_SECRET, SCOPED_SECRET)

POLICY = {
    "version": 1,
    "block_hint": "add it to mitm_proxy_allowlist and re-run the playbook",
    "rules": [
        "example.com",
        {"host": "*.example.org"},
        {"host": "api.github.com", "ports": [443]},
        {"host": "api.openai.com"},
        {"host": "ro.example.net", "methods": ["GET", "HEAD"], "paths": ["/v1", "/docs/"], "name": "ro-api"},
        {"host": "alt.example.net", "ports": [8443]},
        {"host": "127.0.0.1", "ports": [8443]},
        {"host": "::1"},
        {"host": "named.dot.example."},
        {"host": "xn--bcher-kva.de"},
    ],
    "listeners": {"8081": {"rules": ["second.example", "api.github.com"]}},
}

SECRETS = {
    "version": 1,
    "secrets": [
        {"name": "github", "placeholder": PLACEHOLDER, "value": SECRET, "hosts": ["api.github.com"],
         "header": "Authorization: Bearer {secret}"},
        {"name": "openai", "placeholder": OTHER_PLACEHOLDER, "value": OTHER_SECRET, "hosts": ["api.openai.com"],
         "header": "x-api-key: {secret}"},
    ],
    "listeners": {"8081": {"secrets": [
        {"name": "scoped", "placeholder": SCOPED_PLACEHOLDER, "value": SCOPED_SECRET, "hosts": ["api.github.com"],
         "header": "Authorization: Bearer {secret}"},
    ]}},
}


def write_json(path, doc, mode=0o600):
    path.write_text(json.dumps(doc))
    os.chmod(path, mode)
    return path


class Env:
    """An addon loaded in mitmproxy's test context with a policy, a secrets file and an audit log."""

    def __init__(self, tmp_path, policy=None, secrets=None, **options):
        self.tmp = tmp_path
        self.policy_path = write_json(tmp_path / "policy.json", POLICY if policy is None else policy)
        self.secrets_path = write_json(tmp_path / "secrets.json", SECRETS if secrets is None else secrets)
        self.audit_path = tmp_path / "log" / "audit.jsonl"
        self.audit_path.parent.mkdir(exist_ok=True)
        self.addon = AgentSandboxPolicy()
        self.tctx = taddons.context(self.addon)
        settings = {"agent_sandbox_policy": str(self.policy_path), "agent_sandbox_secrets": str(self.secrets_path),
                    "agent_sandbox_audit": str(self.audit_path)}
        settings.update(options)
        self.tctx.configure(self.addon, **settings)

    def audit_lines(self):
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def audit_text(self):
        return self.audit_path.read_text() if self.audit_path.exists() else ""

    # ---- driving flows through the hooks in mitmproxy's order

    def connect(self, host, port=443, listener=8080, headers=()):
        flow = connect_flow(host, port, listener, headers)
        asyncio.run(self.addon.http_connect(flow))
        if flow.response is None:
            flow.response = http.Response.make(200)   # what mitmproxy answers to an accepted CONNECT
            self.addon.http_connected(flow)
            flow.response = None
        else:
            self.addon.http_connect_error(flow)
        return flow

    def send(self, flow, response=None):
        """requestheaders, request, then (if not blocked) the upstream response and its hooks."""
        self.addon.requestheaders(flow)
        self.addon.request(flow)
        if flow.response is None:
            flow.response = response if response is not None else http.Response.make(200, b"ok")
        self.addon.responseheaders(flow)
        stream_through(flow.response)
        self.addon.response(flow)
        return flow


def _chunks(result):
    return [result] if isinstance(result, bytes) else list(result)


def stream_through(response):
    """What mitmproxy does with a body when responseheaders set a stream callable: every chunk
    through it, then b"" (here one chunk); the body is then not kept (raw_content None)."""
    if callable(response.stream):
        body = response.raw_content or b""
        out = b"".join(_chunks(response.stream(body)) + _chunks(response.stream(b"")))
        response.stream = False
        response.raw_content = out
        return out
    return None


def connect_flow(host, port=443, listener=8080, headers=()):
    client = tflow.tclient_conn()
    client.sockname = ("127.0.0.1", listener)
    authority = ("[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)).encode("utf-8", "surrogateescape")
    req = http.Request(host, port, b"CONNECT", b"", authority, b"", b"HTTP/1.1",
                       http.Headers([(k.encode(), v.encode()) for k, v in headers]), b"", None, 946681200, 946681201)
    return tflow.tflow(client_conn=client, req=req)


_UNSET = object()


def tunnel_flow(host, port=443, path="/", method="GET", sni=_UNSET, host_header=_UNSET, listener=8080,
                scheme="https", headers=(), content=b"", http2=False, authority=b""):
    """A request inside a CONNECT tunnel: mitmproxy sets request.host/port to the CONNECT target."""
    client = tflow.tclient_conn()
    client.sockname = ("127.0.0.1", listener)
    client.tls = scheme == "https"
    client.sni = (host if sni is _UNSET else sni) if client.tls else None
    fields = []
    if host_header is _UNSET:
        default = 443 if scheme == "https" else 80
        host_header = host if port == default else "%s:%d" % (host, port)
    if host_header is not None and not http2:
        fields.append((b"Host", host_header.encode("utf-8", "surrogateescape")))
    fields.extend((k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers)
    if http2 and host_header is not None and not authority:
        authority = host_header.encode()
    req = http.Request(host, port, method.encode(), scheme.encode(), authority, path.encode(),
                       b"HTTP/2.0" if http2 else b"HTTP/1.1", http.Headers(fields), content, None, 946681200, 946681201)
    return tflow.tflow(client_conn=client, req=req)


def plain_flow(url, method="GET", host_header=_UNSET, listener=8080, headers=(), content=b""):
    """A plain-HTTP proxy request (absolute form); mitmproxy has already cleared the authority."""
    client = tflow.tclient_conn()
    client.sockname = ("127.0.0.1", listener)
    req = http.Request.make(method, url, content)
    req.authority = ""
    if host_header is _UNSET:
        host_header = req.host if req.port == 80 else "%s:%d" % (req.host, req.port)
    fields = [(b"Host", host_header.encode())] if host_header is not None else []
    fields.extend((k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers)
    req.headers = http.Headers(fields)
    return tflow.tflow(client_conn=client, req=req)


def gzipped(data):
    return gzip.compress(data)
