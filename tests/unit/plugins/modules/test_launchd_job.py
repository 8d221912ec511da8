# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""launchd_job: the real module code against the stateful launchctl stand-in.

First the launchd behaviour the module exists for, shown with the stand-in alone: `kickstart -k`
keeps the old definition, and a bootstrap right after a bootout fails while the job is still going."""

from __future__ import annotations

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import launchd_job
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.launchd_harness import (
    FakeLaunchctl,
    write_plist,
)
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.module_runner import run_module

LABEL = "org.agent-sandbox.test"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setattr(launchd_job, "POLL_SECONDS", 0.01)
    return FakeLaunchctl(monkeypatch, tmp_path / "launchd")


@pytest.fixture
def job(tmp_path):
    """A one-shot RunAtLoad job whose program appends its argument to a file: which definition ran."""
    out = tmp_path / "ran.txt"
    program = tmp_path / "prog.sh"
    program.write_text('#!/bin/sh\necho "$1" >> %s\n' % out)
    program.chmod(0o755)
    plist = tmp_path / "job.plist"

    def define(version):
        return write_plist(plist, LABEL, [str(program), version], RunAtLoad=True)

    def ran():
        return out.read_text().split() if out.exists() else []

    return define, ran


def run(monkeypatch, check_mode=False, diff=False, **args):
    return run_module(monkeypatch, launchd_job, dict({"label": LABEL}, **args), check_mode=check_mode, diff=diff)


def test_stand_in_kickstart_keeps_the_old_definition(fake, job):
    define, ran = job
    assert fake("bootstrap", "system", define("v1"))[0] == 0
    define("v2")
    assert fake("kickstart", "-k", "system/" + LABEL)[0] == 0
    assert ran() == ["v1", "v1"]


def test_stand_in_bootstrap_right_after_bootout_fails(fake, job):
    define, dummy = job
    plist = define("v1")
    fake("bootstrap", "system", plist)
    assert fake("bootout", "system/" + LABEL)[0] == 0
    assert fake("bootstrap", "system", plist)[:3:2] == (5, "Bootstrap failed: 5: Input/output error\n")
    rc, dummy, stderr = fake("bootout", "system/nothing.here")
    assert (rc, stderr) == (3, "Boot-out failed: 3: No such process\n")


def test_loads_a_job_launchd_does_not_hold(monkeypatch, fake, job):
    define, ran = job
    result, failed = run(monkeypatch, plist=define("v1"))
    assert not failed, result
    assert result["changed"] and result["loaded_before"] is False
    assert fake.calls() == [["print", "system/" + LABEL], ["bootstrap", "system", define("v1")]]
    assert ran() == ["v1"]


def test_changed_plist_is_booted_out_awaited_and_bootstrapped(monkeypatch, fake, job):
    define, ran = job
    fake("bootstrap", "system", define("v1"))
    fake.clear_calls()
    result, failed = run(monkeypatch, plist=define("v2"), reload=True)
    assert not failed, result
    assert result["actions"] == ["bootout system/" + LABEL, "bootstrap system " + define("v2")]
    calls = fake.calls()
    # print until launchd no longer finds the job, and only then bootstrap
    assert calls[:2] == [["print", "system/" + LABEL], ["bootout", "system/" + LABEL]]
    assert calls[2:-1] == [["print", "system/" + LABEL]] * 3
    assert calls[-1] == ["bootstrap", "system", define("v2")]
    assert ran() == ["v1", "v2"]


def test_plain_restart_is_kickstart(monkeypatch, fake, job):
    define, ran = job
    fake("bootstrap", "system", define("v1"))
    fake.clear_calls()
    result, failed = run(monkeypatch, plist=define("v1"), restart=True)
    assert not failed, result
    assert fake.calls() == [["print", "system/" + LABEL], ["kickstart", "-k", "system/" + LABEL]]
    assert ran() == ["v1", "v1"]


def test_loaded_and_unchanged_is_left_alone(monkeypatch, fake, job):
    define, ran = job
    fake("bootstrap", "system", define("v1"))
    fake.clear_calls()
    result, failed = run(monkeypatch, plist=define("v1"))
    assert not failed and result["changed"] is False
    assert fake.calls() == [["print", "system/" + LABEL]]
    assert ran() == ["v1"]


def test_check_mode_only_reads(monkeypatch, fake, job):
    define, ran = job
    fake("bootstrap", "system", define("v1"))
    fake.clear_calls()
    result, failed = run(monkeypatch, check_mode=True, diff=True, plist=define("v2"), reload=True)
    assert not failed and result["changed"] is True
    assert result["actions"] == ["bootout system/" + LABEL, "bootstrap system " + define("v2")]
    assert fake.calls() == [["print", "system/" + LABEL]]
    assert result["diff"]["before"] == "loaded: True\n"
    assert ran() == ["v1"]


def test_absent_waits_until_the_job_has_gone(monkeypatch, fake, job):
    define, dummy = job
    fake("bootstrap", "system", define("v1"))
    result, failed = run(monkeypatch, state="absent")
    assert not failed and result["changed"] is True
    assert fake.jobs() == {}
    result, failed = run(monkeypatch, state="absent")
    assert not failed and result["changed"] is False


def test_a_job_that_never_leaves_fails_with_a_message(monkeypatch, fake, job):
    define, dummy = job
    monkeypatch.setenv("FAKE_LAUNCHCTL_BOOTOUT_POLLS", "100000")
    fake("bootstrap", "system", define("v1"))
    result, failed = run(monkeypatch, plist=define("v2"), reload=True, wait_timeout=0)
    assert failed
    assert result["msg"] == "launchd still holds system/%s 0 s after bootout" % LABEL
    assert ["bootstrap", "system", define("v2")] not in fake.calls()[1:]


def test_present_needs_the_plist(monkeypatch, fake):
    result, failed = run(monkeypatch)
    assert failed and "plist" in result["msg"]
    assert fake.calls() == []
