"""Secret injection only where configured, leak refusal everywhere else, masking of echoed secrets."""
import logging

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from agent_sandbox_proxy.addon import META
from agent_sandbox_proxy.messages import BLOCK_HEADER
from agent_sandbox_proxy.secrets import SecretSet
from agent_sandbox_proxy.streams import Counter, RequestBody, ResponseBody
from proxy_helpers import (ALL_SECRETS, OTHER_PLACEHOLDER, OTHER_SECRET, PLACEHOLDER, SCOPED_PLACEHOLDER, SECRETS,
                           SCOPED_SECRET, SECRET, Env, gzipped, plain_flow, stream_through, tunnel_flow, write_json)


@pytest.fixture(autouse=True)
def _debug_logging(caplog):
    caplog.set_level(logging.DEBUG)


def assert_no_secret(text):
    for secret in ALL_SECRETS:
        assert secret not in text


class Upstream:
    """Stands in for the server: records the request as it would be sent."""

    def __init__(self, env):
        self.env = env
        self.seen = None

    def send(self, flow, response=None):
        env = self.env
        env.addon.requestheaders(flow)
        env.addon.request(flow)
        if flow.response is None:
            self.seen = flow.request.copy()    # what goes on the wire
            flow.response = response or http.Response.make(200, b"ok")
        env.addon.responseheaders(flow)
        stream_through(flow.response)
        env.addon.response(flow)
        return flow


def mask(secret):
    """What the agent sees where a real value came back: as many asterisks."""
    return b"*" * len(secret)


def data(result):
    """What a stream callable gave mitmproxy to send: bytes, or a list of chunks ([] for none)."""
    return result if isinstance(result, bytes) else b"".join(result)


def is_leak_block(flow):
    return flow.response is not None and flow.response.headers.get(BLOCK_HEADER, "").endswith("reason=leak")


def test_placeholder_is_swapped_in_its_header_over_https_to_its_host(env, caplog):
    up = Upstream(env)
    flow = up.send(tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)]))
    assert flow.response.status_code == 200
    assert up.seen.headers["authorization"] == "Bearer " + SECRET
    # Once sent, the flow holds the placeholder again: dumps, saved flows and later hooks never see it.
    assert flow.request.headers["authorization"] == "Bearer " + PLACEHOLDER
    line = env.audit_lines()[-1]
    assert line["decision"] == "allow" and line["secrets"] == ["github"] and line["leak"] is False
    assert_no_secret(env.audit_text())
    assert_no_secret(caplog.text)


def test_template_sets_the_whole_header(env):
    up = Upstream(env)
    up.send(tunnel_flow("api.openai.com", headers=[("X-Api-Key", PLACEHOLDER[:0] + OTHER_PLACEHOLDER)]))
    assert up.seen.headers["x-api-key"] == OTHER_SECRET
    up.send(tunnel_flow("api.github.com", headers=[("authorization", "token " + PLACEHOLDER)]))
    assert up.seen.headers["authorization"] == "Bearer " + SECRET


def test_placeholder_on_the_error_path_is_restored(env):
    flow = tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    env.addon.requestheaders(flow)
    env.addon.request(flow)
    assert flow.request.headers["authorization"] == "Bearer " + SECRET
    flow.error = tflow.terr("connection refused")
    env.addon.error(flow)
    assert flow.request.headers["authorization"] == "Bearer " + PLACEHOLDER
    assert env.audit_lines()[-1]["error"] == "connection refused"
    assert_no_secret(env.audit_text())


@pytest.mark.parametrize("where,make", [
    ("other header", lambda: tunnel_flow("api.github.com", headers=[("X-Token", PLACEHOLDER)])),
    ("two placeholders", lambda: tunnel_flow("api.github.com", headers=[
        ("Authorization", "Bearer " + PLACEHOLDER + " " + OTHER_PLACEHOLDER)])),
    ("url path", lambda: tunnel_flow("api.github.com", path="/repos/" + PLACEHOLDER)),
    ("query", lambda: tunnel_flow("api.github.com", path="/search?q=" + PLACEHOLDER)),
    ("percent-encoded query", lambda: tunnel_flow(
        "api.github.com", path="/search?q=" + "".join("%%%02X" % ord(c) for c in PLACEHOLDER))),
    ("body", lambda: tunnel_flow("api.github.com", method="POST", content=b'{"token": "%s"}' % PLACEHOLDER.encode())),
    ("gzip body", lambda: tunnel_flow("api.github.com", method="POST", headers=[("Content-Encoding", "gzip")],
                                      content=gzipped(PLACEHOLDER.encode()))),
    ("wrong host", lambda: tunnel_flow("example.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])),
    ("wrong secret for host", lambda: tunnel_flow("api.openai.com", headers=[("x-api-key", PLACEHOLDER)])),
    ("plain http", lambda: plain_flow("http://api.openai.com/v1", headers=[("x-api-key", OTHER_PLACEHOLDER)])),
    ("http inside a tunnel", lambda: tunnel_flow("api.openai.com", port=80, scheme="http",
                                                 headers=[("x-api-key", OTHER_PLACEHOLDER)])),
    ("other listener's secret", lambda: tunnel_flow("api.github.com", headers=[
        ("Authorization", "Bearer " + SCOPED_PLACEHOLDER)])),
])
def test_placeholder_anywhere_else_is_a_leak(env, caplog, where, make):
    up = Upstream(env)
    flow = up.send(make())
    assert is_leak_block(flow), where
    assert up.seen is None, "nothing may reach the upstream"
    assert "logged as a leak attempt" in flow.response.get_text()
    line = env.audit_lines()[-1]
    assert line["leak"] is True and line["decision"] == "block" and line["reason"] == "leak"
    assert_no_secret(env.audit_text() + caplog.text + flow.response.get_text())
    assert "leak attempt" in caplog.text


def test_listener_scoped_secret(env):
    up = Upstream(env)
    up.send(tunnel_flow("api.github.com", listener=8081, headers=[("Authorization", "Bearer " + SCOPED_PLACEHOLDER)]))
    assert up.seen.headers["authorization"] == "Bearer " + SCOPED_SECRET
    up.seen = None
    flow = up.send(tunnel_flow("api.github.com", listener=8081, headers=[("Authorization", "Bearer " + PLACEHOLDER)]))
    assert is_leak_block(flow) and up.seen is None


def test_placeholder_to_a_blocked_host_keeps_the_block_and_flags_the_leak(env):
    flow = Upstream(env).send(tunnel_flow("evil.test", path="/?k=" + PLACEHOLDER))
    assert flow.response.headers[BLOCK_HEADER].endswith("reason=no-rule")
    line = env.audit_lines()[-1]
    assert line["leak"] is True and line["secrets"] == ["github"]


def test_placeholder_in_connect_headers_is_a_leak(env):
    flow = env.connect("example.com", headers=[("Proxy-Authorization", "Basic " + PLACEHOLDER)])
    assert is_leak_block(flow)
    flow = env.connect("evil.test", headers=[("X-Smuggle", PLACEHOLDER)])
    assert flow.response.headers[BLOCK_HEADER].endswith("reason=no-rule")
    assert env.audit_lines()[-1]["leak"] is True


def test_no_secrets_file_means_no_injection(tmp_path):
    env = Env(tmp_path, agent_sandbox_secrets="")
    up = Upstream(env)
    up.send(tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)]))
    assert up.seen.headers["authorization"] == "Bearer " + PLACEHOLDER


# ---------------------------------------------------------------- masking

def test_secret_echoed_in_a_response_is_masked(env, caplog):
    up = Upstream(env)
    body = b'{"you sent": "Bearer %s", "other": "%s"}' % (SECRET.encode(), OTHER_SECRET.encode())
    resp = http.Response.make(200, body, {"X-Echo": SECRET, "Content-Type": "application/json"})
    flow = up.send(tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)]), resp)
    assert flow.response.content == b'{"you sent": "Bearer %s", "other": "%s"}' % (mask(SECRET), mask(OTHER_SECRET))
    assert flow.response.headers["x-echo"] == mask(SECRET).decode()
    assert flow.response.headers["content-length"] == str(len(flow.response.raw_content))
    assert env.audit_lines()[-1]["masked"] is True
    assert_no_secret(caplog.text + env.audit_text())


def test_secret_in_response_trailers_is_masked(env):
    resp = streamed_response({"Content-Type": "application/grpc"})
    resp.trailers = http.Headers(grpc_message="bad key " + SECRET)
    flow = Upstream(env).send(tunnel_flow("example.com"), resp)
    assert flow.response.trailers["grpc-message"] == "bad key " + mask(SECRET).decode()
    assert env.audit_lines()[-1]["masked"] is True


def test_masking_of_a_compressed_response(env):
    resp = http.Response.make(200, b"", {"Content-Encoding": "gzip"})
    resp.raw_content = gzipped(b"token=" + SECRET.encode())
    flow = Upstream(env).send(tunnel_flow("example.com"), resp)
    assert flow.response.content == b"token=" + mask(SECRET)
    assert SECRET.encode() not in flow.response.raw_content


def test_streamed_response_is_masked_across_chunks(env):
    body = (b"x" * 50 + SECRET.encode() + b"y" * 7 + OTHER_SECRET.encode() + b"z" * 3) * 3
    expected = body.replace(SECRET.encode(), mask(SECRET)).replace(OTHER_SECRET.encode(), mask(OTHER_SECRET))
    assert len(expected) == len(body)   # a Content-Length stays true
    for size in (1, 2, 5, 13, len(SECRET) - 1, len(SECRET), 64, len(body)):
        meta = {}
        masker = ResponseBody(env.addon.secrets, meta)
        out = b"".join(data(masker(body[i:i + size])) for i in range(0, len(body), size)) + data(masker(b""))
        assert out == expected, size
        assert meta["masked"] is True and meta["bytes"] == len(body)


def test_streamed_response_holds_back_only_what_could_become_a_secret(env):
    masker = ResponseBody(env.addon.secrets, {})
    # An event ends in a newline: no secret holds one, so all of it goes at once.
    assert masker(b"data: {\"token\": 1}\n\n") == b"data: {\"token\": 1}\n\n"
    # The start of a secret waits for the next chunk, which decides.
    assert masker(b"data: " + SECRET[:5].encode()) == b"data: "
    assert masker(SECRET[5:].encode() + b"\n") == mask(SECRET) + b"\n"
    assert masker(SECRET[:5].encode()) == []     # nothing to send is no chunk at all, never b""
    assert masker(b"-not-it\n") == SECRET[:5].encode() + b"-not-it\n"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_compressed_response_is_decoded_on_the_fly_and_masked(env, encoding):
    from mitmproxy.net import encoding as mencoding  # pylint: disable=import-outside-toplevel
    plain = (b"a" * 5000 + SECRET.encode() + b"b" * 3000) * 20
    flow = tunnel_flow("example.com")
    env.addon.requestheaders(flow)
    flow.response = streamed_response({"Content-Encoding": encoding})
    env.addon.responseheaders(flow)
    body = flow.response.stream
    assert isinstance(body, ResponseBody)
    assert "content-encoding" not in flow.response.headers and "content-length" not in flow.response.headers
    assert flow.response.headers["transfer-encoding"] == "chunked"
    wire = mencoding.encode(plain, encoding)
    out = b"".join(data(body(wire[i:i + 997])) for i in range(0, len(wire), 997)) + data(body(b""))
    assert out == plain.replace(SECRET.encode(), mask(SECRET))
    assert flow.metadata[META]["bytes"] == len(wire)


def test_undecodable_response_is_refused(env):
    flow = tunnel_flow("example.com")
    env.addon.requestheaders(flow)
    flow.response = streamed_response({"Content-Encoding": "gzip"})
    env.addon.responseheaders(flow)
    body = flow.response.stream
    assert body(b"this is not gzip at all") == []
    assert body.refusal and "cannot be decoded" in body.refusal


def test_unknown_encoding_after_an_injected_secret_is_refused(env):
    flow = tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    env.addon.requestheaders(flow)
    flow.response = streamed_response({"Content-Encoding": "compress"})
    env.addon.responseheaders(flow)
    assert flow.response.stream.refusal
    # Without a secret on the request it passes, still checked as raw bytes.
    flow = tunnel_flow("example.com")
    env.addon.requestheaders(flow)
    flow.response = streamed_response({"Content-Encoding": "compress"})
    env.addon.responseheaders(flow)
    assert flow.response.stream.refusal is None
    assert flow.response.headers["content-encoding"] == "compress"


def streamed_response(headers, status=200):
    """Response headers of a body that will stream (chunked): mitmproxy's Response.make would
    add a Content-Length and drop an encoding it does not know."""
    resp = http.Response.make(status, b"")
    del resp.headers["content-length"]
    resp.headers["Transfer-Encoding"] = "chunked"
    for name, value in headers.items():
        resp.headers[name] = value
    return resp


@pytest.mark.parametrize("length,whole", [(None, False), ("65537", False), ("65536", True), ("0", True)])
def test_bodies_are_streamed_unless_small(env, length, whole):
    flow = tunnel_flow("example.com", method="POST", headers=[("Content-Length", length)] if length else
                       [("Transfer-Encoding", "chunked")])
    env.addon.requestheaders(flow)
    assert (flow.request.stream is False) if whole else isinstance(flow.request.stream, RequestBody)
    flow.response = http.Response.make(200, b"")
    if length is None:
        flow.response = streamed_response({})
    else:
        flow.response.headers["content-length"] = length
    env.addon.responseheaders(flow)
    assert (flow.response.stream is False) if whole else isinstance(flow.response.stream, ResponseBody)


def test_every_big_body_is_streamed(env):
    flow = tunnel_flow("example.com", method="POST", headers=[("Transfer-Encoding", "chunked")])
    env.addon.requestheaders(flow)
    assert isinstance(flow.request.stream, RequestBody)
    flow.response = streamed_response({})
    env.addon.responseheaders(flow)
    assert isinstance(flow.response.stream, ResponseBody)
    # Without secrets the bodies are only counted.
    plain = Env(env.tmp / "n" if (env.tmp / "n").mkdir() is None else None, secrets={"version": 1, "secrets": []})
    flow = tunnel_flow("example.com", method="POST", headers=[("Transfer-Encoding", "chunked")])
    plain.addon.requestheaders(flow)
    assert isinstance(flow.request.stream, Counter)
    flow.response = streamed_response({})
    plain.addon.responseheaders(flow)
    assert isinstance(flow.response.stream, Counter)


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(PLACEHOLDER) - 1, len(PLACEHOLDER), 4096])
def test_placeholder_split_across_upload_chunks_stops_the_body(env, size):
    before = b"x" * 100
    body = before + b'{"k": "' + PLACEHOLDER.encode() + b'"}' + b"y" * 100
    meta = {}
    scanner = RequestBody(env.addon.secrets, meta)
    sent = []
    for i in range(0, len(body), size):
        sent.append(data(scanner(body[i:i + size])))
        if scanner.refusal:
            break
    sent.extend(scanner.finish())
    wire = b"".join(sent)
    assert scanner.refusal == {"github"}
    end = body.index(PLACEHOLDER.encode()) + len(PLACEHOLDER)
    holding = (end - 1) // size * size      # where the chunk that completes the placeholder starts
    # Nothing from that chunk on, and never the whole placeholder.
    assert body.startswith(wire) and len(wire) <= holding and PLACEHOLDER.encode() not in wire
    assert scanner(b"more") == [] and scanner.finish() == []
    assert meta["request_bytes"] == len(wire)


def test_upload_without_placeholder_passes_whole(env):
    body = bytes(range(256)) * 100 + PLACEHOLDER[:-1].encode()
    scanner = RequestBody(env.addon.secrets, {})
    out = b"".join(data(scanner(body[i:i + 1000])) for i in range(0, len(body), 1000)) + data(scanner.finish())
    assert out == body and scanner.refusal is None


def test_gzip_upload_is_looked_into(env):
    scanner = RequestBody(env.addon.secrets, {}, "gzip")
    wire = gzipped(b"z" * 10000 + PLACEHOLDER.encode())
    for i in range(0, len(wire), 50):
        scanner(wire[i:i + 50])
    scanner.finish()
    assert scanner.refusal == {"github"}


def test_placeholder_in_trailers(env):
    scanner = RequestBody(env.addon.secrets, {})
    scanner(b"fine")
    assert scanner.finish(http.Headers(x_token=PLACEHOLDER)) == []
    assert scanner.refusal == {"github"}


def test_counter_counts(env):
    meta = {}
    counter = Counter(meta, "bytes")
    assert counter(b"abc") == b"abc" and counter(b"") == b"" and meta["bytes"] == 3


def test_websocket_messages(env):
    flow = tflow.twebsocketflow()
    flow.client_conn.sockname = ("127.0.0.1", 8080)
    flow.metadata[META] = {"decision": "allow", "secrets": []}
    flow.websocket.messages.append(
        tflow.websocket.WebSocketMessage(tflow.Opcode.TEXT, True, b"auth " + PLACEHOLDER.encode()))
    env.addon.websocket_message(flow)
    assert flow.websocket.messages[-1].dropped
    assert env.audit_lines()[-1]["leak"] is True
    flow.websocket.messages.append(tflow.websocket.WebSocketMessage(tflow.Opcode.TEXT, False, b"echo " + SECRET.encode()))
    env.addon.websocket_message(flow)
    assert flow.websocket.messages[-1].content == b"echo " + mask(SECRET)
    assert not flow.websocket.messages[-1].dropped


def test_no_secret_in_any_log_after_a_busy_session(env, caplog):
    up = Upstream(env)
    for listener in (8080, 8081):
        for flow in (
            tunnel_flow("api.github.com", listener=listener, headers=[("Authorization", "Bearer " + PLACEHOLDER)]),
            tunnel_flow("api.github.com", listener=listener, headers=[("Authorization", "Bearer " + SCOPED_PLACEHOLDER)]),
            tunnel_flow("api.openai.com", listener=listener, headers=[("x-api-key", OTHER_PLACEHOLDER)]),
            tunnel_flow("evil.test", listener=listener, path="/" + OTHER_PLACEHOLDER),
        ):
            up.send(flow, http.Response.make(200, SECRET.encode(), {"Echo": OTHER_SECRET}))
            assert_no_secret(repr(flow.get_state()))
    env.addon.reload_secrets(force=True)
    assert_no_secret(caplog.text + env.audit_text())


def test_restore_survives_a_secrets_reload_in_flight(env):
    flow = tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    env.addon.requestheaders(flow)
    env.addon.request(flow)
    rotated = dict(SECRETS, secrets=[dict(SECRETS["secrets"][0], value="rotated-value-0000")] + SECRETS["secrets"][1:])
    write_json(env.secrets_path, rotated)
    env.addon.on_sighup()
    flow.response = http.Response.make(200, b"")
    env.addon.responseheaders(flow)
    assert flow.request.headers["authorization"] == "Bearer " + PLACEHOLDER


def test_a_failure_while_masking_withholds_the_response(env, monkeypatch):
    def boom(*args):
        raise ValueError("masking broke")
    monkeypatch.setattr(SecretSet, "mask", boom)
    resp = http.Response.make(200, b"token", {"X-Token": SECRET})
    flow = Upstream(env).send(tunnel_flow("example.com"), resp)
    assert flow.response.status_code == 403 and SECRET.encode() not in flow.response.content
    line = env.audit_lines()[-1]
    assert line["decision"] == "block" and line["reason"] == "internal-error"


def test_a_failure_while_masking_a_body_in_flight_passes_nothing_on(env, monkeypatch):
    def boom(*args):
        raise ValueError("masking broke")
    monkeypatch.setattr(ResponseBody, "_mask", boom)
    body = ResponseBody(env.addon.secrets, {})
    assert body(b"token " + SECRET.encode()) == [] and body(b"") == []
    assert body.refusal == "internal error while checking the body (ValueError)"
    monkeypatch.setattr(RequestBody, "_found", boom)
    upload = RequestBody(env.addon.secrets, {})
    assert upload(b"x" * 10 + PLACEHOLDER.encode()) == [] and upload.refusal
