"""Several agents on one host (Debian 13, group_vars/trixie.yml): each agent has
its own user, reaches only its own proxy listener, gets its own extra rules and
only its own secret. Debian 12 keeps the single-agent default."""
import json
import re

import pytest

AGENTS = {
    # name: (listener port, placeholder, real secret the proxy injects for it)
    "agent": (8080, "AGENT_SANDBOX_PLACEHOLDER_TEST_API_KEY", "demo-secret-0f1e2d3c4b5a"),
    "agent2": (8081, "AGENT_SANDBOX_PLACEHOLDER_AGENT2_KEY", "agent2-secret-9a8b7c6d5e4f"),
}
LOG = "/var/log/fake-internet/requests.jsonl"


def multi(host):
    return host.backend.get_hostname().endswith("-trixie")


def as_agent(host, agent, cmd):
    return host.run("runuser -u admin -- agent-run --user %s %s" % (agent, cmd))


def fetch(host, agent, url, *curl_args):
    """Status of a curl run as the agent, through its own login environment: the
    server's status code, or "CONNECT <code>" when the proxy refused the tunnel."""
    out = as_agent(host, agent, "curl -sS -m 10 -o /dev/null -w '%%{http_code} %%{http_connect}' %s %s"
                   % (" ".join(curl_args), url))
    code, connect = (out.stdout.split() + ["", ""])[:2]
    return "CONNECT " + connect if code == "000" and connect not in ("000", "200") else code


def api_requests(host):
    return [json.loads(line) for line in host.file(LOG).content_string.splitlines()
            if '"api.secret.test"' in line]


def test_agent_users(host):
    assert host.user("agent").exists
    assert host.user("agent2").exists == multi(host)


# Debian 12 changes only the proxy port, to 8091 (group_vars/bookworm.yml: mitm_proxy_port). The
# doctor (test_doctor.py), run as the agent, and every fetch through the agent's shell go through it.
SINGLE_AGENT_PORT = 8091


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_has_its_own_environment(host, agent):
    if not multi(host):
        agent = "agent"
    port = AGENTS[agent][0] if multi(host) else SINGLE_AGENT_PORT
    placeholder = AGENTS[agent][1]
    env = as_agent(host, agent, "env")
    assert env.rc == 0, env.stderr
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert "%s=http://127.0.0.1:%d\n" % (name, port) in env.stdout, env.stdout
    assert "TEST_API_KEY=%s" % placeholder in env.stdout


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_reaches_only_its_own_listener(host, agent):
    if not multi(host):
        pytest.skip("one agent on this host: the firewall scenario covers its listener")
    own = AGENTS[agent][0]
    other = [spec[0] for name, spec in AGENTS.items() if name != agent][0]
    probe = "python3 -c 'import socket,sys; socket.create_connection((\"127.0.0.1\", int(sys.argv[1])), 3)' %d"
    assert as_agent(host, agent, probe % own).rc == 0, "control: the agent cannot reach its own listener"
    blocked = as_agent(host, agent, probe % other)
    assert blocked.rc != 0, "%s reached another agent's listener on port %d" % (agent, other)
    # The other listener is up: the admin (the control) reaches it.
    assert host.run("runuser -u admin -- " + probe % other).rc == 0


def test_allowlists_differ_per_agent(host):
    if not multi(host):
        pytest.skip("one agent on this host")
    assert fetch(host, "agent2", "https://blocked.test/") == "200"
    assert fetch(host, "agent", "https://blocked.test/") == "CONNECT 403"
    # Both share allowed.test.
    assert fetch(host, "agent", "https://allowed.test/") == "200"
    assert fetch(host, "agent2", "https://allowed.test/") == "200"


def test_each_agent_gets_only_its_own_secret(host):
    if not multi(host):
        pytest.skip("one agent on this host")
    for agent, (_port, placeholder, secret) in AGENTS.items():
        before = len(api_requests(host))
        code = fetch(host, agent, "https://api.secret.test/echo", "-H", "'x-api-key: %s'" % placeholder)
        assert code == "200", "%s: %s" % (agent, code)
        arrived = api_requests(host)[before:]
        assert [r["headers"].get("x-api-key") for r in arrived] == [secret], arrived
    # Each agent holding the other's placeholder: its listener refuses it as a leak
    # and nothing reaches the upstream, least of all the other agent's secret.
    for agent, other in (("agent2", "agent"), ("agent", "agent2")):
        before = len(api_requests(host))
        out = as_agent(host, agent, "curl -sS -m 10 -o /dev/null -D - -H 'x-api-key: %s' https://api.secret.test/echo"
                       % AGENTS[other][1])
        # -D - shows the tunnel's "200 Connection established", then the refused request.
        assert re.findall(r"^HTTP/\S+ (\d{3})", out.stdout, re.M)[-1:] == ["403"], out.stdout
        assert re.search(r"^x-agent-sandbox-block: policy;.*reason=leak", out.stdout, re.M | re.I), out.stdout
        assert api_requests(host)[before:] == []
