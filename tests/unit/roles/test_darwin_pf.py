# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_firewall on macOS: one pf enable reference, put back when pf is switched off, and a check
agent-run can ask. The role's loader and LaunchDaemon, rendered from its templates, against the
pfctl stand-in (which keeps xnu's reference count) and the launchctl stand-in (whose bootstrap runs
a RunAtLoad job's program, as launchd does)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.launchd_harness import FakeLaunchctl
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.pf_harness import FakePfctl, writes
from ansible_collections.agent_sandbox.native.tests.unit.roles.darwin_scripts import ANCHOR, LABEL, DarwinFirewall


@pytest.fixture
def mac(monkeypatch, tmp_path):
    pfctl = FakePfctl(monkeypatch, tmp_path / "pf")
    launchctl = FakeLaunchctl(monkeypatch, tmp_path / "launchd")
    return DarwinFirewall(tmp_path, pfctl, launchctl)


def converge(mac):
    """What the role does on a Mac that has none of it: bootstrap the LaunchDaemon (RunAtLoad runs
    the loader), then run the loader itself. Returns the role's own run."""
    assert mac.launchctl("bootstrap", "system", mac.plist)[0] == 0
    return mac.run_loader()


def release(mac):
    """What `state: absent` does: boot the job out, wait until it has gone, release the token it recorded."""
    assert mac.launchctl("bootout", "system/" + LABEL)[0] == 0
    while mac.launchctl("print", "system/" + LABEL)[0] == 0:
        pass
    return mac.pfctl("-X", mac.token())


def test_bootstrap_and_the_role_take_one_reference_and_absent_leaves_pf_off(mac):
    rc, stdout, stderr = converge(mac)

    assert (rc, stderr) == (0, "")
    assert stdout == "", "the role's run found everything in place and must report no change"
    assert mac.tokens() == [mac.token()], "exactly one reference, and it is the one recorded"
    assert "pf was disabled: enabled it with a reference of our own" in mac.log_lines()[-1]
    assert mac.pfctl("-a", ANCHOR, "-s", "rules")[1].count("user = 501") == 4

    rc, dummy, stderr = release(mac)
    assert rc == 0 and "pf disabled" in stderr
    assert not mac.enabled(), "pf was off before the role ran: state absent must leave it off"


def test_a_second_run_changes_nothing(mac):
    converge(mac)
    mac.pfctl.clear_calls()
    assert mac.run_loader() == (0, "", "")
    assert writes(mac.pfctl.calls()) == []


def test_pfctl_d_is_undone_by_the_next_interval_and_logged(mac):
    converge(mac)
    old = mac.token()
    rc, dummy, stderr = mac.pfctl("-d")
    assert rc == 0 and not mac.enabled() and mac.tokens() == []

    mac.launchctl.fire(LABEL)

    assert mac.enabled()
    assert mac.tokens() == [mac.token()] and mac.token() != old
    assert "pf was disabled: enabled it with a reference of our own (token %s)" % mac.token() in mac.log_lines()[-1]


def test_a_flushed_anchor_is_loaded_again_and_logged(mac):
    converge(mac)
    mac.pfctl("-a", ANCHOR, "-F", "rules")
    assert mac.pfctl("-a", ANCHOR, "-s", "rules")[1] == ""

    mac.launchctl.fire(LABEL)

    assert mac.pfctl("-a", ANCHOR, "-s", "rules")[1].count("user = 501") == 4
    assert "did not hold the agents' rules: loaded them again" in mac.log_lines()[-1]
    assert len(mac.tokens()) == 1


def test_quiet_while_all_is_in_place(mac):
    converge(mac)
    lines = mac.log_lines()
    mac.launchctl.fire(LABEL)
    mac.launchctl.fire(LABEL)
    assert mac.log_lines() == lines


def test_pf_enabled_by_someone_else_stays_enabled_after_absent(mac):
    rc, dummy, stderr = mac.pfctl("-E")
    theirs = stderr.split("Token : ")[1].strip()
    converge(mac)
    assert mac.tokens() == [theirs, mac.token()]
    assert "pf was enabled without our reference" in mac.log_lines()[-1]

    assert release(mac)[0] == 0
    assert mac.enabled() and mac.tokens() == [theirs]


def test_runs_at_once_take_one_reference(mac):
    procs = [subprocess.Popen([str(mac.loader)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for dummy in range(3)]
    outputs = [proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert len(mac.tokens()) == 1
    assert sum(1 for out, dummy in outputs if "enabled it" in out) == 1


def test_a_lock_left_by_a_dead_run_is_taken_over(mac):
    lock = mac.token_file.parent / (mac.token_file.name + ".lock")
    lock.mkdir()
    (lock / "pid").write_text("999999\n")
    rc, stdout, dummy = mac.run_loader()
    assert rc == 0 and "enabled it" in stdout
    assert not lock.exists()


def test_check_passes_only_while_pf_confines_the_agent(mac):
    assert mac.run_loader("--check", "501")[0] == 1, "nothing loaded yet"
    converge(mac)
    mac.pfctl.clear_calls()
    assert mac.run_loader("--check", "501") == (0, "", "")
    rc, dummy, stderr = mac.run_loader("--check", "502")
    assert (rc, stderr) == (1, "the pf anchor %s has no rule for uid 502\n" % ANCHOR)
    assert mac.run_loader("--check", "501;id")[0] == 2
    assert writes(mac.pfctl.calls()) == [], "--check only reads"

    mac.pfctl("-d")
    assert mac.run_loader("--check", "501") == (1, "", "pf is disabled\n")
    mac.launchctl.fire(LABEL)
    mac.pfctl("-a", ANCHOR, "-f", "-", stdin="pass out quick all\n")
    assert mac.run_loader("--check", "501")[0] == 1, "rules that are not ours"


def test_the_launchdaemon_runs_the_loader_at_load_and_on_an_interval(mac):
    mac.launchctl("bootstrap", "system", mac.plist)
    rc, stdout, dummy = mac.launchctl("print", "system/" + LABEL)
    assert rc == 0
    assert "run interval = 60 seconds" in stdout
    assert "\t\t%s\n" % mac.loader in stdout
    assert mac.launchctl.jobs()[LABEL]["runs"] == 1


def tasks(role, name):
    import yaml
    from ansible_collections.agent_sandbox.native.tests.unit.roles.darwin_scripts import ROOT
    return yaml.safe_load((ROOT / "roles" / role / "tasks" / name).read_text())


def test_the_role_runs_the_loader_after_the_bootstrap_and_ungated():
    """The tests above drive the loader; this holds the role to running it the way they assume."""
    steps = tasks("host_firewall", "Darwin.yml")
    modules = [next(key for key in step if key.startswith(("agent_sandbox.", "ansible.builtin."))) for step in steps]
    launchd = modules.index("agent_sandbox.native.launchd_job")
    loader = next(i for i, step in enumerate(steps)
                  if step.get("ansible.builtin.command", {}).get("argv") == ["{{ __host_firewall_pf_loader }}"])
    assert launchd < loader
    assert "when" not in steps[loader], "the loader decides itself; a condition read before the bootstrap took a second token"
    assert steps[launchd]["agent_sandbox.native.launchd_job"]["reload"] == "{{ __host_firewall_plist is changed }}"
    assert not any("pfctl" in str(step.get("ansible.builtin.command", {}).get("argv", "")) for step in steps)


def test_absent_waits_for_the_job_before_it_releases_the_token():
    steps = tasks("host_firewall", "Darwin_absent.yml")
    assert steps[0]["agent_sandbox.native.launchd_job"]["state"] == "absent"
    release = next(step for step in steps if step["name"] == "Release our pf enable reference")
    assert "'pf not enabled' not in __host_firewall_release.stderr" in release["failed_when"]


def test_the_proxy_plist_is_reloaded_not_kickstarted():
    steps = tasks("mitm_proxy", "Darwin.yml")
    job = next(step for step in steps if "agent_sandbox.native.launchd_job" in step)
    assert job["agent_sandbox.native.launchd_job"]["reload"] == "{{ __mitm_proxy_plist is changed }}"
    assert not any("kickstart" in str(step) for step in steps)
