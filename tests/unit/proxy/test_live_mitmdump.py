"""The addon inside a real mitmdump (through the --mitmdump launcher), with real TLS clients.

Local only: an HTTPS echo server and a raw TCP listener on 127.0.0.1 with a CA made here.
Names the policy refuses (blocked.test) do not resolve anywhere: a refusal that needed DNS would fail
differently from the 403 asserted here.
"""
import gzip
import http.client
import json
import pathlib
import shutil
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


class Streams(BaseHTTPRequestHandler):
    """Bodies that show whether the proxy passes them on as they come.

    /sse?n=N   an event, then the next only once the client said (acks) it has the one before:
               a proxy that holds the body back deadlocks, and the stream ends with "timeout".
    /upload    a chunked upload, read chunk by chunk; what arrived and whether it ended is kept.
    /gzip      a gzip body holding the secret.  /big?mib=N  N MiB of zeros.
    """
    protocol_version = "HTTP/1.1"
    acks = {}
    upload = {"received": b"", "complete": None}

    def do_GET(self):  # noqa: N802
        path, _sep, query = self.path.partition("?")
        if path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query.split("=")[1])):
                event = threading.Event()
                Streams.acks[i] = event
                self._chunk(b"data: %d\n\n" % i)
                if not event.wait(10):
                    self._chunk(b"data: timeout\n\n")
                    break
            self._chunk(b"")
        elif path == "/gzip":
            body = gzip.compress(b'{"key": "' + SECRET.encode() + b'", "pad": "' + b"p" * 100000 + b'"}')
            if query == "chunked":   # streamed through the proxy
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 50):
                    self._chunk(body[i:i + 50])
                self._chunk(b"")
            else:                    # small: taken whole by the proxy
                self._whole(body, {"Content-Encoding": "gzip"})
        elif path == "/big":
            size = int(query.split("=")[1]) << 20
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"\0" * (256 << 10)
            for dummy in range(size // len(block)):
                self.wfile.write(block)

    def do_POST(self):  # noqa: N802
        Streams.upload = state = {"received": b"", "complete": False}
        try:
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    state["complete"] = True
                    break
                state["received"] += self.rfile.read(size)
                self.rfile.readline()
        except (OSError, ValueError):
            state["complete"] = None   # cut off mid-body
            self.close_connection = True
            return
        self._whole(b"%d" % len(state["received"]), {})

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _whole(self, body, headers):
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
    streams = https_server(Streams, pki["server.pem"], pki["server.key"])
    threading.Thread(target=streams.serve_forever, daemon=True).start()
    raw = RawListener()
    raw.start()
    https_port = server.server_address[1]
    streams_port = streams.server_address[1]
    policy = write_json(work / "policy.json", {"rules": [{"host": "localhost", "ports": [https_port, raw.port, streams_port]}]})
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
        "--set", "http3=false", "--set", "flow_detail=1", "--set", "termlog_verbosity=info", "--set", "connection_strategy=lazy",
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
    yield {"proc": proc, "policy": policy, "work": work, "port": port, "https_port": https_port, "raw": raw, "audit": audit,
           "log": log, "ctx": client_ctx, "streams_port": streams_port}
    proc.terminate()
    proc.wait(timeout=20)
    server.shutdown()
    streams.shutdown()


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
    assert json.loads(body)["authorization"] == "Bearer " + "*" * len(SECRET)      # its echo comes back masked


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


# ---------------------------------------------------------------- bodies in flight

def streams_conn(proxy):
    conn = http.client.HTTPSConnection("127.0.0.1", proxy["port"], context=proxy["ctx"], timeout=30)
    conn.set_tunnel("localhost", proxy["streams_port"])
    return conn


def last_audit(proxy, path):
    time.sleep(0.3)
    return [json.loads(line) for line in proxy["audit"].read_text().splitlines() if '"%s"' % path in line][-1]


def test_server_sent_events_reach_the_agent_one_by_one(proxy):
    conn = streams_conn(proxy)
    conn.request("GET", "/sse?n=4")
    resp = conn.getresponse()
    events = []
    while True:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            events.append(line[6:].strip().decode())
            if events[-1].isdigit():
                Streams.acks[int(events[-1])].set()   # only now does the server send the next one
    assert events == ["0", "1", "2", "3"]         # a buffering proxy gets ["0", "timeout"]
    line = last_audit(proxy, "/sse")
    assert line["decision"] == "allow" and line["bytes"] > 0


def curl_through(proxy, *args, stdin=None):
    """curl as an agent runs it: through the proxy, trusting its CA, unbuffered output (-N)."""
    return subprocess.Popen(["curl", "-sS", "-N", "--proxy", "http://127.0.0.1:%d" % proxy["port"],
                             "--cacert", str(proxy["work"] / "confdir" / "mitmproxy-ca-cert.pem")] + list(args),
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_server_sent_events_reach_curl_one_by_one(proxy, version):
    proc = curl_through(proxy, version, "-w", "%{http_version}\n", "https://localhost:%d/sse?n=3" % proxy["streams_port"])
    events = []
    for line in proc.stdout:
        if line.startswith(b"data: "):
            events.append(line[6:].strip().decode())
            if events[-1].isdigit():
                Streams.acks[int(events[-1])].set()
        elif line.strip():
            events.append("http/" + line.strip().decode())
    proc.wait(timeout=30)
    assert events == ["0", "1", "2", "http/" + ("2" if version == "--http2" else "1.1")], proc.stderr.read()


def send_chunk(sock, data):
    sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def wait_for(condition, what):
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "never happened: " + what
        time.sleep(0.05)


def streams_tunnel(proxy):
    sock, head = raw_connect(proxy, "localhost:%d" % proxy["streams_port"])
    assert head.startswith(b"HTTP/1.1 200")
    return proxy["ctx"].wrap_socket(sock, server_hostname="localhost")


def start_upload(proxy):
    tls = streams_tunnel(proxy)
    tls.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n" % proxy["streams_port"])
    return tls


@pytest.mark.parametrize("cut", [1, 17, len(PLACEHOLDER) - 1])
def test_placeholder_split_across_upload_chunks_never_reaches_the_upstream(proxy, cut):
    Streams.upload = {"received": b"", "complete": None}
    first = b'{"pad": "' + b"a" * 5000 + b'", "token": "' + PLACEHOLDER[:cut].encode()
    tls = start_upload(proxy)
    send_chunk(tls, first)
    # The upstream has what came before the placeholder: the body is really streamed.
    wait_for(lambda: Streams.upload["received"].endswith(b"a" * 5000 + b'", "token": "'), "the first chunk upstream")
    send_chunk(tls, PLACEHOLDER[cut:].encode() + b'", "more": "' + b"m" * 5000 + b'"}')
    answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 403 ") and b"reason=leak" in answer
    assert b"logged as a leak attempt" in answer
    wait_for(lambda: Streams.upload["complete"] is not False, "the upstream connection to end")
    assert Streams.upload["complete"] is None            # cut off: no complete request upstream
    assert PLACEHOLDER[:cut].encode() not in Streams.upload["received"][-cut - 12:]
    assert b"m" * 10 not in Streams.upload["received"]
    line = last_audit(proxy, "/upload")
    assert line["decision"] == "block" and line["reason"] == "leak" and line["leak"] is True


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_upload_with_a_split_placeholder_is_stopped(proxy, version):
    Streams.upload = {"received": b"", "complete": None}
    proc = curl_through(proxy, version, "-T", "-", "-X", "POST", "-w", "\n%{http_code}",
                        "https://localhost:%d/upload" % proxy["streams_port"], stdin=subprocess.PIPE)
    proc.stdin.write(b"b" * 20000 + PLACEHOLDER[:10].encode())
    proc.stdin.flush()
    wait_for(lambda: Streams.upload["received"].endswith(b"b" * 100), "the first part upstream")
    proc.stdin.write(PLACEHOLDER[10:].encode() + b"c" * 20000)
    proc.stdin.close()
    out = proc.stdout.read()
    proc.wait(timeout=30)
    assert out.endswith(b"\n403") and b"logged as a leak attempt" in out, out[-300:]
    wait_for(lambda: Streams.upload["complete"] is not False, "the upstream connection to end")
    assert Streams.upload["complete"] is None and b"c" not in Streams.upload["received"]
    assert PLACEHOLDER[:10].encode() not in Streams.upload["received"]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_upload_of_unknown_length_arrives_whole(proxy, version):
    proc = curl_through(proxy, version, "-T", "-", "-X", "POST", "https://localhost:%d/upload" % proxy["streams_port"],
                        stdin=subprocess.PIPE)
    body = b"b" * 20000 + PLACEHOLDER[:10].encode() + b"c" * 20000
    out = proc.communicate(body, timeout=30)[0]
    assert out == b"%d" % len(body) and Streams.upload["complete"] is True and Streams.upload["received"] == body


def test_upload_without_placeholder_arrives_whole(proxy):
    tls = start_upload(proxy)
    body = b'{"pad": "' + b"a" * 5000 + b'", "token": "' + PLACEHOLDER[:-1].encode()
    send_chunk(tls, body)
    wait_for(lambda: Streams.upload["received"].startswith(b'{"pad"'), "the first chunk upstream")
    send_chunk(tls, b'"}')
    send_chunk(tls, b"")
    head = b""
    while b"\r\n\r\n" not in head:
        head += tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert Streams.upload["complete"] is True and Streams.upload["received"] == body + b'"}'
    line = last_audit(proxy, "/upload")
    assert line["decision"] == "allow" and line["request_bytes"] == len(body) + 2


@pytest.mark.parametrize("query", ["chunked", "whole"])
def test_compressed_response_is_masked(proxy, query):
    conn = streams_conn(proxy)
    conn.request("GET", "/gzip?" + query, headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    body = resp.read()
    if query == "chunked":   # decoded on the fly, passed on decoded
        assert resp.getheader("Content-Encoding") is None
    else:
        assert resp.getheader("Content-Encoding") == "gzip"
        body = gzip.decompress(body)
    assert body.startswith(b'{"key": "' + b"*" * len(SECRET) + b'"') and SECRET.encode() not in body
    line = last_audit(proxy, "/gzip")
    assert line["masked"] is True and line["bytes"] > 0


def test_big_download_is_not_held_in_memory(proxy):
    mib = 256
    conn = streams_conn(proxy)
    conn.request("GET", "/big?mib=%d" % mib)
    resp = conn.getresponse()
    total = 0
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    assert total == mib << 20
    status = pathlib.Path("/proc/%d/status" % proxy["proc"].pid).read_text()
    peak_kib = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kib < 200 * 1024, "the proxy grew to %d MiB for a %d MiB body" % (peak_kib >> 10, mib)
    assert last_audit(proxy, "/big")["bytes"] == mib << 20


def test_refused_upload_is_dropped_not_kept(proxy):
    mib = 200
    tls = streams_tunnel(proxy)   # an allowed tunnel; the request itself is refused (placeholder in the URL)
    tls.sendall(b"POST /upload?k=%s HTTP/1.1\r\nHost: localhost:%d\r\nContent-Length: %d\r\n\r\n"
                % (PLACEHOLDER.encode(), proxy["streams_port"], mib << 20))
    block = b"u" * (1 << 20)
    for dummy in range(mib):
        tls.sendall(block)
    answer = read_all(tls)
    assert b" 403 " in answer.split(b"\r\n")[0] and b"reason=leak" in answer
    status = pathlib.Path("/proc/%d/status" % proxy["proc"].pid).read_text()
    peak_kib = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kib < 200 * 1024, "the proxy grew to %d MiB for a refused %d MiB upload" % (peak_kib >> 10, mib)


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
