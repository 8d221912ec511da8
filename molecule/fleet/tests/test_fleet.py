"""A team fleet rolled out with site.yml: the canary stops the rollout, the fix completes it.

The tests run in file order and drive the rollouts themselves (no converge step):
1. a canary rollout (vars/rollout.yml: one laptop at a time, no failure allowed) in which
   the second laptop's own bad allowlist rule is refused before anything changes there: the
   first laptop is done, the second untouched, the third never reached;
2. the rollout again with that laptop's host_vars corrected and all three laptops in
   one batch: every laptop converges;
3. each group's allowlist, tried as the agent (team B alone reaches the secret API).
"""
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
REPO = SCENARIO.parents[1]
sys.path.insert(0, str(REPO / "molecule" / "shared"))
from sandbox_runs import doctor, run_playbook  # noqa: E402  (molecule/shared, shared with lifecycle)

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
PREFIX = os.environ.get("MOLECULE_NAME_PREFIX") or "as"
A1, A2, B1 = ("%s-fleet-%s" % (PREFIX, x) for x in ("a1", "a2", "b1"))

# The correction of A2's host_vars, as its admin would commit it: the port moves
# out of the host name into `ports`. The second rollout reads it from a second
# inventory source, whose host_vars win over the first's.
FIXED_A2_HOST_VARS = {"laptop_rules": [{"host": "mirror.team-a.test", "ports": [8443]}]}


def rollout(name, *args, rollout_vars=True):
    """Run site.yml on the fleet like a team would; keep the log next to the inventory."""
    # The last -e wins: the arguments may override vars/rollout.yml.
    extra = ["-e", "@%s" % (SCENARIO / "vars" / "rollout.yml")] if rollout_vars else []
    return run_playbook(INVENTORY.parent / ("rollout-%s.log" % name), REPO / "playbooks" / "site.yml",
                        *extra, *args, checkout=REPO)


def laptop(name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def agent_fetch(host, url):
    """Status and policy header of a GET as the agent, with its own login environment.
    The proxy refuses a host on CONNECT: then the status is the CONNECT's."""
    out = host.run("runuser -u admin -- agent-run curl -sS -m 5 -o /dev/null -D - "
                   "-w 'status=%%{http_code} connect=%%{http_connect}\\n' %s", url)
    codes = re.findall(r"^status=(\d+) connect=(\d+)$", out.stdout, re.M)
    status = next((c for c in (codes[-1] if codes else ()) if c != "000"), "")
    block = re.findall(r"^x-agent-sandbox-block:\s*(\S+)", out.stdout, re.M | re.I)
    return status, (block[-1] if block else ""), out


# --- 0. a rollout setting Ansible would ignore ------------------------------

def test_serial_from_the_inventory_is_refused_before_any_change():
    # Ansible never reads a play's serial from inventory variables: site.yml must
    # say so and stop, rather than do every laptop at once.
    with tempfile.TemporaryDirectory() as extra:
        (Path(extra) / "group_vars").mkdir()
        (Path(extra) / "hosts.yml").write_text(json.dumps({"all": {"hosts": {A1: None}}}))
        (Path(extra) / "group_vars" / "all.yml").write_text(json.dumps({"agent_sandbox_serial": 1}))
        rc, out, recap = rollout("serial-in-inventory", "-i", extra, rollout_vars=False)
    assert rc != 0, out
    assert "it was set in the inventory, where Ansible never reads a play's serial" in out, out
    assert set(recap) == {A1, A2, B1} and all(r["failed"] == 1 for r in recap.values()), out
    for name in (A1, A2, B1):
        assert not laptop(name).user("agent").exists, "%s was changed" % name
        assert laptop(name).user("admin").exists  # control: the laptop answers


# --- 1. the canary rollout --------------------------------------------------

@pytest.fixture(scope="module")
def canary():
    return rollout("canary")


def test_canary_rollout_fails_on_the_second_laptop(canary):
    rc, out, recap = canary
    assert rc != 0, out
    assert 'host "mirror.team-a.test:8443" has a port: put it in ports' in out, out
    assert recap[A1]["failed"] == 0 and recap[A1]["unreachable"] == 0, out
    assert recap[A2]["failed"] == 1, out


def test_canary_rollout_never_reaches_the_third_laptop(canary):
    rc, out, recap = canary
    assert A1 in recap and A2 in recap, out  # the recap was read
    assert B1 not in recap, out
    assert "[%s]" % B1 not in out, out


def test_first_laptop_is_complete(canary):
    doctor(laptop(A1))


def test_second_laptop_refused_before_any_change(canary):
    """The bad rule is in the proxy's settings, which site.yml checks before its first change:
    the second laptop keeps nothing of a half-run (no agent, no firewall, no proxy)."""
    rc, out, recap = canary
    assert recap[A2]["changed"] == 0, out
    assert "Check the proxy settings before anything changes" in out, out
    host = laptop(A2)
    assert host.user("admin").exists  # control: prepare ran here
    assert not host.user("agent").exists
    assert "agent_sandbox" not in host.run("nft list tables 2>/dev/null").stdout
    assert not host.file("/etc/systemd/system/agent-sandbox-firewall.service").exists
    assert not host.file("/etc/agent-sandbox/proxy").exists
    assert not host.service("agent-sandbox-proxy.service").is_running
    assert not host.file("/usr/local/bin/agent-run").exists
    assert not host.file("/etc/sudoers.d/agent-sandbox").exists


def test_third_laptop_untouched(canary):
    host = laptop(B1)
    assert host.user("admin").exists  # control: prepare ran here
    assert not host.user("agent").exists
    assert not host.file("/etc/agent-sandbox").exists
    assert "agent_sandbox" not in host.run("nft list tables 2>/dev/null").stdout


# --- 2. the corrected rollout ---------------------------------------------

@pytest.fixture(scope="module")
def fixed(canary):
    with tempfile.TemporaryDirectory() as fix:
        (Path(fix) / "host_vars").mkdir()
        (Path(fix) / "hosts.yml").write_text(json.dumps({"all": {"hosts": {A2: None}}}))
        (Path(fix) / "host_vars" / ("%s.yml" % A2)).write_text(json.dumps(FIXED_A2_HOST_VARS))
        # All three in one batch: the laptops converge in parallel.
        return rollout("fixed", "-i", fix, "-e", "agent_sandbox_serial=3")


def test_corrected_rollout_converges_every_laptop(fixed):
    rc, out, recap = fixed
    assert rc == 0, out
    assert set(recap) == {A1, A2, B1}, out
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), out


@pytest.mark.parametrize("name", ["a2", "b1"])
def test_doctor_passes_after_the_fix(fixed, name):
    doctor(laptop("%s-fleet-%s" % (PREFIX, name)))


# --- 3. the groups' allowlists, as the agent --------------------------------

@pytest.mark.parametrize("name, secret_api", [("a1", "403"), ("a2", "403"), ("b1", "200")])
def test_group_allowlists(fixed, name, secret_api):
    host = laptop("%s-fleet-%s" % (PREFIX, name))
    # Control: the team-wide host answers every agent.
    status, block, out = agent_fetch(host, "https://allowed.test/")
    assert status == "200", out.stdout + out.stderr
    # Only team B's allowlist has the secret API; team A gets the policy's refusal.
    status, block, out = agent_fetch(host, "https://api.secret.test/")
    assert status == secret_api, out.stdout + out.stderr
    if secret_api == "403":
        assert block.startswith("policy"), out.stdout
