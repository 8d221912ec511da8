"""A sandbox's whole life, on the scenario's hosts (molecule.yml) at once, as a user would live it.

The tests run in file order and drive the playbooks themselves:
1. the previous release installed (the newest tag before this commit, else b345567), doctor;
2. the upgrade to this checkout with the same inventory, doctor;
3. teardown in check mode (nothing changes), then teardown keeping the agent users: the
   documented state (the agent reaches nothing, the admin's control request works);
4. reinstall, doctor;
5. teardown removing the users and the workspace: nothing of ours is left but the audit
   log and the agent's home, which are kept on purpose; a second teardown changes nothing.
   Another account then takes the old uid of the proxy user, as one may on a real machine;
6. reinstall over the kept files, the agent with a new pinned uid: the kept audit log and
   home belong to the new users, and the doctor passes.
"""
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
REPO = SCENARIO.parents[1]
sys.path.insert(0, str(REPO / "molecule" / "shared"))
from sandbox_runs import REQUIRED_0_1, doctor, run_playbook  # noqa: E402  (molecule/shared, shared with fleet)

# Each step's ansible-playbook output and the doctor's summary after each install, kept after
# the scenario's containers are gone (the inventory folder is not).
LOGS = Path(tempfile.gettempdir()) / ("agent-sandbox-lifecycle-%s" % (os.environ.get("MOLECULE_NAME_PREFIX") or "as"))
LOGS.mkdir(exist_ok=True)
HOSTS = sorted(AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all"))  # the platforms of molecule.yml
# The commit before the first release: the previous version when no tag precedes this commit.
BEFORE_FIRST_RELEASE = "b345567"
AUDIT_LOG = "/var/log/agent-sandbox/proxy/audit.jsonl"
MARKER = "/home/agent/lifecycle-marker"
NEW_AGENT_ID = 2345
# The proxy addon: one file up to 0.1.x, a package since.
LEGACY_ADDON = "/opt/agent-sandbox/proxy-addon/agent_sandbox_policy.py"
ADDON_PACKAGE = "/opt/agent-sandbox/proxy-addon/agent_sandbox_proxy"
FULL_TEARDOWN = ["-e", '{"agent_sandbox_teardown_users": true, "agent_sandbox_teardown_workspace": true}']
# Everything the collection installs on Linux, by path; a name search below catches the rest.
INSTALLED_PATHS = [
    "/etc/agent-sandbox", "/opt/agent-sandbox", "/var/lib/agent-sandbox", "/usr/local/bin/agent-sandbox",
    "/usr/local/bin/agent-run", "/usr/local/lib/agent-sandbox", "/etc/sudoers.d/agent-sandbox",
    "/etc/systemd/system/agent-sandbox-proxy.service", "/etc/systemd/system/agent-sandbox-firewall.service",
    "/etc/polkit-1/rules.d/60-agent-sandbox.rules", "/srv/agent-workspace",
    "/etc/sysctl.d/60-agent-sandbox-shared-workspace.conf", "/etc/profile.d/agent-sandbox-nix.sh",
    "/etc/profile.d/agent-sandbox-admin.sh", "/usr/local/sbin/agent-sandbox-adopt", "/srv/agent-workspace-nofollow",
]


def checked(step, name):
    """The doctor on host name, all PASS; its summary goes to LOGS/doctor-summary.txt."""
    data = doctor(host(name), REQUIRED_0_1 if step.startswith("1-") else None)  # step 1: the previous release
    with open(LOGS / "doctor-summary.txt", "a", encoding="utf-8") as fh:
        fh.write("%s %s: %d checks, %d passed, %d failed\n" % (step, name, len(data["results"]), data["passed"],
                                                               data["failed"]))


def host(name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def play(step, playbook, *args, checkout=REPO):
    rc, out, recap = run_playbook(LOGS / ("lifecycle-%s.log" % step), Path(checkout) / playbook, *args,
                                  checkout=checkout)
    assert rc == 0, out[-6000:]
    assert set(recap) == set(HOSTS), out[-3000:]
    return recap


def previous_release():
    """The newest tag before this commit, else the commit before the first release."""
    proc = subprocess.run(["git", "-C", str(REPO), "describe", "--tags", "--abbrev=0", "HEAD^"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else BEFORE_FIRST_RELEASE


def ids(h, name):
    return int(h.check_output("id -u %s", name)), int(h.check_output("id -g %s", name))


def agent_reaches_nothing(h):
    """The agent, with no help from agent-run: neither a direct request nor the proxy's port."""
    for args in ("--noproxy '*' https://allowed.test/", "-x http://127.0.0.1:8080 https://allowed.test/"):
        out = h.run("runuser -u agent -- curl -sS -m 3 -k -o /dev/null %s" % args)
        assert out.rc != 0, "the agent reached allowed.test with %s" % args
    # Control: the admin, whom the firewall does not match, reaches the same host.
    control = h.run("runuser -u admin -- curl -sS -m 5 -o /dev/null --cacert /etc/fake-internet/ca.pem "
                    "-w '%{http_code}' https://allowed.test/")
    assert control.stdout == "200", control.stdout + control.stderr


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """A checkout of the previous release, with its collection link, as `make venv` makes it."""
    ref = previous_release()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref],
                             capture_output=True, check=False)
    assert archive.returncode == 0, "cannot read %s from the repository: %s" % (ref, archive.stderr.decode())
    checkout = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(checkout, filter="data")
    link = checkout / ".collections" / "ansible_collections" / "agent_sandbox" / "native"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../..")
    return checkout


# --- 1 and 2: the previous release, then the upgrade ------------------------

def test_1_previous_release_installs(previous):
    for name in HOSTS:
        # Releases before 0.1.0 trusted the age of the package lists, which the test
        # containers start without (molecule/shared/config.yml): give them lists.
        assert host(name).run("apt-get update -q").rc == 0
    (LOGS / "doctor-summary.txt").write_text("")
    play("1-previous", "site.yml", checkout=previous)
    for name in HOSTS:
        checked("1-previous", name)
        if previous_release().startswith("0.1."):  # the control for step 2's check of the addon
            assert host(name).file(LEGACY_ADDON).exists


KEPT = {"version": 1, "approved": [
    # `sudo agent-sandbox allow ID --always` keeps approvals outside the inventory; each run lists those it lacks.
    {"id": "k1", "listener": 8080, "host": "kept.test", "port": 443, "until": None},
    {"id": "k2", "listener": 8080, "host": "allowed.test", "port": 443, "until": None}]}


def test_2_upgrade_to_this_checkout():
    for name in HOSTS:
        host(name).run("printf '%%s' %s > /etc/agent-sandbox/control.json" % shlex.quote(json.dumps(KEPT)))
    play("2-upgrade", "site.yml")
    out = (LOGS / "lifecycle-2-upgrade.log").read_text()
    listed = [line for line in out.splitlines() if "not in the inventory" in line]
    assert listed and all("agent: kept.test:443" in line and "allowed.test" not in line for line in listed), listed
    for name in HOSTS:
        h = host(name)
        checked("2-upgrade", name)
        # This checkout's site.yml ended with the quick checks, which need its doctor.
        assert h.run("agent-sandbox doctor --quick").rc == 0
        # The proxy runs the package; the single file of 0.1.x is gone.
        assert not h.file(LEGACY_ADDON).exists and h.file(ADDON_PACKAGE + "/__main__.py").exists
        pid = h.check_output("systemctl show -p MainPID --value agent-sandbox-proxy.service")
        assert " -m agent_sandbox_proxy --mitmdump " in h.check_output("tr '\\0' ' ' < /proc/%s/cmdline" % pid)


# --- 3 and 4: teardown keeping the users, reinstall --------------------------

def test_3_teardown_keeping_users_leaves_the_agent_without_network():
    # Check mode first: it runs through every role's removal path and changes nothing.
    play("3-teardown-check", "playbooks/teardown.yml", "--check")
    for name in HOSTS:
        assert host(name).service("agent-sandbox-proxy.service").is_running
        assert host(name).file("/usr/local/bin/agent-run").exists
    play("3-teardown-keep-users", "playbooks/teardown.yml")
    for name in HOSTS:
        h = host(name)
        assert h.user("agent").exists
        assert not h.file("/usr/local/bin/agent-run").exists
        assert not h.service("agent-sandbox-proxy.service").is_running
        assert not h.file("/etc/agent-sandbox/control.json").exists   # the admin's run-time answers went too
        assert h.run("nft list table inet agent_sandbox").rc == 0
        agent_reaches_nothing(h)


def test_4_reinstall_after_teardown_keeping_users():
    play("4-reinstall", "site.yml")
    for name in HOSTS:
        checked("4-reinstall", name)


def test_4_a_run_whose_checks_fail_fails():
    # The allowed URL set to one the policy blocks: the installed sandbox fails the quick checks.
    rc, out, recap = run_playbook(LOGS / "lifecycle-4-checks-fail.log", REPO / "site.yml", "--tags", "selftest",
                                  "-e", "selftest_allowed_url=https://blocked.test/", "-e", "selftest_check_retries=1",
                                  checkout=REPO)
    assert rc != 0, out[-3000:]
    assert all(recap[name]["failed"] == 1 for name in HOSTS), out[-3000:]
    assert "FAIL [agent] allowed host reachable through the proxy: tried GET https://blocked.test/" in out, out[-3000:]
    assert "Last log line of agent-sandbox-proxy.service: " in out and "See docs/recovery.md" in out, out[-3000:]
    # Control: the same run with the inventory's settings passes.
    play("4-checks-pass", "site.yml", "--tags", "selftest")


# --- 5: full teardown --------------------------------------------------------

@pytest.fixture(scope="module")
def before_full_teardown():
    """The ids and files that step 6 must find again, written before the teardown."""
    seen = {}
    for name in HOSTS:
        h = host(name)
        out = h.run("runuser -u admin -- agent-run sh -c 'echo kept > %s'" % MARKER)
        assert out.rc == 0, out.stderr
        seen[name] = {"agent": ids(h, "agent"), "proxy": ids(h, "agent-proxy"),
                      "audit_lines": len(h.file(AUDIT_LOG).content_string.splitlines())}
        assert seen[name]["audit_lines"] > 0
    play("5-teardown-full", "playbooks/teardown.yml", *FULL_TEARDOWN)
    return seen


@pytest.mark.parametrize("name", HOSTS)
def test_5_full_teardown_leaves_nothing_but_what_is_kept_on_purpose(before_full_teardown, name):
    h = host(name)
    left = [path for path in INSTALLED_PATHS if h.file(path).exists]
    assert left == [], left
    found = h.run("find / -xdev \\( -iname '*agent-sandbox*' -o -iname '*agent_sandbox*' \\) "
                  "-not -path '/var/log/agent-sandbox*' -not -path '/home/agent/*' -not -path '/proc/*'")
    assert found.rc == 0 and found.stdout.split() == [], found.stdout + found.stderr
    assert h.run("systemctl list-unit-files --no-legend 'agent-sandbox*'").stdout.strip() == ""
    assert h.run("systemctl list-units --all --no-legend 'agent-sandbox*'").stdout.strip() == ""
    assert "agent_sandbox" not in h.check_output("nft list tables")
    # The start guard is out of PAM, and no slice keeps the agent's limits.
    pam = h.run("grep -rl agent-sandbox /etc/pam.d")
    assert pam.rc == 1 and pam.stdout == "", pam.stdout
    assert h.run("ls -d /etc/systemd/system/user-*.slice.d").stdout == ""
    for user in ("agent", "agent-proxy"):
        assert h.run("getent passwd %s", user).rc == 2, user
    for group in ("agent", "agent-proxy", "agent-share", "agent-sandbox-ps"):
        assert h.run("getent group %s", group).rc == 2, group
    # /proc shows every user's processes again (sandbox_user_hide_processes).
    assert "hidepid" not in h.check_output("findmnt -no OPTIONS /proc")
    for deny in ("/etc/cron.deny", "/etc/at.deny"):
        assert "agent" not in h.run("cat %s 2>/dev/null", deny).stdout.split()
    safe = h.run("runuser -u admin -- git config --global --get-all safe.directory").stdout
    assert "/srv/agent-workspace" not in safe, safe
    assert h.run("runuser -u admin -- git config --global --get safe.bareRepository").rc == 1
    # Kept on purpose (playbooks/teardown.yml): the audit log and the agent's home.
    assert h.file(AUDIT_LOG).exists and h.file(MARKER).exists
    # Control: the admin's own account is untouched.
    assert h.user("admin").exists and h.file("/home/admin").is_directory


def test_5_a_second_teardown_changes_nothing(before_full_teardown):
    recap = play("5-teardown-again", "playbooks/teardown.yml", *FULL_TEARDOWN)
    assert all(recap[name]["changed"] == 0 for name in HOSTS), recap


def test_5_other_accounts_take_the_old_ids(before_full_teardown):
    for name in HOSTS:
        h = host(name)
        uid, gid = before_full_teardown[name]["proxy"]
        out = h.run("useradd --system --no-create-home --shell /usr/sbin/nologin --uid %d proxy-uid-taker" % uid)
        assert out.rc == 0, out.stderr


# --- 6: reinstall over the kept files ---------------------------------------

def test_6_reinstall_over_kept_files_with_new_ids(before_full_teardown):
    ids_arg = '{"sandbox_user_uid": %d, "sandbox_user_gid": %d}' % (NEW_AGENT_ID, NEW_AGENT_ID)
    play("6-reinstall", "site.yml", "-e", ids_arg)
    for name in HOSTS:
        h = host(name)
        old = before_full_teardown[name]
        assert ids(h, "agent") == (NEW_AGENT_ID, NEW_AGENT_ID) != old["agent"]
        assert ids(h, "agent-proxy") != old["proxy"]
        # The kept audit log is the new proxy user's, and it went on writing to it.
        log = h.file(AUDIT_LOG)
        assert log.user == "agent-proxy", log.user
        assert len(log.content_string.splitlines()) >= old["audit_lines"]
        # The kept home is the new agent's: its file, which it can still write.
        assert h.file(MARKER).uid == NEW_AGENT_ID and h.file(MARKER).gid == NEW_AGENT_ID
        out = h.run("runuser -u admin -- agent-run sh -c 'echo again >> %s && cat %s'" % (MARKER, MARKER))
        assert out.rc == 0 and out.stdout.split() == ["kept", "again"], out.stdout + out.stderr
        checked("6-reinstall", name)
