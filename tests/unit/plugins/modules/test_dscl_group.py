# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dscl_group against the Directory Services stand-ins, and the exact argv it runs."""

from __future__ import annotations

import pytest

from dscl_harness import FakeDirectory, ScriptedRunCommand, group, guid, run_module, user

from ansible_collections.agent_sandbox.native.plugins.modules import dscl_group

DSCL = "/usr/bin/dscl"
DSEDITGROUP = "/usr/sbin/dseditgroup"
OK = (0, "", "")
PROBE = ("dscl", [".", "-change", "/Users/nobody", "NFSHomeDirectory", "/var/empty", "/var/empty"])
NOBODY_HOME = ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
               '\t<key>dsAttrTypeStandard:NFSHomeDirectory</key>\n\t<array>\n\t\t<string>/var/empty</string>\n'
               '\t</array>\n</dict>\n</plist>\n')


@pytest.fixture
def fake(monkeypatch, tmp_path):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")
    fake.edit(lambda state: state["users"].update(agent=user("agent", 600, 600), bob=user("bob", 502, 20)))
    return fake


def run(monkeypatch, args, **kwargs):
    return run_module(monkeypatch, dscl_group, args, **kwargs)


def test_create_takes_the_lowest_free_gid_and_adds_members(monkeypatch, fake):
    fake.edit(lambda state: state["groups"].update(taken=group("taken", 750)))

    result, failed = run(monkeypatch, dict(name="agent-tools", gid_range=[750, 799], real_name="Agent tools",
                                           members=["agent", "alice"]))

    assert not failed, result
    assert result["changed"] is True
    assert result["gid"] == 751
    assert result["members"] == ["agent", "alice"]
    record = fake.state()["groups"]["agent-tools"]
    assert record["PrimaryGroupID"] == ["751"]
    assert record["Password"] == ["*"]
    assert record["RealName"] == ["Agent tools"]
    assert record["GroupMembership"] == ["agent", "alice"]
    assert record["GroupMembers"] == [guid("users", "agent"), guid("users", "alice")]
    assert fake.writes()[-2:] == [
        ("dseditgroup", ["-o", "edit", "-a", "agent", "-t", "user", "agent-tools"]),
        ("dseditgroup", ["-o", "edit", "-a", "alice", "-t", "user", "agent-tools"]),
    ]


def test_rerun_reports_unchanged_and_writes_nothing(monkeypatch, fake):
    args = dict(name="agent-tools", gid=760, members=["agent"])
    run(monkeypatch, args)
    fake.clear_calls()
    before = fake.state()

    result, failed = run(monkeypatch, args)

    assert not failed, result
    assert result["changed"] is False
    assert result["actions"] == []
    assert fake.writes() == []
    assert fake.state() == before


def test_exact_members_remove_the_others_and_append_keeps_them(monkeypatch, fake):
    run(monkeypatch, dict(name="agent-share", members=["agent", "alice"]))

    result, _failed = run(monkeypatch, dict(name="agent-share", members=["bob"], append=True))
    assert result["actions"] == ["add bob to agent-share"]
    assert result["members"] == ["agent", "alice", "bob"]

    fake.clear_calls()
    result, _failed = run(monkeypatch, dict(name="agent-share", members=["agent"]), diff=True)
    assert result["actions"] == ["remove alice from agent-share", "remove bob from agent-share"]
    assert fake.writes() == [
        ("dseditgroup", ["-o", "edit", "-d", "alice", "-t", "user", "agent-share"]),
        ("dseditgroup", ["-o", "edit", "-d", "bob", "-t", "user", "agent-share"]),
    ]
    assert fake.state()["groups"]["agent-share"]["GroupMembership"] == ["agent"]
    assert result["diff"]["before"]["members"] == ["agent", "alice", "bob"]
    assert result["diff"]["after"]["members"] == ["agent"]


def test_unknown_member_fails_before_any_write(monkeypatch, fake):
    result, failed = run(monkeypatch, dict(name="agent-tools", members=["agent", "nosuch"]))

    assert failed
    assert "nosuch, which is no local user" in result["msg"]
    assert fake.writes() == []


@pytest.mark.parametrize("args, message", [
    (dict(name="agent-tools", gid=80), "gid 80 is already used by group admin"),
    (dict(name="agent", gid=650), "exists with gid 600, not the requested 650"),
    (dict(name="agent-tools", gid_range=[600, 600]), "No free gid in gid_range [600, 600]"),
    (dict(name="bad/name"), "is not a usable group name"),
    (dict(name="admin", state="absent"), "Refusing to delete the system group admin"),
])
def test_bad_input_fails_before_any_write(monkeypatch, fake, args, message):
    result, failed = run(monkeypatch, args)

    assert failed
    assert message in result["msg"]
    assert fake.writes() == []


def test_check_mode_writes_nothing(monkeypatch, fake):
    before = fake.state()

    result, failed = run(monkeypatch, dict(name="agent-tools", gid_range=[750, 799], members=["agent"]),
                         check_mode=True, diff=True)

    assert not failed, result
    assert result["changed"] is True
    assert result["gid"] == 750
    assert result["actions"] == ["create group agent-tools", "set Password of agent-tools to *",
                                 "set PrimaryGroupID of agent-tools to 750", "add agent to agent-tools"]
    assert fake.writes() == []
    assert fake.state() == before
    assert result["diff"]["before"] == {"name": "agent-tools", "state": "absent"}
    assert result["diff"]["after"]["members"] == ["agent"]


def test_absent_deletes_the_group_once(monkeypatch, fake):
    result, failed = run(monkeypatch, dict(name="agent-share", state="absent"))

    assert not failed, result
    assert result["changed"] is True
    assert fake.writes() == [PROBE, ("dscl", [".", "-delete", "/Groups/agent-share"])]
    assert "agent-share" not in fake.state()["groups"]

    result, _failed = run(monkeypatch, dict(name="agent-share", state="absent"))
    assert result["changed"] is False


def test_create_runs_exactly_these_commands_in_order(monkeypatch):
    listing = (0, "%-24s %s\n%-24s %s\n" % ("admin", 80, "staff", 20), "")
    script = ScriptedRunCommand(monkeypatch, [
        ([DSCL, "-plist", ".", "-read", "/Groups/agent-share"], (56, "", "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)\n")),
        ([DSCL, ".", "-list", "/Users"], (0, "agent\nalice\nroot\n", "")),
        ([DSCL, ".", "-list", "/Groups", "PrimaryGroupID"], listing),
        ([DSCL, ".", "-list", "/Groups", "PrimaryGroupID"], listing),
        ([DSCL, "-plist", ".", "-read", "/Users/nobody", "NFSHomeDirectory"], (0, NOBODY_HOME, "")),
        ([DSCL, ".", "-change", "/Users/nobody", "NFSHomeDirectory", "/var/empty", "/var/empty"], OK),
        ([DSCL, ".", "-create", "/Groups/agent-share"], OK),
        ([DSCL, ".", "-create", "/Groups/agent-share", "Password", "*"], OK),
        ([DSCL, ".", "-create", "/Groups/agent-share", "PrimaryGroupID", "700"], OK),
        ([DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"], OK),
    ])

    result, failed = run(monkeypatch, dict(name="agent-share", gid_range=[700, 799], members=["agent"]))

    assert not failed, result
    script.done()
    assert all(env == {"LANG": "C", "LC_ALL": "C"} for env in script.environ)


def test_without_full_disk_access_no_group_is_made(monkeypatch, fake):
    # A group alone would not need it; the user that comes next does, so the run stops here.
    fake.edit(lambda state: state.update(full_disk_access=False))
    before = fake.state()

    result, failed = run(monkeypatch, dict(name="agent-tools", gid_range=[750, 799], members=["agent"]))

    assert failed
    assert "System Settings > Privacy & Security > Full Disk Access" in result["msg"]
    assert "Allow full disk access for remote users" in result["msg"]
    assert fake.writes() == [PROBE]
    assert fake.state() == before


def test_members_of_an_existing_group_change_without_a_probe(monkeypatch, fake):
    fake.edit(lambda state: state.update(full_disk_access=False))

    result, failed = run(monkeypatch, dict(name="agent-share", members=["agent"]))

    assert not failed, result
    assert fake.writes() == [("dseditgroup", ["-o", "edit", "-a", "agent", "-t", "user", "agent-share"])]


def test_a_refused_write_names_full_disk_access_and_root(monkeypatch, fake):
    # Not root: every write is refused with eDSPermissionError, and the message says so.
    monkeypatch.setenv("DSCL_FAKE_READONLY", "1")

    result, failed = run(monkeypatch, dict(name="agent-share", real_name="Shared"))

    assert failed
    assert result["rc"] == 40
    assert result["cmd"][1:] == [".", "-create", "/Groups/agent-share", "RealName", "Shared"]
    assert "set RealName of agent-share to Shared was refused (eDSPermissionError -14120, exit status 40)" in result["msg"]
    assert "Full Disk Access" in result["msg"]
