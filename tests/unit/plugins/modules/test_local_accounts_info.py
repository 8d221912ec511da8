# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""local_accounts_info: on Linux against the real user and group databases of the test process,
on macOS against the Directory Services stand-ins (dscl, id) and a scripted run_command."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from dscl_harness import OPT_DIRS, FakeDirectory, ScriptedRunCommand, run_module

from ansible.module_utils import basic

from ansible_collections.agent_sandbox.native.plugins.module_utils import _accounts
from ansible_collections.agent_sandbox.native.plugins.modules import local_accounts_info

MISSING = "hacct-no-such-account"
ACCOUNT_KEYS = ["UniqueID", "PrimaryGroupID", "NFSHomeDirectory", "UserShell", "RecordName"]
READALL_GROUPS = ["-plist", ".", "-readall", "/Groups", "RecordName", "PrimaryGroupID", "GroupMembership"]


@pytest.fixture
def linux(monkeypatch):
    monkeypatch.setattr(_accounts, "system", lambda: "Linux")

    def no_command(module, args, **kwargs):
        raise AssertionError("the Linux path runs no command, but ran %r" % (args,))

    monkeypatch.setattr(basic.AnsibleModule, "run_command", no_command)


@pytest.fixture
def darwin(monkeypatch):
    monkeypatch.setattr(_accounts, "system", lambda: "Darwin")


def test_linux_describes_root_and_reports_a_missing_user(monkeypatch, linux):
    root = pwd.getpwnam("root")

    result, failed = run_module(monkeypatch, local_accounts_info, dict(users=["root", MISSING], groups=["root", MISSING]),
                                check_mode=True)

    assert not failed, result
    assert result["changed"] is False
    assert result["users"]["root"] == {
        "name": "root", "exists": True, "uid": 0, "gid": root.pw_gid, "group": grp.getgrgid(root.pw_gid).gr_name,
        "home": root.pw_dir, "shell": root.pw_shell,
        "groups": sorted({grp.getgrgid(gid).gr_name for gid in os.getgrouplist("root", root.pw_gid)}),
    }
    assert result["users"][MISSING]["exists"] is False
    assert result["groups"] == {
        "root": {"name": "root", "exists": True, "gid": 0, "members": sorted(grp.getgrnam("root").gr_mem)},
        MISSING: {"name": MISSING, "exists": False, "gid": None, "members": []},
    }
    assert result["current_user"] == {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid()}
    assert "all_users" not in result and "all_groups" not in result


def test_linux_lists_every_account_on_request(monkeypatch, linux):
    result, failed = run_module(monkeypatch, local_accounts_info, dict(all_accounts=True))

    assert not failed, result
    assert result["users"] == {} and result["groups"] == {}
    assert set(result["all_users"]) == {entry.pw_name for entry in pwd.getpwall()}
    assert result["all_users"]["root"]["uid"] == 0
    assert set(result["all_groups"]) == {entry.gr_name for entry in grp.getgrall()}


def test_macos_reads_through_dscl_and_id_without_a_write(monkeypatch, tmp_path, darwin):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")

    result, failed = run_module(monkeypatch, local_accounts_info,
                                dict(users=["alice", "agent"], groups=["admin", "agent", MISSING]), check_mode=True)

    assert not failed, result
    assert result["changed"] is False
    assert result["users"] == {
        "alice": {"name": "alice", "exists": True, "uid": 501, "gid": 20, "group": "staff", "home": "/Users/alice",
                  "shell": "/bin/zsh", "groups": ["admin", "everyone", "staff"]},
        # base_directory has the group agent but no user agent.
        "agent": {"name": "agent", "exists": False, "uid": None, "gid": None, "group": None, "home": None,
                  "shell": None, "groups": []},
    }
    assert result["groups"] == {
        "admin": {"name": "admin", "exists": True, "gid": 80, "members": ["alice", "root"]},
        "agent": {"name": "agent", "exists": True, "gid": 600, "members": []},
        MISSING: {"name": MISSING, "exists": False, "gid": None, "members": []},
    }
    assert fake.calls() == [
        ("dscl", ["-plist", ".", "-read", "/Users/alice"] + ACCOUNT_KEYS),
        ("id", ["-Gn", "alice"]),
        ("dscl", READALL_GROUPS),
        ("dscl", ["-plist", ".", "-read", "/Users/agent"] + ACCOUNT_KEYS),
    ]
    assert fake.writes() == []
    assert fake.bin_path_requests == [("dscl", True, OPT_DIRS), ("id", True, OPT_DIRS)]


def test_macos_groups_follow_nesting_as_the_membership_resolver_does(monkeypatch, tmp_path, darwin):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")

    def nest(state):
        state["users"]["agent"] = dict(state["users"]["alice"], RecordName=["agent"], UniqueID=["600"],
                                       PrimaryGroupID=["600"], GeneratedUID=["G-agent"])
        state["groups"]["agent-share"]["GroupMembership"] = ["agent"]
        state["groups"]["admin"]["NestedGroups"] = [state["groups"]["agent-share"]["GeneratedUID"][0]]

    fake.edit(nest)

    result, failed = run_module(monkeypatch, local_accounts_info, dict(users=["agent"]))

    assert not failed, result
    # agent is in admin only through agent-share: the admin group's record does not name it.
    assert result["users"]["agent"]["groups"] == ["admin", "agent", "agent-share", "everyone"]
    assert "agent" not in fake.state()["groups"]["admin"].get("GroupMembership", [])


def test_macos_lists_every_account_on_request(monkeypatch, tmp_path, darwin):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")

    result, failed = run_module(monkeypatch, local_accounts_info, dict(all_accounts=True))

    assert not failed, result
    assert result["all_users"]["alice"] == {"name": "alice", "uid": 501, "gid": 20, "home": "/Users/alice",
                                            "shell": "/bin/zsh"}
    assert result["all_users"]["nobody"]["uid"] == -2
    assert sorted(result["all_users"]) == ["_www", "alice", "daemon", "nobody", "root"]
    assert result["all_groups"]["wheel"] == {"name": "wheel", "gid": 0, "members": ["root"]}
    assert fake.calls() == [
        ("dscl", ["-plist", ".", "-readall", "/Users", "RecordName", "UniqueID", "PrimaryGroupID", "NFSHomeDirectory",
                  "UserShell"]),
        ("dscl", READALL_GROUPS),
    ]


def test_macos_exact_argv_at_the_real_paths_in_the_c_locale(monkeypatch, darwin):
    plist = ('<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>'
             '<key>dsAttrTypeStandard:PrimaryGroupID</key><array><string>600</string></array>'
             '<key>dsAttrTypeStandard:RecordName</key><array><string>agent</string></array>'
             '<key>dsAttrTypeStandard:UniqueID</key><array><string>600</string></array></dict></plist>')
    groups = ('<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><array><dict>'
              '<key>dsAttrTypeStandard:PrimaryGroupID</key><array><string>600</string></array>'
              '<key>dsAttrTypeStandard:RecordName</key><array><string>agent</string></array></dict></array></plist>')
    runner = ScriptedRunCommand(monkeypatch, [
        (["/usr/bin/dscl", "-plist", ".", "-read", "/Users/agent"] + ACCOUNT_KEYS,
         (0, plist, "No such key: NFSHomeDirectory\nNo such key: UserShell\n")),
        (["/usr/bin/id", "-Gn", "agent"], (0, "agent everyone localaccounts\n", "")),
        (["/usr/bin/dscl"] + READALL_GROUPS, (0, groups, "")),
    ])

    result, failed = run_module(monkeypatch, local_accounts_info, dict(users=["agent"]), check_mode=True)

    runner.done()
    assert not failed, result
    assert result["users"]["agent"] == {"name": "agent", "exists": True, "uid": 600, "gid": 600, "group": "agent",
                                        "home": None, "shell": None, "groups": ["agent", "everyone", "localaccounts"]}
    assert all(env["LANG"] == "C" and env["LC_ALL"] == "C" for env in runner.environ)


def test_macos_a_failed_read_fails_the_task_with_the_command(monkeypatch, darwin):
    runner = ScriptedRunCommand(monkeypatch, [
        (["/usr/bin/dscl", "-plist", ".", "-read", "/Users/agent"] + ACCOUNT_KEYS,
         (40, "", "<dscl_cmd> DS Error: -14120 (eDSPermissionError)\n")),
    ])

    result, failed = run_module(monkeypatch, local_accounts_info, dict(users=["agent"]))

    runner.done()
    assert failed
    assert result["cmd"] == ["/usr/bin/dscl", "-plist", ".", "-read", "/Users/agent"] + ACCOUNT_KEYS
    assert result["rc"] == 40 and "eDSPermissionError" in result["msg"]


@pytest.mark.parametrize("option", ["users", "groups"])
def test_macos_refuses_a_name_that_cannot_go_into_a_record_path(monkeypatch, tmp_path, darwin, option):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")

    result, failed = run_module(monkeypatch, local_accounts_info, {option: ["../alice"]})

    assert failed
    assert "is not a usable" in result["msg"]
    assert fake.calls() == []
