"""The allowlist: rule kinds, CONNECT refusals, host agreement, address spellings, protocols."""
import asyncio
import socket

import pytest
from mitmproxy import http
from mitmproxy.proxy import context as mcontext
from mitmproxy.proxy import layer as mlayer
from mitmproxy.proxy import layers as mlayers
from mitmproxy.test import tflow

from agent_sandbox_proxy.addon import RefuseLayer
from agent_sandbox_proxy.hosts import IDN, IP, NAME, ODD, classify_host
from agent_sandbox_proxy.messages import BLOCK_HEADER, BLOCK_REASON_PHRASE
from agent_sandbox_proxy.policy import Profile
from proxy_helpers import Env, plain_flow, tunnel_flow


def blocked(flow, reason=None):
    resp = flow.response
    if resp is None or resp.status_code != 403 or BLOCK_HEADER not in resp.headers:
        return False
    return reason is None or resp.headers[BLOCK_HEADER].endswith("reason=" + reason)


def allowed(flow):
    return flow.response is None or BLOCK_HEADER not in flow.response.headers


# ---------------------------------------------------------------- rule kinds, on CONNECT

@pytest.mark.parametrize("host,port,ok", [
    ("example.com", 443, True),
    ("example.com", 80, True),          # default ports are 443 and 80
    ("example.com", 8443, False),
    ("EXAMPLE.COM", 443, True),         # case does not matter
    ("www.example.com", 443, False),    # an exact rule is not a wildcard
    ("a.example.org", 443, True),       # wildcard: a subdomain
    ("a.b.c.example.org", 443, True),   # ... at any depth
    ("example.org", 443, False),        # ... but never the apex
    ("badexample.org", 443, False),     # ... and only on a label boundary
    ("example.org.evil.com", 443, False),
    ("api.github.com", 443, True),
    ("api.github.com", 80, False),      # explicit ports replace the default
    ("alt.example.net", 8443, True),
    ("alt.example.net", 443, False),
    ("nothing.test", 443, False),       # deny by default
])
def test_connect_rule_kinds(env, host, port, ok):
    flow = env.connect(host, port)
    assert allowed(flow) is ok
    if not ok:
        assert blocked(flow)


def test_methods_and_paths_apply_inside_the_tunnel(env):
    assert allowed(env.connect("ro.example.net"))
    cases = [
        ("GET", "/v1", True), ("GET", "/v1/items?x=1", True), ("HEAD", "/docs/a", True),
        ("GET", "/v1x", False),             # prefixes match on segment boundaries
        ("GET", "/docs", False),            # "/docs/" only covers what is below it
        ("POST", "/v1/items", False),       # method not allowed
        ("GET", "/v1/../admin", False),     # dot segments never match a path rule
        ("GET", "/v1/%2e%2e/admin", False),
        ("GET", "/v1%2F..%2Fadmin", False),
        ("GET", "/%76%31/items", True),     # percent-encoded letters are decoded first
        ("GET", "/admin?/v1", False),       # the query is not part of the path
    ]
    for method, path, ok in cases:
        flow = env.send(tunnel_flow("ro.example.net", path=path, method=method))
        assert allowed(flow) is ok, (method, path)
    reasons = {p: env.send(tunnel_flow("ro.example.net", path=p, method=m)).response.headers[BLOCK_HEADER]
               for m, p in [("POST", "/v1"), ("GET", "/admin")]}
    assert reasons["/v1"].endswith("reason=method")
    assert reasons["/admin"].endswith("reason=path")


def test_rules_are_a_union(tmp_path):
    policy = {"rules": [{"host": "api.example.com", "methods": ["GET"]},
                        {"host": "*.example.com", "methods": ["POST"], "paths": ["/upload"]}]}
    env = Env(tmp_path, policy=policy)
    assert allowed(env.send(tunnel_flow("api.example.com", method="GET", path="/x")))
    assert allowed(env.send(tunnel_flow("api.example.com", method="POST", path="/upload")))
    assert blocked(env.send(tunnel_flow("api.example.com", method="POST", path="/x")), "path")


def test_listener_profiles(env):
    assert allowed(env.connect("second.example", listener=8081))
    assert blocked(env.connect("example.com", listener=8081), "no-rule")     # not in that profile
    assert blocked(env.connect("second.example", listener=8080), "no-rule")  # other listeners use the default
    assert allowed(env.connect("example.com", listener=9999))


# ---------------------------------------------------------------- the block answer

def test_connect_refusal_is_a_clear_403(env):
    flow = env.connect("evil.test", 443)
    resp = flow.response
    assert resp.status_code == 403
    assert resp.reason == BLOCK_REASON_PHRASE
    assert resp.headers[BLOCK_HEADER] == "policy; host=evil.test; reason=no-rule"
    assert resp.headers["content-type"].startswith("text/plain")
    body = resp.get_text()
    assert "evil.test:443 is not on the allowlist" in body
    assert "not a network fault" in body and "retrying will not help" in body
    assert "add it to mitm_proxy_allowlist and re-run the playbook" in body


def test_block_header_cannot_be_abused(env):
    flow = env.connect("a;b=c\u00e9.test", 443)
    header = flow.response.headers[BLOCK_HEADER]
    assert header.startswith("policy; host=a%3Bb%3Dc%E9.test; reason=")


def test_custom_hint(tmp_path):
    env = Env(tmp_path, policy={"rules": [], "block_hint": "ask #platform in chat"})
    assert "an administrator can ask #platform in chat." in env.connect("x.test").response.get_text()


# ---------------------------------------------------------------- host spellings

@pytest.mark.parametrize("raw,kind", [
    ("example.com", NAME), ("Example.COM", NAME), ("localhost", NAME),
    ("127.0.0.1", IP), ("::1", IP), ("[::1]", IP), ("0:0:0:0:0:0:0:1", IP),
    ("::ffff:127.0.0.1", IP), ("169.254.169.254", IP),
    ("127.1", ODD), ("2130706433", ODD), ("0x7f.1", ODD), ("0x7f000001", ODD),
    ("017700000001", ODD), ("0177.0.0.1", ODD), ("127.000.0.1", ODD), ("1.2.3.999", ODD),
    ("example.com.", ODD), ("a..b", ODD), ("a_b.example.com", ODD), ("-a.example.com", ODD),
    ("fe80::1%25eth0", ODD),
    ("b\u00fccher.de", IDN), ("xn--bcher-kva.de", IDN), ("a.xn--bcher-kva.de", IDN),
    ("\uff45xample.com", ODD),        # full-width e: IDNA would map it onto example.com
])
def test_host_classification(raw, kind):
    assert classify_host(raw)[0] == kind


@pytest.mark.parametrize("host", [
    "127.1", "2130706433", "0x7f.1", "0x7f000001", "017700000001", "127.0.0.2", "::ffff:127.0.0.1",
    "10.0.0.1", "169.254.169.254", "fe80::1", "0.0.0.0",
])
def test_addresses_need_an_exact_rule(env, host):
    flow = env.connect(host, 8443)
    assert blocked(flow)
    assert flow.response.headers[BLOCK_HEADER].split("reason=")[1] in ("ip-literal", "odd-host")


def test_exact_address_rules(env):
    assert allowed(env.connect("127.0.0.1", 8443))
    assert blocked(env.connect("127.0.0.1", 443), "port")
    assert allowed(env.connect("::1", 443))
    assert allowed(env.connect("0:0::1", 443))  # the same address, spelled out


def test_trailing_dot_and_idn_need_an_exact_rule(env):
    assert blocked(env.connect("example.com.", 443), "odd-host")
    assert blocked(env.connect("www.example.org.", 443), "odd-host")   # not even under a wildcard
    assert allowed(env.connect("named.dot.example.", 443))             # named exactly, dot included
    assert blocked(env.connect("named.dot.example", 443), "no-rule")
    assert allowed(env.connect("b\u00fccher.de", 443))                 # as mitmproxy decodes xn--bcher-kva.de
    assert blocked(env.connect("xn--80ak6aa92e.example.org", 443), "idn-host")  # wildcards: plain names only
    assert blocked(env.connect("\uff45xample.com", 443), "odd-host")


def test_wildcard_host_resolving_to_an_internal_address_is_refused(env, monkeypatch):
    answers = {"inside.example.org": "10.1.2.3", "outside.example.org": "93.184.216.34"}

    async def fake_getaddrinfo(self, host, port, **kwargs):  # pylint: disable=unused-argument
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    flow = env.connect("inside.example.org")
    assert blocked(flow, "internal-address")
    assert "10.1.2.3" in flow.response.get_text()
    assert allowed(env.connect("outside.example.org"))
    answers["example.com"] = "10.9.9.9"
    assert allowed(env.connect("example.com"))   # an exact rule may point inside

    # The same check guards the connection itself (plain HTTP, lazy connections).
    client = tflow.tclient_conn()
    client.sockname = ("127.0.0.1", 8080)
    server = tflow.tserver_conn()
    server.address = ("inside.example.org", 443)
    data = type("D", (), {"client": client, "server": server})()
    server.error = None
    asyncio.run(env.addon.server_connect(data))
    assert "internal address" in server.error
    server.address, server.error = ("nowhere.test", 443), None
    asyncio.run(env.addon.server_connect(data))
    assert "not on the allowlist" in server.error
    server.address, server.error = ("outside.example.org", 443), None
    asyncio.run(env.addon.server_connect(data))
    assert server.error is None


# ---------------------------------------------------------------- agreement: CONNECT, SNI, Host

def test_sni_must_match_the_connect_target(env):
    assert allowed(env.send(tunnel_flow("example.com", sni="example.com")))
    assert allowed(env.send(tunnel_flow("example.com", sni="EXAMPLE.com")))
    flow = env.send(tunnel_flow("example.com", sni="a.example.org"))   # both allowed, still fronting
    assert blocked(flow, "sni-mismatch")
    assert "a.example.org" in flow.response.get_text()
    assert blocked(env.send(tunnel_flow("example.com", sni=None)), "sni-missing")
    assert allowed(env.send(tunnel_flow("127.0.0.1", port=8443, sni=None)))  # clients send no SNI for addresses


def test_host_header_must_match_the_connect_target(env):
    assert blocked(env.send(tunnel_flow("example.com", host_header="evil.test")), "host-mismatch")
    assert blocked(env.send(tunnel_flow("example.com", host_header="a.example.org")), "host-mismatch")
    assert blocked(env.send(tunnel_flow("example.com", host_header="example.com:8443")), "host-mismatch")
    assert blocked(env.send(tunnel_flow("example.com", host_header="example.com.")), "host-mismatch")
    assert allowed(env.send(tunnel_flow("example.com", host_header="example.com:443")))
    assert allowed(env.send(tunnel_flow("example.com", host_header=None)))
    assert allowed(env.send(tunnel_flow("alt.example.net", port=8443)))  # Host: alt.example.net:8443
    two = tunnel_flow("example.com", headers=[("Host", "example.com")])
    assert blocked(env.send(two), "host-mismatch")


def test_tls_clienthello_mismatch_keeps_the_foreign_name_from_upstream(env):
    client = tflow.tclient_conn()
    ctx = mcontext.Context(client, env.tctx.options)
    ctx.server = tflow.tserver_conn()
    ctx.server.address = ("example.com", 443)
    hello = type("Hello", (), {"sni": "evil.test"})()
    data = type("Data", (), {"context": ctx, "client_hello": hello, "ignore_connection": True,
                             "establish_server_tls_first": True})()
    env.addon.tls_clienthello(data)
    assert data.ignore_connection is False
    assert data.establish_server_tls_first is False
    data.client_hello.sni, data.establish_server_tls_first = "Example.com", True
    env.addon.tls_clienthello(data)
    assert data.establish_server_tls_first is True


def test_http2_authority_must_match(env):
    assert allowed(env.send(tunnel_flow("example.com", http2=True)))
    assert blocked(env.send(tunnel_flow("example.com", http2=True, host_header="evil.test")), "host-mismatch")
    # absolute-form inside the tunnel: the authority counts as well as the Host header
    flow = tunnel_flow("example.com", authority=b"evil.test")
    assert blocked(env.send(flow), "host-mismatch")


def test_plain_http_gets_the_same_checks(env):
    assert allowed(env.send(plain_flow("http://example.com/x")))
    assert blocked(env.send(plain_flow("http://evil.test/x")), "no-rule")
    assert blocked(env.send(plain_flow("http://example.com/x", host_header="evil.test")), "host-mismatch")
    assert blocked(env.send(plain_flow("http://127.1:8443/")), "odd-host")
    assert blocked(env.send(plain_flow("http://example.com:8443/")), "port")
    assert blocked(env.send(plain_flow("http://ro.example.net/v1", method="DELETE")), "method")


# ---------------------------------------------------------------- protocols

def test_http3_and_other_upgrades_are_refused(env):
    flow = tunnel_flow("example.com")
    flow.request.http_version = "HTTP/3"
    assert blocked(env.send(flow), "http3")
    flow = tunnel_flow("example.com", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")])
    assert blocked(env.send(flow), "upgrade")
    flow = tunnel_flow("example.com", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert allowed(env.send(flow))


def _next_layer(env, layer_cls, address=("example.com", 443)):
    client = tflow.tclient_conn()
    ctx = mcontext.Context(client, env.tctx.options)
    ctx.server = tflow.tserver_conn()
    ctx.server.address = address
    nextlayer = mlayer.NextLayer(ctx)
    nextlayer.layer = layer_cls(ctx)
    env.addon.next_layer(nextlayer)
    return nextlayer


@pytest.mark.parametrize("layer_cls", [mlayers.TCPLayer, mlayers.UDPLayer, mlayers.DNSLayer])
def test_raw_layers_in_a_tunnel_are_replaced_by_a_refusal(env, layer_cls):
    nextlayer = _next_layer(env, layer_cls)
    assert isinstance(nextlayer.layer, RefuseLayer)
    from mitmproxy.proxy import commands, events  # pylint: disable=import-outside-toplevel
    cmds = list(nextlayer.layer.handle_event(events.Start()))
    assert any(isinstance(c, commands.CloseConnection) and c.connection is nextlayer.context.client for c in cmds)
    assert list(nextlayer.layer.handle_event(events.Start())) == []
    line = env.audit_lines()[-1]
    assert line["decision"] == "block" and line["reason"] == "not-http" and line["host"] == "example.com"


def test_http_layers_are_left_alone(env):
    nextlayer = _next_layer(env, lambda ctx: mlayers.HttpLayer(ctx, mlayers.http.HTTPMode.transparent))
    assert isinstance(nextlayer.layer, mlayers.HttpLayer)


def test_tcp_and_udp_flows_are_refused_if_they_ever_start(env):
    flow = tflow.ttcpflow()
    env.addon.tcp_start(flow)
    assert flow.server_conn.error and flow.error
    env.addon.tcp_message(flow)
    assert flow.messages[-1].content == b""
    flow = tflow.tudpflow()
    env.addon.udp_start(flow)
    assert flow.server_conn.error
    env.addon.udp_message(flow)
    assert flow.messages[-1].content == b""
    assert [line["scheme"] for line in env.audit_lines()] == ["tcp", "udp"]


def test_websocket_messages_only_after_an_allowed_handshake(env):
    flow = tflow.twebsocketflow()
    env.addon.websocket_start(flow)
    env.addon.websocket_message(flow)
    assert flow.websocket.messages[-1].dropped  # no allowed handshake seen: nothing passes


# ---------------------------------------------------------------- fail closed

def test_no_policy_refuses_everything(tmp_path):
    env = Env(tmp_path, agent_sandbox_policy="")
    assert blocked(env.connect("example.com"), "policy-unavailable")


def test_invalid_policy_at_start_refuses_everything(tmp_path):
    env = Env(tmp_path, policy={"rules": [{"host": "*"}]})
    flow = env.connect("example.com")
    assert blocked(flow, "policy-unavailable")
    assert "fix the proxy configuration" in flow.response.get_text()


def test_bypass_options_refuse_everything(tmp_path):
    env = Env(tmp_path, ignore_hosts=["example.com"])
    assert blocked(env.connect("example.com"), "proxy-misconfigured")
    env = Env(tmp_path, mode=["socks5"])
    assert blocked(env.connect("example.com"), "proxy-misconfigured")
    env = Env(tmp_path, mode=["regular@8080", "regular@8081", "upstream:http://corp-proxy:3128"])
    assert allowed(env.connect("example.com"))


def test_unwritable_audit_log_refuses_everything(tmp_path):
    env = Env(tmp_path, agent_sandbox_audit=str(tmp_path / "missing-dir" / "audit.jsonl"))
    assert blocked(env.connect("example.com"), "audit-unavailable")


def test_an_internal_error_refuses_the_request(env, monkeypatch, caplog):
    quoted = "-".join(["QUOTED", "REQUEST", "DATA"])

    def boom(*args, **kwargs):
        raise RuntimeError(quoted)
    monkeypatch.setattr(Profile, "decide", boom)
    flow = env.send(tunnel_flow("example.com"))
    assert blocked(flow, "internal-error")
    assert "RuntimeError" in caplog.text and quoted not in caplog.text
    flow = env.connect("example.com")
    assert blocked(flow, "internal-error")


def test_blocked_request_never_reaches_streaming(env):
    flow = tunnel_flow("evil.test")
    flow.request.stream = True
    env.addon.requestheaders(flow)
    assert flow.request.stream is False and blocked(flow)


def test_response_is_only_made_for_requests(env):
    flow = env.send(tunnel_flow("example.com"), response=http.Response.make(204))
    assert flow.response.status_code == 204
