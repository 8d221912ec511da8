"""Audit log content, mode and rotation; reloading policy and secrets without losing the old ones."""
import json
import logging
import os
import stat

from mitmproxy import http

from proxy_helpers import PLACEHOLDER, POLICY, SECRET, SECRETS, Env, tunnel_flow, write_json

FIELDS = {"time", "listener", "client", "method", "scheme", "host", "port", "path", "decision", "reason", "rule",
          "profile", "status", "bytes", "request_bytes", "leak", "secrets", "masked"}


def test_audit_lines(env):
    env.connect("example.com")
    env.connect("evil.test", 443, listener=8081)
    env.send(tunnel_flow("ro.example.net", path="/v1/items?token=abc", method="GET"), http.Response.make(200, b"12345"))
    env.send(tunnel_flow("ro.example.net", path="/admin?x=1", method="GET"))
    lines = env.audit_lines()
    assert len(lines) == 4
    for line in lines:
        assert FIELDS <= set(line)
        assert line["time"].endswith("Z")
    connect_ok, connect_blocked, get_ok, get_blocked = lines
    assert connect_ok == dict(connect_ok, method="CONNECT", host="example.com", port=443, path=None,
                              decision="allow", rule="example.com", profile="default", status=200, listener=8080)
    assert connect_blocked == dict(connect_blocked, decision="block", reason="no-rule", status=403,
                                   listener=8081, profile="8081", rule=None)
    assert get_ok == dict(get_ok, method="GET", scheme="https", host="ro.example.net", path="/v1/items",
                          decision="allow", rule="ro-api", status=200, bytes=5, leak=False, client="127.0.0.1")
    assert get_blocked == dict(get_blocked, path="/admin", decision="block", reason="path", rule="ro-api", status=403)
    assert "token=abc" not in env.audit_text()   # never the query


def test_audit_file_mode_and_rotation(tmp_path):
    env = Env(tmp_path, agent_sandbox_audit_max_bytes=2000, agent_sandbox_audit_backups=2)
    assert stat.S_IMODE(os.stat(env.audit_path).st_mode) == 0o640
    for dummy in range(40):
        env.connect("example.com")
    rotated = sorted(p.name for p in env.audit_path.parent.iterdir())
    assert rotated == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for path in env.audit_path.parent.iterdir():
        assert path.stat().st_size <= 2000
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        for line in path.read_text().splitlines():
            json.loads(line)


def test_audit_follows_an_outside_rotation(env):
    env.connect("example.com")
    os.rename(env.audit_path, str(env.audit_path) + ".old")
    env.addon.audit.reopen_if_moved()
    env.connect("example.com")
    assert len(env.audit_lines()) == 1


def _touch_later(path):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_policy_reloads_when_the_file_changes(env):
    assert env.connect("new.example").response.status_code == 403
    write_json(env.policy_path, dict(POLICY, rules=POLICY["rules"] + ["new.example"]))
    _touch_later(env.policy_path)
    env.addon.tick()    # what the next request does at most once a second
    env.addon._next_check = 0  # pylint: disable=protected-access
    assert env.connect("new.example").response is None


def test_bad_policy_file_keeps_the_previous_policy(env, caplog):
    caplog.set_level(logging.INFO)
    env.policy_path.write_text('{"rules": [{"host": "https://oops.example/"}]}')
    _touch_later(env.policy_path)
    env.addon._next_check = 0  # pylint: disable=protected-access
    flow = env.connect("example.com")
    assert flow.response is None                      # still the old policy
    assert "policy %s refused" % env.policy_path in caplog.text
    assert "looks like a URL" in caplog.text and "previous policy stays in force" in caplog.text
    env.policy_path.write_text("{not json")
    env.addon.on_sighup()                             # SIGHUP forces a reload: refused again
    assert env.connect("example.com").response is None
    env.policy_path.unlink()
    env.addon._next_check = 0  # pylint: disable=protected-access
    assert env.connect("example.com").response is None


def test_bad_secrets_file_keeps_the_previous_secrets(env, caplog):
    bad = dict(SECRETS, secrets=[dict(SECRETS["secrets"][0], hosts=[])])
    write_json(env.secrets_path, bad)
    _touch_later(env.secrets_path)
    env.addon.on_sighup()
    assert "a secret needs at least one host" in caplog.text
    assert SECRET not in caplog.text
    flow = tunnel_flow("api.github.com", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    env.addon.requestheaders(flow)
    env.addon.request(flow)
    assert flow.request.headers["authorization"] == "Bearer " + SECRET


def test_world_readable_secrets_file_is_refused(tmp_path, caplog):
    env = Env(tmp_path)
    os.chmod(env.secrets_path, 0o644)
    env.addon.on_sighup()
    assert "accessible to other users" in caplog.text
    assert len(env.addon.secrets.secrets) == 3   # the previous, valid set stays


def test_sighup_handler_is_installed_when_running(env):
    import asyncio  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel

    async def run():
        env.addon.running()
        loop = asyncio.get_running_loop()
        assert env.addon._hup_installed  # pylint: disable=protected-access
        write_json(env.policy_path, {"rules": ["after-hup.example"]})
        os.kill(os.getpid(), signal.SIGHUP)
        for dummy in range(50):
            await asyncio.sleep(0.01)
            if env.addon.policy.rule_count == 1:
                break
        env.addon.done()
        return loop

    asyncio.run(run())
    assert env.addon.policy.rule_count == 1
    assert env.connect("after-hup.example").response is None


def test_reload_does_not_touch_open_tunnels(env):
    """A tunnel opened under the old policy is re-checked request by request under the new one."""
    assert env.connect("example.com").response is None
    write_json(env.policy_path, {"rules": ["other.example"]})
    env.addon.on_sighup()
    flow = env.send(tunnel_flow("example.com"))
    assert flow.response.status_code == 403
