"""Fail closed under the agent's own load and without its rules: the agent's resource limits
hold on every way the admin starts it, and no way starts it when its firewall rules are missing.
Each attempt as the agent is paired with the admin doing the same (the control)."""
import json
import shlex

import pytest

# group_vars/debian.yml: the agents' limits in this scenario.
TASKS_MAX = 64
MEMORY_MAX_MIB = 256

# Forks children that sleep until it is done, until fork fails or `count` are running; prints
# {"forked": n, "errno": e}, keeps them `hold` seconds, then reaps them.
FORKER = r'''
import json, os, sys, time
count, hold = int(sys.argv[1]), float(sys.argv[2])
pids, err = [], None
try:
    while len(pids) < count:
        pid = os.fork()
        if pid == 0:
            time.sleep(hold + 30)
            os._exit(0)
        pids.append(pid)
except OSError as exc:
    err = exc.errno
print(json.dumps({"forked": len(pids), "errno": err}), flush=True)
time.sleep(hold)
for pid in pids:
    os.kill(pid, 9)
for pid in pids:
    os.waitpid(pid, 0)
'''

# Allocates and touches `mib` MiB one MiB at a time; prints how far it got.
HOG = r'''
import sys
blocks = []
for i in range(int(sys.argv[1])):
    blocks.append(b"x" * (1 << 20))
    if i % 32 == 0:
        print(i, flush=True)
print("allocated", len(blocks), flush=True)
'''


def agents(host):
    return ["agent", "agent2"] if host.backend.get_hostname().endswith("-trixie") else ["agent"]


def install(host, name, source):
    host.check_output("printf %%s %s > /usr/local/bin/%s && chmod 0755 /usr/local/bin/%s"
                      % (shlex.quote(source), name, name))
    return "python3 /usr/local/bin/" + name


@pytest.mark.parametrize("how", ["agent-run", "sudo"])
def test_fork_bomb_stops_at_the_agent_task_limit_while_the_admin_forks_on(host, how):
    forker = install(host, "fc-forker.py", FORKER)
    start = ("runuser -u admin -- agent-run " if how == "agent-run"
             else "runuser -u admin -- sudo -u agent -- ")
    # The agent holds as many processes as it can for 8 s; meanwhile the admin forks 200.
    script = """
    {start} {forker} 1000 8 >/tmp/fc-agent.json 2>/tmp/fc-agent.err & a=$!
    for i in $(seq 100); do [ -s /tmp/fc-agent.json ] && break; sleep 0.1; done
    runuser -u admin -- {forker} 200 0 >/tmp/fc-admin.json
    admin_rc=$?
    wait $a
    cat /tmp/fc-agent.json /tmp/fc-admin.json
    echo $admin_rc
    """.format(start=start, forker=forker)
    out = host.run("bash -c %s" % shlex.quote(script))
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout + out.stderr
    agent, admin, admin_rc = json.loads(lines[0]), json.loads(lines[1]), lines[2]
    # The agent's fork failed with EAGAIN below its limit (its shell, sudo and python count too).
    assert agent["errno"] == 11 and 10 < agent["forked"] < TASKS_MAX, agent
    # Control: the admin forked all 200 while the agent sat at its limit.
    assert admin_rc == "0" and admin == {"forked": 200, "errno": None}, (admin, out.stderr)


def test_memory_hog_is_killed_at_the_agent_memory_limit(host):
    hog = install(host, "fc-hog.py", HOG)
    agent = host.run("runuser -u admin -- agent-run %s %d" % (hog, 4 * MEMORY_MAX_MIB))
    assert agent.rc != 0 and "allocated" not in agent.stdout, agent.stdout[-200:]
    # Control: the admin allocates more than the agent's whole limit, and the machine answers.
    admin = host.run("runuser -u admin -- %s %d" % (hog, 2 * MEMORY_MAX_MIB))
    assert admin.rc == 0 and "allocated %d" % (2 * MEMORY_MAX_MIB) in admin.stdout, admin.stdout[-200:]
    # The agent can start again at once: the kill took only the hog.
    assert host.run("runuser -u admin -- agent-run true").rc == 0


@pytest.mark.parametrize("agent", ["agent", "agent2"])
def test_every_way_to_start_the_agent_lands_in_its_slice(host, agent):
    if agent not in agents(host):
        pytest.skip("%s exists on Debian 13 only (group_vars/trixie.yml)" % agent)
    uid = int(host.check_output("id -u %s" % agent))
    for start in ("runuser -u admin -- agent-run --user %s" % agent,
                  "runuser -u admin -- sudo -u %s --" % agent,
                  "runuser -u %s --" % agent):
        out = host.run("%s cat /proc/self/cgroup" % start)
        assert out.rc == 0 and "/user-%d.slice/" % uid in out.stdout, (start, out.stdout, out.stderr)
    props = host.check_output("systemctl show user-%d.slice -p TasksMax -p MemoryMax" % uid)
    assert "TasksMax=%d" % TASKS_MAX in props and "MemoryMax=%d" % (MEMORY_MAX_MIB << 20) in props, props


def test_the_admin_cannot_start_the_agent_without_its_rules(host):
    try:
        host.check_output("nft delete table inet agent_sandbox")
        for start in ("runuser -u admin -- agent-run true", "runuser -u admin -- sudo -u agent -- true",
                      "runuser -u admin -- agent-run"):
            out = host.run(start)
            text = out.stdout + out.stderr
            assert out.rc != 0, "%s started the agent without its rules" % start
            assert "agent may not start" in text and "agent-sandbox doctor" in text, text
        # Control: the admin's own commands run as before.
        assert host.run("runuser -u admin -- true").rc == 0
    finally:
        host.check_output("systemctl restart agent-sandbox-firewall.service")
    assert host.run("runuser -u admin -- agent-run true").rc == 0
