"""host_firewall: the agent reaches the proxy and nothing else; the admin is the control.

Each attempt runs inside the container as the agent (must fail) and as the
admin (must succeed), so a broken test server cannot pass for a firewall.
"""
import json
import os
import subprocess

import pytest

IPV6 = "fd00::2"
PROBE = "python3 /usr/local/bin/hf-probe.py"


def as_user(host, user, cmd):
    return host.run("runuser -u %s -- %s" % (user, cmd))


def ipv4(host):
    return host.ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]


def uid(host, user):
    return int(host.run("id -u %s" % user).stdout)


def dropped(host):
    out = host.check_output("nft -j list counter inet agent_sandbox agent_%d_dropped" % uid(host, "agent"))
    for item in json.loads(out)["nftables"]:
        if "counter" in item:
            return item["counter"]["packets"]
    raise AssertionError(out)


def blocked_targets(host):
    v4 = ipv4(host)
    return [
        # TCP to every address, loopback included, and to the proxy's port on a
        # non-loopback address.
        "tcp %s 9001" % v4, "tcp %s 9001" % IPV6, "tcp 127.0.0.1 9001", "tcp ::1 9001",
        "tcp %s 8080" % v4, "tcp %s 8080" % IPV6, "tcp %s 9005" % v4,
        # UDP everywhere.
        "udp %s 9003" % v4, "udp %s 9003" % IPV6, "udp 127.0.0.1 9003", "udp ::1 9003",
    ]


def check_blocked(host):
    for target in blocked_targets(host):
        agent = as_user(host, "agent", "%s %s" % (PROBE, target))
        admin = as_user(host, "admin", "%s %s" % (PROBE, target))
        assert admin.rc == 0, "control failed, admin: %s: %s" % (target, admin.stdout + admin.stderr)
        assert agent.rc != 0, "agent reached %s" % target


def check_allowed(host):
    for target in ("tcp 127.0.0.1 8080", "tcp ::1 8080", "tcp 127.0.0.1 9005", "tcp ::1 9005"):
        agent = as_user(host, "agent", "%s %s" % (PROBE, target))
        assert agent.rc == 0, "agent cannot reach %s: %s" % (target, agent.stdout + agent.stderr)


def test_rules_file_unit_and_table(host):
    assert host.file("/etc/agent-sandbox/firewall.nft").mode == 0o600
    unit = host.service("agent-sandbox-firewall.service")
    assert unit.is_enabled
    table = host.check_output("nft list table inet agent_sandbox")
    assert "meta skuid %d jump agent_%d" % (uid(host, "agent"), uid(host, "agent")) in table
    assert "meta skuid %d" % uid(host, "admin") not in table


def test_other_tables_untouched(host):
    # A table of someone else's survives our loads.
    host.check_output("nft add table inet hf_other && nft add chain inet hf_other c")
    host.check_output("systemctl restart agent-sandbox-firewall.service")
    assert "table inet hf_other" in host.check_output("nft list tables")
    host.check_output("nft delete table inet hf_other")


def test_agent_reaches_the_proxy_and_opted_in_port(host):
    check_allowed(host)


def test_agent_tcp_and_udp_are_dropped(host):
    check_blocked(host)


@pytest.mark.parametrize("server", ["v4", IPV6, "127.0.0.53"])
def test_agent_dns_is_dropped(host, server):
    server = ipv4(host) if server == "v4" else server
    cmd = "dig +time=1 +tries=1 @%s localhost" % server
    admin = as_user(host, "admin", cmd)
    assert admin.rc == 0 and "status: NOERROR" in admin.stdout, admin.stdout
    assert as_user(host, "agent", cmd).rc != 0


@pytest.mark.parametrize("target", ["v4", IPV6, "127.0.0.1", "::1"])
def test_agent_icmp_echo_is_dropped(host, target):
    target = ipv4(host) if target == "v4" else target
    cmd = "ping -c 1 -W 1 %s" % target
    assert as_user(host, "admin", cmd).rc == 0
    assert as_user(host, "agent", cmd).rc != 0


def test_drops_are_counted(host):
    before = dropped(host)
    as_user(host, "agent", "%s udp 127.0.0.1 9003" % PROBE)
    assert dropped(host) > before


def test_agent_cannot_use_resolved_varlink(host):
    admin = as_user(host, "admin", PROBE + " varlink")
    assert admin.rc == 0, admin.stdout
    agent = as_user(host, "agent", PROBE + " varlink")
    assert agent.rc != 0 and "PermissionError" in agent.stdout, agent.stdout


def test_agent_cannot_use_resolved_dbus(host):
    cmd = "timeout 10 busctl call org.freedesktop.resolve1 /org/freedesktop/resolve1 " \
          "org.freedesktop.resolve1.Manager ResolveHostname isit 0 localhost 0 0"
    admin = as_user(host, "admin", cmd)
    assert admin.rc == 0 and "127 0 0 1" in admin.stdout, admin.stdout + admin.stderr
    agent = as_user(host, "agent", cmd)
    assert agent.rc != 0 and "denied" in agent.stderr.lower(), agent.stdout + agent.stderr


def test_resolved_restart_keeps_the_agent_out(host):
    host.check_output("systemctl restart systemd-resolved.service")
    host.run("sleep 1")
    assert as_user(host, "admin", PROBE + " varlink").rc == 0
    assert as_user(host, "agent", PROBE + " varlink").rc != 0


def test_unit_restart_reloads_and_still_blocks(host):
    host.check_output("nft delete table inet agent_sandbox")
    assert as_user(host, "agent", "%s tcp 127.0.0.1 9001" % PROBE).rc == 0  # open without our table
    host.check_output("systemctl restart agent-sandbox-firewall.service")
    check_blocked(host)
    check_allowed(host)


@pytest.mark.parametrize("action", ["restart", "reload", "stop"])
def test_nftables_service_keeps_our_table(host, action):
    # Debian's /etc/nftables.conf starts with `flush ruleset` and its ExecStop
    # flushes too; our drop-in loads the table again before systemctl returns.
    host.check_output("systemctl start nftables.service && systemctl %s nftables.service" % action)
    assert "table inet agent_sandbox" in host.check_output("nft list tables")
    assert as_user(host, "agent", "%s tcp 127.0.0.1 9001" % PROBE).rc != 0
    check_allowed(host)


def side_run(host, **extra):
    """Apply the role to this host only, with extra vars; return (rc, output)."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           "--limit", host.backend.get_hostname(), "-e", json.dumps(extra),
           os.path.join(scenario, "side_converge.yml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def loaded_state(host):
    rules = host.check_output("nft -s list table inet agent_sandbox")
    return rules, host.file("/etc/agent-sandbox/firewall.nft").sha256sum


@pytest.mark.parametrize("extra, message", [
    ({"host_firewall_extra_rules": ["meta skuid 0 frobnicate"]}, "nft rejected the new rules"),
    ({"host_firewall_agents": [{"user": "nosuchuser", "proxy_port": 8080}]}, "'nosuchuser' does not exist"),
    ({"host_firewall_agents": [{"user": "agent", "proxy_port": 70000}]}, "between 1 and 65535, got 70000"),
    ({"host_firewall_extra_loopback_ports": ["ssh"]}, "got 'ssh'"),
    ({"host_firewall_extra_loopback_ports": ["9010-9000"]}, "got '9010-9000'"),
], ids=["nft-rejects", "unknown-user", "port-range", "not-a-port", "backwards-range"])
def test_bad_settings_fail_and_keep_the_old_rules(host, extra, message):
    before = loaded_state(host)
    rc, out = side_run(host, **extra)
    assert rc != 0, out
    assert message in out, out
    if "extra_rules" in str(extra):
        assert "frobnicate" in out and "Error" in out, out  # nft's own message
    assert loaded_state(host) == before
    check_blocked(host)
