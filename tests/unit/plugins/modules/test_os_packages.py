# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""os_packages: the exact ordered argv against a scripted dpkg-query and apt-get (the Molecule
scenarios run it against the real apt on hosts whose lists are empty and dated now)."""

from __future__ import annotations

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import os_packages
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.module_runner import (
    ScriptedRunCommand,
    run_module,
)

FORMAT = "-f=${Package}\t${db:Status-Abbrev}\n"
QUERY = ["/usr/bin/dpkg-query", "-W", FORMAT]
APT = ["/usr/bin/apt-get", "-o", "DPkg::Lock::Timeout=120"]
UPDATE = APT + ["update", "-q"]
INSTALL = APT + ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                 "install", "-y", "-q"]
NOT_FOUND = "dpkg-query: no packages found matching nftables\n"


class Apt(ScriptedRunCommand):
    def bin_path(self, arg, required, opt_dirs):
        assert required
        return "/usr/bin/" + arg


@pytest.fixture
def run(monkeypatch):
    def runner(script, check_mode=False, diff=False, **args):
        apt = Apt(monkeypatch, script)
        result, failed = run_module(monkeypatch, os_packages, args, check_mode=check_mode, diff=diff)
        apt.done()
        return result, failed, apt
    return runner


def test_everything_installed_reads_only(run):
    result, failed, dummy = run([
        (QUERY + ["acl", "nftables"], (0, "acl\tii \nnftables\tii \n", "")),
    ], name=["nftables", "acl", "nftables"])

    assert not failed, result
    assert result["changed"] is False
    assert result["missing"] == [] and result["installed"] == []
    assert result["cache_updated"] is False


def test_missing_package_refreshes_the_lists_whatever_their_age_then_installs(run):
    # "rc " is a removed package whose config files stayed: not installed.
    result, failed, apt = run([
        (QUERY + ["acl", "git", "nftables"], (1, "acl\tii \ngit\trc \n", NOT_FOUND)),
        (UPDATE, (0, "Get:1 bookworm InRelease\nReading package lists...\n", "")),
        (INSTALL + ["git", "nftables"], (0, "Setting up nftables ...\n", "")),
        (QUERY + ["git", "nftables"], (0, "git\tii \nnftables\tii \n", "")),
    ], name=["nftables", "acl", "git"])

    assert not failed, result
    assert result["changed"] is True
    assert result["missing"] == ["git", "nftables"]
    assert result["installed"] == ["git", "nftables"]
    assert result["cache_updated"] is True
    # dpkg-query in the C locale; apt-get never asks a question either.
    assert apt.environ[0] == {"LANG": "C", "LC_ALL": "C"}
    assert all(env == dict(os_packages.APT_ENVIRON, LANG="C", LC_ALL="C") for env in apt.environ[1:3])


def test_check_mode_on_empty_lists_reports_without_running_apt(run):
    result, failed, dummy = run([
        (QUERY + ["acl", "nftables"], (1, "acl\tii \n", NOT_FOUND)),
    ], check_mode=True, diff=True, name=["nftables", "acl"])

    assert not failed, result
    assert result["changed"] is True
    assert result["installed"] == ["nftables"]
    assert result["cache_updated"] is False
    assert result["diff"]["before"] == "acl installed\nnftables missing\n"
    assert result["diff"]["after"] == "acl installed\nnftables installed\n"


def test_unknown_package_fails_naming_apts_error(run):
    result, failed, dummy = run([
        (QUERY + ["nftabels"], (1, "", "dpkg-query: no packages found matching nftabels\n")),
        (UPDATE, (0, "Reading package lists...\n", "")),
        (INSTALL + ["nftabels"], (100, "Reading package lists...\n", "E: Unable to locate package nftabels\n")),
    ], name=["nftabels"])

    assert failed
    assert result["msg"] == "installing nftabels (apt-get install) failed: E: Unable to locate package nftabels"
    assert result["rc"] == 100 and result["cmd"] == INSTALL + ["nftabels"]


def test_failed_refresh_stops_before_installing(run, monkeypatch):
    monkeypatch.setattr(os_packages.time, "sleep", lambda seconds: None)
    locked = (100, "", "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42\n")
    # The lock is still held after 120 s of waiting (25 tries, 5 s apart).
    result, failed, dummy = run([(QUERY + ["nftables"], (1, "", NOT_FOUND))] + [(UPDATE, locked)] * 25,
                                name=["nftables"])

    assert failed
    assert result["msg"].startswith("refreshing the package lists (apt-get update) failed: E: Could not get lock")


def test_refresh_waits_for_the_lists_lock(run, monkeypatch):
    slept = []
    monkeypatch.setattr(os_packages.time, "sleep", slept.append)
    locked = (100, "", "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)\n")
    result, failed, dummy = run([
        (QUERY + ["nftables"], (1, "", NOT_FOUND)),
        (UPDATE, locked),
        (UPDATE, locked),
        (UPDATE, (0, "Reading package lists...\n", "")),
        (INSTALL + ["nftables"], (0, "", "")),
        (QUERY + ["nftables"], (0, "nftables\tii \n", "")),
    ], name=["nftables"])

    assert not failed, result
    assert slept == [5, 5]


def test_install_that_leaves_a_package_missing_fails(run):
    result, failed, dummy = run([
        (QUERY + ["nftables"], (1, "", NOT_FOUND)),
        (UPDATE, (0, "", "")),
        (INSTALL + ["nftables"], (0, "", "")),
        (QUERY + ["nftables"], (0, "nftables\tiF \n", "")),
    ], name=["nftables"])

    assert failed
    assert result["msg"] == "apt-get install succeeded but these packages are still not installed: nftables"


@pytest.mark.parametrize("name", ["nftables=1.0.6-2", "nftables:amd64", "-oAPT::Get::Foo=1", "N", "x"])
def test_a_name_that_is_not_a_plain_package_is_refused_before_any_command(run, name):
    result, failed, apt = run([], name=["acl", name])

    assert failed
    assert result["msg"] == "not a plain Debian package name (no version or architecture): %s" % name
    assert apt.calls == []


def test_dpkg_query_error_fails(run):
    result, failed, dummy = run([
        (QUERY + ["acl"], (2, "", "dpkg-query: error: cannot access archive\n")),
    ], name=["acl"])

    assert failed
    assert result["msg"] == "cannot read the installed packages" and result["rc"] == 2
