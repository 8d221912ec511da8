"""Ask mode and learning mode in the addon: held requests, the admin's answers in control.json, what can
never be opened at run time, and no secret for a host opened that way."""
import asyncio
import json
import os
import socket
import time

import pytest

from agent_sandbox_proxy.control import approvable, load_control
from agent_sandbox_proxy.policy import PolicyError
from proxy_helpers import PLACEHOLDER, POLICY, Env, connect_flow, plain_flow, tunnel_flow, write_json


def blocked(flow, reason):
    return flow.response is not None and flow.response.status_code == 403 and \
        flow.response.headers.get("X-Agent-Sandbox-Block", "").endswith("reason=" + reason)


def allowed(flow):
    return flow.response is None or flow.response.status_code != 403


@pytest.fixture(autouse=True)
def external_answers(monkeypatch):
    """Name resolution without DNS: the hosts opened at run time are checked like a wildcard's."""
    answers = {"inside.example.net": "127.0.0.5", "metadata.example.net": "169.254.169.254",
               "private.example.net": "10.1.2.3"}

    async def fake_getaddrinfo(self, host, port, **kwargs):  # pylint: disable=unused-argument
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers.get(host, "93.184.216.34"), port))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    return answers


def control_env(tmp_path, control, policy=None):
    path = write_json(tmp_path / "control.json", control, mode=0o644)
    return Env(tmp_path, policy=policy, agent_sandbox_control=str(path), agent_sandbox_pending=str(tmp_path / "log" / "pending.json"))


def subdir(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    return path


def update(env, control):
    write_json(env.tmp / "control.json", control, mode=0o644)
    env.addon.reload_control(force=True)


def pending(env):
    return json.loads((env.tmp / "log" / "pending.json").read_text())["pending"]


async def connect_async(env, host, port=443, listener=8080):
    flow = connect_flow(host, port, listener)
    await env.addon.http_connect(flow)
    if flow.response is not None:
        env.addon.http_connect_error(flow)   # writes the audit line, as in Env.connect
    return flow


async def answer_when_pending(env, make_control, seen):
    for attempt in range(200):  # pylint: disable=unused-variable
        await asyncio.sleep(0.02)
        entries = pending(env)
        if entries:
            seen.extend(entries)
            write_json(env.tmp / "control.json", make_control(entries[0]), mode=0o644)
            return
    raise AssertionError("no request was held")


ASK = {"version": 1, "ask": {"8080": {"timeout": 5}}}


def test_held_request_goes_through_when_the_admin_allows_it(tmp_path):
    env = control_env(tmp_path, ASK)
    seen = []

    def approve(entry):
        return dict(ASK, approved=[{"id": entry["id"], "listener": 8080, "host": entry["host"], "port": 443,
                                    "until": time.time() + 3600}])

    async def scenario():
        return await asyncio.gather(connect_async(env, "new.example.net"), answer_when_pending(env, approve, seen))

    flow = asyncio.run(scenario())[0]
    assert allowed(flow)
    assert seen[0]["host"] == "new.example.net" and seen[0]["port"] == 443 and seen[0]["listener"] == 8080
    assert pending(env) == []   # no longer held
    # The approval lasts: the next request is not held, and requests inside the tunnel pass.
    assert allowed(env.connect("new.example.net"))
    assert allowed(env.send(tunnel_flow("new.example.net", path="/x")))
    # Only that host and that listener (control: another agent is still refused at once, no ask there).
    assert blocked(env.connect("new.example.net", listener=8081), "no-rule")
    assert blocked(env.connect("other.example.net", port=8443), "no-rule")


def test_denied_or_unanswered_requests_get_a_403(tmp_path):
    env = control_env(tmp_path, dict(ASK, ask={"8080": {"timeout": 1}}))
    started = time.monotonic()
    flow = env.connect("slow.example.net")
    assert blocked(flow, "ask-timeout")
    assert 0.9 < time.monotonic() - started < 3
    assert "no administrator answered" in flow.response.get_text()

    seen = []

    def deny(entry):
        return dict(ASK, denied=[{"id": entry["id"], "listener": 8080, "host": entry["host"], "port": 443,
                                  "until": time.time() + 600}])

    env2 = control_env(subdir(tmp_path, "two"), ASK)

    async def scenario():
        return await asyncio.gather(connect_async(env2, "bad.example.net"), answer_when_pending(env2, deny, seen))

    assert blocked(asyncio.run(scenario())[0], "denied")
    started = time.monotonic()
    assert blocked(env2.connect("bad.example.net"), "denied")   # at once while the denial lasts
    assert time.monotonic() - started < 0.5
    reasons = [line["reason"] for line in env2.audit_lines()]
    assert reasons == ["denied", "denied"]


def test_plain_http_is_held_too(tmp_path):
    env = control_env(tmp_path, ASK)
    seen = []

    def approve(entry):
        return dict(ASK, approved=[{"listener": 8080, "host": entry["host"], "port": 80, "until": None}])

    async def scenario():
        flow = plain_flow("http://plain.example.net/pkg")
        held = env.addon.requestheaders(flow)
        assert held is not None
        await asyncio.gather(held, answer_when_pending(env, approve, seen))
        return flow

    flow = asyncio.run(scenario())
    assert flow.response is None
    assert seen[0]["method"] == "GET" and seen[0]["path"] == "/pkg"


def test_what_can_never_be_asked_for_or_approved(tmp_path):
    env = control_env(tmp_path, ASK)
    for host, port, reason in (("10.0.0.1", 443, "ip-literal"), ("169.254.169.254", 80, "ip-literal"),
                               ("new.example.net", 8443, "no-rule"), ("localhost", 443, "no-rule"),
                               ("metadata.google.internal", 80, "no-rule"), ("printer.local", 443, "no-rule")):
        started = time.monotonic()
        assert blocked(env.connect(host, port), reason), host
        assert time.monotonic() - started < 0.5, host   # refused at once, not held
    assert pending(env) == []
    for host, port in (("10.0.0.1", 443), ("::1", 443), ("localhost", 443), ("a.localhost", 80), ("x.local", 443),
                       ("metadata.google.internal", 80), ("router.home.arpa", 80), ("intranet", 80),
                       ("example.com.", 443), ("*.example.com", 443), ("new.example.net", 22)):
        assert approvable(host, port), host
    assert approvable("pypi.org", 443) is None
    # A file that approves one of them anyway is refused whole, and nothing is approved.
    update(env, dict(ASK, approved=[{"listener": 8080, "host": "10.0.0.1", "port": 443, "until": None}]))
    assert not env.addon.control
    assert blocked(env.connect("10.0.0.1"), "ip-literal")


def test_a_name_that_leads_to_this_machine_or_its_link_is_never_opened(tmp_path):
    approve = [{"listener": 8080, "host": host, "port": 443, "until": None}
               for host in ("inside.example.net", "metadata.example.net", "private.example.net", "outside.example.net")]
    env = control_env(tmp_path, dict(ASK, approved=approve))
    assert blocked(env.connect("inside.example.net"), "internal-address")
    assert blocked(env.connect("metadata.example.net"), "internal-address")
    # A private address can be approved (the admin saw it: see below); a public one of course.
    assert allowed(env.connect("private.example.net"))
    assert allowed(env.connect("outside.example.net"))
    # Not held either: refused at once, and nothing is pending.
    env2 = control_env(subdir(tmp_path, "two"), ASK)
    started = time.monotonic()
    assert blocked(env2.connect("metadata.example.net"), "internal-address")
    assert time.monotonic() - started < 0.5 and pending(env2) == []
    # What the admin sees of a held request: where the name leads, and that it is private.
    seen = []

    def approve_private(entry):
        return dict(ASK, approved=[{"listener": 8080, "host": entry["host"], "port": 443, "until": None}])

    async def scenario():
        return await asyncio.gather(connect_async(env2, "private.example.net"),
                                    answer_when_pending(env2, approve_private, seen))

    assert allowed(asyncio.run(scenario())[0])
    assert (seen[0]["addresses"], seen[0]["private"]) == (["10.1.2.3"], True)


def test_no_secret_for_a_host_opened_at_run_time(tmp_path):
    # api.github.com has a secret and a rule in the shared rules; listener 8082 has rules of its own without
    # it. An approval opens the host there but never the secret: the placeholder is a leak there.
    policy = dict(POLICY, listeners=dict(POLICY["listeners"], **{"8082": {"rules": ["example.com"]}}))
    env = control_env(tmp_path, {"version": 1, "approved": [
        {"listener": 8082, "host": "api.github.com", "port": 443, "until": None}]}, policy)
    assert allowed(env.connect("api.github.com", listener=8082))
    flow = env.send(tunnel_flow("api.github.com", listener=8082, headers=[("Authorization", "Bearer " + PLACEHOLDER)]))
    assert blocked(flow, "leak")
    assert "ghp_" not in json.dumps(flow.request.headers.fields.__repr__())
    # Control: the inventory's own rule injects on 8080.
    flow = tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    env.addon.requestheaders(flow)
    assert flow.response is None and flow.metadata["agent_sandbox"]["secrets"] == ["github"]
    # A request carrying a placeholder is never held.
    env2 = control_env(subdir(tmp_path, "two"), ASK)
    started = time.monotonic()
    flow = plain_flow("http://held.example.net/", headers=[("X-Key", PLACEHOLDER)])
    assert env2.addon.requestheaders(flow) is None
    assert time.monotonic() - started < 0.5 and flow.response.status_code == 403


def test_learning_opens_names_on_80_and_443_until_the_deadline(tmp_path):
    env = control_env(tmp_path, {"version": 1, "learn": {"8080": {"until": time.time() + 60}}})
    assert allowed(env.connect("learned.example.net"))
    assert allowed(env.send(plain_flow("http://learned2.example.net/simple/")))
    assert blocked(env.connect("10.0.0.1"), "ip-literal")
    assert blocked(env.connect("learned.example.net", 22), "no-rule")
    assert blocked(env.connect("learned.example.net", listener=8081), "no-rule")
    assert allowed(env.connect("private.example.net"))   # a private address is reached, and said so
    assert blocked(env.connect("metadata.example.net"), "internal-address")   # this machine's link is not
    assert [line["rule"] for line in env.audit_lines() if line["decision"] == "allow"] == [
        "learning", "learning", "learning (private address 10.1.2.3)"]
    # The proxy ends it at the deadline by itself: nobody rewrites the file.
    update(env, {"version": 1, "learn": {"8080": {"until": time.time() + 0.3}}})
    assert allowed(env.connect("learned.example.net"))
    time.sleep(0.4)
    assert blocked(env.connect("learned.example.net"), "no-rule")


def test_control_file_must_be_root_only(tmp_path):
    path = write_json(tmp_path / "control.json", ASK, mode=0o666)
    with pytest.raises(PolicyError, match="writable by no one else"):
        load_control(str(path))
    os.chmod(path, 0o644)
    assert load_control(str(path)).ask_timeout(8080) == 5
    assert not load_control(str(tmp_path / "missing.json"))
    for bad in ({"version": 1, "ask": {"8080": {"timeout": 0}}}, {"version": 1, "learn": {"x": {"until": 1}}},
                {"version": 1, "approved": [{"listener": 8080, "host": "*.example.com", "port": 443, "until": None}]},
                {"version": 1, "approve": []}):
        write_json(path, bad, mode=0o644)
        with pytest.raises(PolicyError):
            load_control(str(path))
