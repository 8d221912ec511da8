"""The addon inside a real mitmdump (through the --mitmdump launcher), with real TLS clients.

Local only: an HTTPS echo server and a raw TCP listener on 127.0.0.1 with a CA made here.
Names the policy refuses (blocked.test) do not resolve anywhere: a refusal that needed DNS would fail
differently from the 403 asserted here.
"""
import http.client
import json
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from proxy_helpers import PLACEHOLDER, SECRET, package_command, write_json
from tls_server import https_server, make_pki

pytestmark = pytest.mark.skipif(not pathlib.Path(sys.executable).with_name("mitmdump").exists(),
                                reason="mitmproxy is not installed next to this python")


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        Echo.seen.append({"path": self.path, "headers": dict(self.headers), "body": body.decode("latin-1")})
        out = json.dumps({"path": self.path, "authorization": self.headers.get("authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class RawListener(threading.Thread):
    """Counts the bytes anybody sends it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""

    def run(self):
        while True:
            conn = self.sock.accept()[0]
            conn.settimeout(5)
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        break
                    self.received += data
            except OSError:
                pass
            conn.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    work = tmp_path_factory.mktemp("live")
    pki = make_pki(work)
    server = https_server(Echo, pki["server.pem"], pki["server.key"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    raw = RawListener()
    raw.start()
    https_port = server.server_address[1]
    policy = write_json(work / "policy.json", {"rules": [{"host": "localhost", "ports": [https_port, raw.port]}]})
    secrets = write_json(work / "secrets.json", {"secrets": [
        {"name": "api", "placeholder": PLACEHOLDER, "value": SECRET, "hosts": ["localhost"],
         "header": "Authorization: Bearer {secret}"}]})
    audit = work / "audit.jsonl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(work / "mitmdump.log", "w+b")  # pylint: disable=consider-using-with
    # As the proxy's unit starts it: python -P -m agent_sandbox_proxy --mitmdump ...
    argv, env = package_command(
        "--mitmdump", "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", "confdir=%s" % (work / "confdir"), "--set", "ssl_verify_upstream_trusted_ca=%s" % pki["ca.pem"],
        "--set", "http3=false", "--set", "flow_detail=1", "--set", "termlog_verbosity=info",
        "--set", "agent_sandbox_policy=%s" % policy, "--set", "agent_sandbox_secrets=%s" % secrets,
        "--set", "agent_sandbox_audit=%s" % audit)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(env, HOME=str(work)))  # pylint: disable=consider-using-with
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail("mitmdump did not start: %s" % log.read().decode(errors="replace"))
            time.sleep(0.2)
    client_ctx = ssl.create_default_context(cafile=str(work / "confdir" / "mitmproxy-ca-cert.pem"))
    yield {"proc": proc, "policy": policy, "work": work, "port": port, "https_port": https_port, "raw": raw, "audit": audit, "log": log, "ctx": client_ctx}
    proc.terminate()
    proc.wait(timeout=20)
    server.shutdown()


def raw_connect(proxy, target):
    sock = socket.create_connection(("127.0.0.1", proxy["port"]), timeout=10)
    sock.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def read_all(sock):
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def get(proxy, path="/", headers=None, target="localhost"):
    conn = http.client.HTTPSConnection("127.0.0.1", proxy["port"], context=proxy["ctx"], timeout=10)
    conn.set_tunnel(target, proxy["https_port"])
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read().decode()


def test_allowed_request_and_secret_injection(proxy):
    Echo.seen.clear()
    status, dummy, body = get(proxy, "/hello?x=1", {"Authorization": "Bearer " + PLACEHOLDER})
    assert status == 200
    assert Echo.seen[-1]["headers"]["Authorization"] == "Bearer " + SECRET   # the upstream got the secret
    assert json.loads(body)["authorization"] == "Bearer " + PLACEHOLDER       # its echo comes back masked


def test_connect_to_a_refused_host_is_answered_before_any_lookup(proxy):
    sock, head = raw_connect(proxy, "blocked.test:443")
    head += read_all(sock)
    assert head.startswith(b"HTTP/1.1 403 Forbidden by agent-sandbox policy\r\n")
    assert b"X-Agent-Sandbox-Block: policy; host=blocked.test; reason=no-rule" in head
    assert b"blocked.test:443 is not on the allowlist" in head and b"not a network fault" in head
    with pytest.raises(OSError, match="403 Forbidden by agent-sandbox policy"):
        get(proxy, target="blocked.test")


def test_ip_literal_and_odd_spellings_are_refused(proxy):
    for target in ("127.0.0.1", "127.1", "2130706433", "[::1]", "localhost."):
        sock, head = raw_connect(proxy, "%s:%d" % (target, proxy["https_port"]))
        sock.close()
        assert head.startswith(b"HTTP/1.1 403 "), target


def test_sni_that_differs_from_the_connect_target_is_refused(proxy):
    Echo.seen.clear()
    sock, head = raw_connect(proxy, "localhost:%d" % proxy["https_port"])
    assert head.startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # the proxy's certificate names front.example
    tls = ctx.wrap_socket(sock, server_hostname="front.example")
    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n" % proxy["https_port"])
    answer = read_all(tls)
    assert b" 403 " in answer.split(b"\r\n")[0] and b"reason=sni-mismatch" in answer
    assert not Echo.seen


def test_host_header_that_differs_from_the_connect_target_is_refused(proxy):
    Echo.seen.clear()
    status, headers = get(proxy, headers={"Host": "blocked.test"})[:2]
    assert status == 403 and headers["X-Agent-Sandbox-Block"].endswith("reason=host-mismatch")
    assert not Echo.seen


def test_leaked_placeholder_is_refused(proxy):
    Echo.seen.clear()
    status, headers, body = get(proxy, "/search?q=" + PLACEHOLDER)
    assert status == 403 and headers["X-Agent-Sandbox-Block"].endswith("reason=leak")
    assert "leak attempt" in body and not Echo.seen


def test_raw_tcp_in_a_tunnel_is_cut(proxy):
    sock, head = raw_connect(proxy, "localhost:%d" % proxy["raw"].port)
    assert head.startswith(b"HTTP/1.1 200")
    sock.sendall(b"\x00\x01\x02 not http, not tls\n" * 4)
    assert read_all(sock) == b""        # closed by the proxy
    time.sleep(0.5)
    assert proxy["raw"].received == b""


def test_plain_http_is_checked_too(proxy):
    sock = socket.create_connection(("127.0.0.1", proxy["port"]), timeout=10)
    sock.sendall(b"GET http://blocked.test/x HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 403 ") and b"reason=no-rule" in answer


def test_audit_and_logs_hold_no_secret(proxy):
    get(proxy, "/again", {"Authorization": "Bearer " + PLACEHOLDER})
    time.sleep(0.3)
    lines = [json.loads(line) for line in proxy["audit"].read_text().splitlines()]
    assert {"allow", "block"} <= {line["decision"] for line in lines}
    assert any(line["leak"] for line in lines)
    assert any(line["method"] == "GET" and line["path"] == "/again" and line["status"] == 200 for line in lines)
    proxy["log"].seek(0)
    everything = proxy["audit"].read_text() + proxy["log"].read().decode(errors="replace")
    assert SECRET not in everything


def test_sighup_reloads_without_dropping_the_tunnel(proxy):
    conn = http.client.HTTPSConnection("127.0.0.1", proxy["port"], context=proxy["ctx"], timeout=10)
    conn.set_tunnel("localhost", proxy["https_port"])
    conn.request("GET", "/before")
    assert conn.getresponse().read()
    write_json(proxy["policy"], {"rules": [{"host": "localhost", "ports": [proxy["https_port"]], "methods": ["HEAD"]}]})
    proxy["proc"].send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proxy["proc"].poll() is None
    conn.request("GET", "/after")         # same keep-alive tunnel, new policy
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 403 and resp.getheader("X-Agent-Sandbox-Block").endswith("reason=method")
    proxy["log"].seek(0)
    assert b"SIGHUP: reloading" in proxy["log"].read()
