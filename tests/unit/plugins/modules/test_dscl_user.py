# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dscl_user against the Directory Services stand-ins, and the exact argv it runs."""

from __future__ import annotations

import json
import os

import pytest

from dscl_harness import (
    OPT_DIRS,
    FakeDirectory,
    ScriptedRunCommand,
    group,
    guid,
    run_module,
    user,
)

from ansible_collections.agent_sandbox.native.plugins.modules import dscl_user

DSCL = "/usr/bin/dscl"
DSEDITGROUP = "/usr/sbin/dseditgroup"
CREATEHOMEDIR = "/usr/sbin/createhomedir"
OK = (0, "", "")
NOT_FOUND = (56, "", "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)\n")
NOT_ADMIN = (67, "no agent is NOT a member of admin\n", "")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    return FakeDirectory(monkeypatch, tmp_path / "ds")


@pytest.fixture
def agent_args(tmp_path):
    return dict(name="agent", uid_range=[600, 699], primary_group_id=600, shell="/bin/zsh",
                home=str(tmp_path / "Users" / "agent"), real_name="Agent User", hidden=True,
                groups=["agent-share"])


def run(monkeypatch, args, **kwargs):
    return run_module(monkeypatch, dscl_user, args, **kwargs)


def test_create_makes_a_hidden_locked_non_admin_user(monkeypatch, fake, agent_args):
    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["changed"] is True
    assert result["uid"] == 600
    agent = fake.state()["users"]["agent"]
    assert agent["UniqueID"] == ["600"]
    assert agent["PrimaryGroupID"] == ["600"]
    assert agent["UserShell"] == ["/bin/zsh"]
    assert agent["RealName"] == ["Agent User"]
    assert agent["dsAttrTypeNative:IsHidden"] == ["1"]
    assert agent["Password"] == ["*"]
    assert "AuthenticationAuthority" not in agent
    share = fake.state()["groups"]["agent-share"]
    assert share["GroupMembership"] == ["agent"]
    assert share["GroupMembers"] == [agent["GeneratedUID"][0]]
    assert "agent" not in fake.state()["groups"]["admin"]["GroupMembership"]
    assert os.path.isdir(agent_args["home"])
    # The record reads back the way dscl prints it: the name with a space on its own line.
    rc, out, _err = fake.run("dscl", ".", "-read", "/Users/agent")
    assert rc == 0
    assert "RealName:\n Agent User\n" in out
    assert "dsAttrTypeNative:IsHidden: 1\n" in out
    assert "Password: *\n" in out


def test_binaries_are_looked_up_required_in_the_macos_directories(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)

    assert {request[0] for request in fake.bin_path_requests} == {"dscl", "dseditgroup", "createhomedir"}
    assert all(request[1:] == (True, OPT_DIRS) for request in fake.bin_path_requests)


def test_rerun_reports_unchanged_and_writes_nothing(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.clear_calls()
    before = fake.state()

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["changed"] is False
    assert result["actions"] == []
    assert fake.writes() == []
    assert fake.state() == before


def test_changing_one_attribute_writes_only_that_attribute(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.clear_calls()

    result, failed = run(monkeypatch, dict(agent_args, shell="/bin/bash"))

    assert not failed, result
    assert result["changed"] is True
    assert result["actions"] == ["set UserShell of agent to /bin/bash"]
    assert fake.writes() == [("dscl", [".", "-create", "/Users/agent", "UserShell", "/bin/bash"])]
    assert fake.state()["users"]["agent"]["UserShell"] == ["/bin/bash"]


def test_diff_shows_before_and_after(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)

    result, _failed = run(monkeypatch, dict(agent_args, shell="/bin/bash", hidden=False), diff=True)

    diff = result["diff"]
    assert diff["before"]["shell"] == "/bin/zsh" and diff["after"]["shell"] == "/bin/bash"
    assert diff["before"]["hidden"] is True and diff["after"]["hidden"] is False
    assert {key for key in diff["before"] if diff["before"][key] != diff["after"][key]} == {"shell", "hidden"}
    assert diff["before_header"] == "/Users/agent (before)"
    assert "dsAttrTypeNative:IsHidden" not in fake.state()["users"]["agent"]


def test_diff_of_a_new_user_starts_from_absent(monkeypatch, fake, agent_args):
    result, _failed = run(monkeypatch, agent_args, diff=True)

    assert result["diff"]["before"] == {"name": "agent", "state": "absent"}
    assert result["diff"]["after"]["uid"] == 600
    assert result["diff"]["after"]["groups"] == ["agent-share"]


def test_admin_membership_is_removed_and_reported(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)

    def make_admin(state):
        admin = state["groups"]["admin"]
        admin["GroupMembership"].append("agent")
        admin["GroupMembers"].append(state["users"]["agent"]["GeneratedUID"][0])
    fake.edit(make_admin)
    fake.clear_calls()

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["changed"] is True
    assert result["admin_removed"] is True
    assert result["actions"] == ["remove agent from admin"]
    assert any("agent was a member of the admin group" in warning for warning in result["warnings"])
    assert fake.writes() == [("dseditgroup", ["-o", "edit", "-d", "agent", "-t", "user", "admin"])]
    admin = fake.state()["groups"]["admin"]
    assert admin["GroupMembership"] == ["root", "alice"]
    assert guid("users", "agent") not in admin["GroupMembers"]


def test_admin_through_a_nested_group_fails_loudly(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)

    def nest(state):
        state["groups"]["helpers"] = group("helpers", 710, ["agent"])
        state["groups"]["admin"]["NestedGroups"] = [guid("groups", "helpers")]
    fake.edit(nest)

    # append: with an exact list the module would drop agent from helpers first.
    result, failed = run(monkeypatch, dict(agent_args, append=True))

    assert failed
    assert "still a member of admin" in result["msg"]


def test_uid_range_exhausted_fails_before_any_write(monkeypatch, fake, agent_args):
    fake.edit(lambda state: state["users"].update(a=user("a", 600, 20), b=user("b", 601, 20)))
    before = fake.state()

    result, failed = run(monkeypatch, dict(agent_args, uid_range=[600, 601]))

    assert failed
    assert "No free uid in uid_range [600, 601]" in result["msg"]
    assert fake.writes() == []
    assert fake.state() == before


def test_lowest_free_uid_is_taken_not_max_plus_one(monkeypatch, fake, agent_args):
    fake.edit(lambda state: state["users"].update(a=user("a", 600, 20), c=user("c", 602, 20)))

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["uid"] == 601


def test_existing_user_with_another_uid_is_not_renumbered(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.clear_calls()

    result, failed = run(monkeypatch, dict(agent_args, uid=650))

    assert failed
    assert "exists with uid 600, not the requested 650" in result["msg"]
    assert fake.writes() == []


def test_explicit_uid_of_another_user_is_refused(monkeypatch, fake, agent_args):
    result, failed = run(monkeypatch, dict(agent_args, uid=501))

    assert failed
    assert "uid 501 is already used by user alice" in result["msg"]
    assert fake.writes() == []
    assert "agent" not in fake.state()["users"]


def test_explicit_uid_is_pinned(monkeypatch, fake, agent_args):
    result, failed = run(monkeypatch, dict(agent_args, uid=642))

    assert not failed, result
    assert fake.state()["users"]["agent"]["UniqueID"] == ["642"]


@pytest.mark.parametrize("change, message", [
    (dict(primary_group_id=80), "would be admin (gid 80) while admin is false"),
    (dict(primary_group_id=4242), "No local group has gid 4242"),
    (dict(primary_group_id=None), "primary_group_id is required to create user agent"),
    (dict(groups=["agent-share", "admin"]), "groups lists admin while admin is false"),
    (dict(groups=["nosuch"]), "No local group named nosuch"),
    (dict(name="-rf"), "is not a usable user name"),
    (dict(uid=0), "uid must be a positive integer"),
    (dict(uid_range=[0, 10]), "uid_range must satisfy 1 <= min <= max"),
])
def test_bad_input_fails_before_any_write(monkeypatch, fake, agent_args, change, message):
    result, failed = run(monkeypatch, dict(agent_args, **change))

    assert failed
    assert message in result["msg"]
    assert fake.writes() == []


def test_check_mode_create_writes_nothing(monkeypatch, fake, agent_args):
    before = fake.state()

    result, failed = run(monkeypatch, agent_args, check_mode=True, diff=True)

    assert not failed, result
    assert result["changed"] is True
    assert result["uid"] == 600
    assert result["actions"][0] == "create user agent"
    assert "create home directory %s" % agent_args["home"] in result["actions"]
    assert fake.writes() == []
    assert fake.state() == before
    assert not os.path.exists(agent_args["home"])
    assert result["diff"]["after"]["state"] == "present"


def test_check_mode_update_writes_nothing(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(lambda state: state["groups"]["admin"]["GroupMembership"].append("agent"))
    fake.clear_calls()
    before = fake.state()

    result, failed = run(monkeypatch, dict(agent_args, shell="/bin/bash"), check_mode=True)

    assert not failed, result
    assert result["changed"] is True
    assert result["actions"] == ["set UserShell of agent to /bin/bash", "remove agent from admin"]
    assert result["admin_removed"] is True
    assert any("would be removed" in warning for warning in result["warnings"])
    assert fake.writes() == []
    assert fake.state() == before


def test_password_material_is_removed_and_never_reported(monkeypatch, fake):
    args = dict(name="alice", password_locked=True, admin=True, create_home=False)

    result, failed = run(monkeypatch, args, diff=True)

    assert not failed, result
    assert result["actions"] == ["set Password of alice to *", "remove AuthenticationAuthority of alice",
                                 "remove ShadowHashData of alice"]
    alice = fake.state()["users"]["alice"]
    assert alice["Password"] == ["*"]
    assert "AuthenticationAuthority" not in alice and "dsAttrTypeNative:ShadowHashData" not in alice
    assert result["diff"]["before"]["password_locked"] is False
    assert result["diff"]["after"]["password_locked"] is True
    assert "62706c6973743030" not in json.dumps(result)


def test_exact_groups_remove_others_and_append_keeps_them(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(lambda state: state["groups"].update(extra=group("extra", 720, ["agent"])))

    result, _failed = run(monkeypatch, dict(agent_args, append=True))
    assert result["changed"] is False

    result, _failed = run(monkeypatch, agent_args)
    assert result["actions"] == ["remove agent from extra"]
    assert "GroupMembership" not in fake.state()["groups"]["extra"]


def test_delete_leaves_no_membership_behind(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(lambda state: state["groups"]["admin"]["GroupMembership"].append("agent"))
    fake.clear_calls()

    result, failed = run(monkeypatch, dict(name="agent", state="absent"), diff=True)

    assert not failed, result
    assert result["changed"] is True
    assert fake.writes() == [
        PROBE,
        ("dseditgroup", ["-o", "edit", "-d", "agent", "-t", "user", "admin"]),
        ("dseditgroup", ["-o", "edit", "-d", "agent", "-t", "user", "agent-share"]),
        ("dscl", [".", "-delete", "/Users/agent"]),
    ]
    state = fake.state()
    assert "agent" not in state["users"]
    assert all("agent" not in info.get("GroupMembership", []) for info in state["groups"].values())
    assert os.path.isdir(agent_args["home"]), "the home is kept unless remove_home is set"
    assert result["diff"]["after"] == {"name": "agent", "state": "absent"}

    result, _failed = run(monkeypatch, dict(name="agent", state="absent"))
    assert result["changed"] is False


def test_delete_removes_the_home_only_when_the_user_owns_it(monkeypatch, fake, agent_args, tmp_path):
    # As root the stand-in gives the home to uid 600; otherwise the user gets the runner's uid.
    uid = 600 if os.getuid() == 0 else os.getuid()
    run(monkeypatch, dict(agent_args, uid=uid, uid_range=[min(uid, 600), max(uid, 699)]))
    elsewhere = tmp_path / "not-theirs"  # owned by the test runner, not by uid 4321
    elsewhere.mkdir()
    fake.edit(lambda state: state["users"].update(other=user("other", 4321, 20, NFSHomeDirectory=[str(elsewhere)])))

    result, failed = run(monkeypatch, dict(name="agent", state="absent", remove_home=True))
    assert not failed, result
    assert "remove home directory %s" % agent_args["home"] in result["actions"]
    assert not os.path.exists(agent_args["home"])

    result, failed = run(monkeypatch, dict(name="other", state="absent", remove_home=True))
    assert not failed, result
    assert os.path.isdir(str(elsewhere))
    assert any("Not removing %s" % elsewhere in warning for warning in result["warnings"])


def test_root_is_never_deleted(monkeypatch, fake):
    result, failed = run(monkeypatch, dict(name="root", state="absent"))

    assert failed
    assert "uid is 0" in result["msg"]
    assert fake.writes() == []


def test_a_refused_write_fails_with_the_command_and_what_to_do(monkeypatch, fake, agent_args):
    # A node that refuses every write (not root) already refuses the probe.
    monkeypatch.setenv("DSCL_FAKE_READONLY", "1")

    result, failed = run(monkeypatch, agent_args)

    assert failed
    assert result["rc"] == 40
    assert result["cmd"][1:] == PROBE[1]
    assert "eDSPermissionError" in result["stderr"]
    assert "Probing for Full Disk Access (writing the home of nobody over itself) was refused" in result["msg"]
    assert "agent" not in fake.state()["users"]


# Exact ordered argv, with a scripted run_command.

def list_users(*rows):
    return (0, "".join("%-24s %s\n" % row for row in rows), "")


GROUPS_PLIST = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<array>
%s</array>
</plist>
"""


def groups_plist(*groups):
    items = []
    for name, gid, members in groups:
        entry = "\t<dict>\n"
        if members:
            entry += "\t\t<key>dsAttrTypeStandard:GroupMembership</key>\n\t\t<array>\n%s\t\t</array>\n" % "".join(
                "\t\t\t<string>%s</string>\n" % member for member in members)
        entry += ("\t\t<key>dsAttrTypeStandard:PrimaryGroupID</key>\n\t\t<array>\n\t\t\t<string>%d</string>\n"
                  "\t\t</array>\n\t\t<key>dsAttrTypeStandard:RecordName</key>\n\t\t<array>\n"
                  "\t\t\t<string>%s</string>\n\t\t</array>\n\t</dict>\n" % (gid, name))
        items.append(entry)
    return (0, GROUPS_PLIST % "".join(items), "")


def agent_plist(home):
    keys = [("NFSHomeDirectory", home), ("Password", "*"), ("PrimaryGroupID", "600"), ("RealName", "Agent User"),
            ("RecordName", "agent"), ("UniqueID", "600"), ("UserShell", "/bin/zsh")]
    body = "".join("\t<key>dsAttrTypeStandard:%s</key>\n\t<array>\n\t\t<string>%s</string>\n\t</array>\n" % key
                   for key in keys)
    body += "\t<key>dsAttrTypeNative:IsHidden</key>\n\t<array>\n\t\t<string>1</string>\n\t</array>\n"
    return (0, GROUPS_PLIST.replace("<array>\n%s</array>", "<dict>\n%s</dict>") % body, "")


READ = [DSCL, "-plist", ".", "-read", "/Users/agent"]
PROBE_READ = ([DSCL, "-plist", ".", "-read", "/Users/nobody", "NFSHomeDirectory"],
              (0, GROUPS_PLIST.replace("<array>\n%s</array>", "<dict>\n%s</dict>")
               % "\t<key>dsAttrTypeStandard:NFSHomeDirectory</key>\n\t<array>\n\t\t<string>/var/empty</string>\n"
                 "\t</array>\n", ""))
PROBE_CHANGE = ([DSCL, ".", "-change", "/Users/nobody", "NFSHomeDirectory", "/var/empty", "/var/empty"], OK)
READALL = [DSCL, "-plist", ".", "-readall", "/Groups", "RecordName", "PrimaryGroupID", "GroupMembership"]
LIST = [DSCL, ".", "-list", "/Users", "UniqueID"]
GROUPS = groups_plist(("admin", 80, ["root", "alice"]), ("agent", 600, []), ("agent-share", 700, []),
                      ("staff", 20, ["root"]))


def create(*rest):
    return [DSCL, ".", "-create", "/Users/agent"] + list(rest)


def test_create_runs_exactly_these_commands_in_order(monkeypatch, agent_args):
    home = agent_args["home"]

    def createhomedir():
        os.makedirs(home)  # what the real tool does; the module checks for it afterwards
        return OK

    script = ScriptedRunCommand(monkeypatch, [
        (READ, NOT_FOUND),
        (READALL, GROUPS),
        (LIST, list_users(("alice", 501), ("root", 0))),
        (LIST, list_users(("alice", 501), ("root", 0))),
        PROBE_READ,
        PROBE_CHANGE,
        (create(), OK),
        (create("IsHidden", "1"), OK),
        (create("Password", "*"), OK),
        (create("UniqueID", "600"), OK),
        (create("PrimaryGroupID", "600"), OK),
        (create("UserShell", "/bin/zsh"), OK),
        (create("NFSHomeDirectory", home), OK),
        (create("RealName", "Agent User"), OK),
        ([DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"], OK),
        ([CREATEHOMEDIR, "-c", "-l", "-u", "agent"], createhomedir),
        ([DSEDITGROUP, "-o", "checkmember", "-m", "agent", "admin"], NOT_ADMIN),
    ])

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    script.done()
    assert all(env == {"LANG": "C", "LC_ALL": "C"} for env in script.environ)


def test_createhomedir_that_makes_nothing_is_an_error(monkeypatch, agent_args):
    script = ScriptedRunCommand(monkeypatch, [
        (READ, NOT_FOUND),
        (READALL, GROUPS),
        (LIST, list_users(("alice", 501))),
        (LIST, list_users(("alice", 501))),
        PROBE_READ,
        PROBE_CHANGE,
    ] + [(argv, OK) for argv in (
        create(), create("IsHidden", "1"), create("Password", "*"), create("UniqueID", "600"),
        create("PrimaryGroupID", "600"), create("UserShell", "/bin/zsh"),
        create("NFSHomeDirectory", agent_args["home"]), create("RealName", "Agent User"),
        [DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"],
        [CREATEHOMEDIR, "-c", "-l", "-u", "agent"])])

    result, failed = run(monkeypatch, agent_args)

    assert failed
    assert "createhomedir ran but %s does not exist (exit status 0)" % agent_args["home"] in result["msg"]
    script.done()


def test_createhomedir_that_fails_and_makes_nothing_is_an_error_with_its_status(monkeypatch, agent_args):
    writes = [create(), create("IsHidden", "1"), create("Password", "*"), create("UniqueID", "600"),
              create("PrimaryGroupID", "600"), create("UserShell", "/bin/zsh"),
              create("NFSHomeDirectory", agent_args["home"]), create("RealName", "Agent User"),
              [DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"]]
    ScriptedRunCommand(monkeypatch, [(READ, NOT_FOUND), (READALL, GROUPS), (LIST, list_users(("alice", 501))),
                                     (LIST, list_users(("alice", 501))), PROBE_READ, PROBE_CHANGE]
                       + [(argv, OK) for argv in writes]
                       + [([CREATEHOMEDIR, "-c", "-l", "-u", "agent"], (1, "", "createhomedir: cannot create\n"))])

    result, failed = run(monkeypatch, agent_args)

    assert failed
    assert "createhomedir ran but %s does not exist (exit status 1)" % agent_args["home"] in result["msg"]
    assert result["rc"] == 1 and result["stderr"] == "createhomedir: cannot create\n"


def test_create_without_home_skips_createhomedir(monkeypatch, agent_args):
    script = ScriptedRunCommand(monkeypatch, [
        (READ, NOT_FOUND),
        (READALL, GROUPS),
        (LIST, list_users(("alice", 501), ("root", 0))),
        (LIST, list_users(("alice", 501), ("root", 0))),
        PROBE_READ,
        PROBE_CHANGE,
        (create(), OK),
        (create("IsHidden", "1"), OK),
        (create("Password", "*"), OK),
        (create("UniqueID", "600"), OK),
        (create("PrimaryGroupID", "600"), OK),
        (create("UserShell", "/bin/zsh"), OK),
        (create("NFSHomeDirectory", agent_args["home"]), OK),
        (create("RealName", "Agent User"), OK),
        ([DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"], OK),
        ([DSEDITGROUP, "-o", "checkmember", "-m", "agent", "admin"], NOT_ADMIN),
    ])

    result, failed = run(monkeypatch, dict(agent_args, create_home=False))

    assert not failed, result
    script.done()


def test_uid_claimed_between_listings_is_not_reused(monkeypatch, agent_args):
    script = ScriptedRunCommand(monkeypatch, [
        (READ, NOT_FOUND),
        (READALL, GROUPS),
        (LIST, list_users(("alice", 501))),
        (LIST, list_users(("alice", 501), ("racer", 600))),
        PROBE_READ,
        PROBE_CHANGE,
        (create(), OK),
        (create("IsHidden", "1"), OK),
        (create("Password", "*"), OK),
        (create("UniqueID", "601"), OK),
        (create("PrimaryGroupID", "600"), OK),
        (create("UserShell", "/bin/zsh"), OK),
        (create("NFSHomeDirectory", agent_args["home"]), OK),
        (create("RealName", "Agent User"), OK),
        ([DSEDITGROUP, "-o", "edit", "-a", "agent", "-t", "user", "agent-share"], OK),
        ([DSEDITGROUP, "-o", "checkmember", "-m", "agent", "admin"], NOT_ADMIN),
    ])

    result, failed = run(monkeypatch, dict(agent_args, create_home=False))

    assert not failed, result
    assert result["uid"] == 601
    script.done()


def test_check_mode_runs_reads_only(monkeypatch, agent_args):
    script = ScriptedRunCommand(monkeypatch, [
        (READ, NOT_FOUND),
        (READALL, GROUPS),
        (LIST, list_users(("alice", 501))),
    ])

    result, failed = run(monkeypatch, agent_args, check_mode=True)

    assert not failed, result
    assert result["changed"] is True
    script.done()


def test_unchanged_user_runs_reads_only(monkeypatch, agent_args, tmp_path):
    os.makedirs(agent_args["home"])
    script = ScriptedRunCommand(monkeypatch, [
        (READ, agent_plist(agent_args["home"])),
        (READALL, groups_plist(("admin", 80, ["root"]), ("agent", 600, []), ("agent-share", 700, ["agent"]))),
        ([DSEDITGROUP, "-o", "checkmember", "-m", "agent", "admin"], NOT_ADMIN),
    ])

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["changed"] is False
    script.done()


def test_delete_runs_exactly_these_commands(monkeypatch, agent_args):
    script = ScriptedRunCommand(monkeypatch, [
        (READ, agent_plist(agent_args["home"])),
        (READALL, groups_plist(("admin", 80, ["root"]), ("agent-share", 700, ["agent", "alice"]))),
        PROBE_READ,
        PROBE_CHANGE,
        ([DSEDITGROUP, "-o", "edit", "-d", "agent", "-t", "user", "agent-share"], OK),
        ([DSCL, ".", "-delete", "/Users/agent"], OK),
    ])

    result, failed = run(monkeypatch, dict(name="agent", state="absent"))

    assert not failed, result
    script.done()


# Full Disk Access (TCC's SystemPolicySysAdminFiles): without it macOS refuses a user's
# NFSHomeDirectory and the deletion of a user record (tests/unit/fixtures/dscl/README.md).

PROBE = ("dscl", [".", "-change", "/Users/nobody", "NFSHomeDirectory", "/var/empty", "/var/empty"])


def deny_full_disk_access(state):
    state["full_disk_access"] = False


def assert_names_full_disk_access(msg):
    assert "Full Disk Access" in msg
    assert "System Settings > Privacy & Security > Full Disk Access" in msg
    assert "Allow full disk access for remote users" in msg


def test_without_full_disk_access_no_user_is_made(monkeypatch, fake, agent_args):
    fake.edit(deny_full_disk_access)
    before = fake.state()

    result, failed = run(monkeypatch, agent_args)

    assert failed
    assert_names_full_disk_access(result["msg"])
    assert result["rc"] == 40 and "eDSPermissionError" in result["stderr"]
    # The probe writes nobody's home over itself, and nothing else is written.
    assert fake.writes() == [PROBE]
    assert fake.state() == before
    assert not os.path.exists(agent_args["home"])


def test_without_full_disk_access_a_user_is_not_half_deleted(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(deny_full_disk_access)
    fake.clear_calls()
    before = fake.state()

    result, failed = run(monkeypatch, dict(name="agent", state="absent"))

    assert failed
    assert_names_full_disk_access(result["msg"])
    assert fake.writes() == [PROBE]
    assert fake.state() == before, "the memberships stay until the record can go"


def test_check_mode_does_not_probe(monkeypatch, fake, agent_args):
    fake.edit(deny_full_disk_access)

    result, failed = run(monkeypatch, agent_args, check_mode=True)

    assert not failed, result
    assert result["actions"][0] == "create user agent"
    assert fake.writes() == []


def test_an_unchanged_user_needs_no_probe(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(deny_full_disk_access)
    fake.clear_calls()

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert result["changed"] is False
    assert fake.writes() == []


def test_an_attribute_change_that_needs_no_full_disk_access_is_not_probed(monkeypatch, fake, agent_args):
    run(monkeypatch, agent_args)
    fake.edit(deny_full_disk_access)
    fake.clear_calls()

    result, failed = run(monkeypatch, dict(agent_args, shell="/bin/bash"))

    assert not failed, result
    assert fake.writes() == [("dscl", [".", "-create", "/Users/agent", "UserShell", "/bin/bash"])]


def test_a_home_change_without_full_disk_access_is_refused_before_any_write(monkeypatch, fake, agent_args, tmp_path):
    run(monkeypatch, agent_args)
    fake.edit(deny_full_disk_access)
    fake.clear_calls()

    result, failed = run(monkeypatch, dict(agent_args, home=str(tmp_path / "elsewhere"), shell="/bin/bash"))

    assert failed
    assert_names_full_disk_access(result["msg"])
    assert fake.writes() == [PROBE]


def test_a_refused_write_after_the_probe_names_full_disk_access_and_leaves_a_hidden_user(monkeypatch, fake, agent_args):
    # Without a nobody record there is nothing to probe: the first write macOS keeps for Full
    # Disk Access is then refused mid-run, and what was made by then is hidden.
    fake.edit(lambda state: (deny_full_disk_access(state), state["users"].pop("nobody")))

    result, failed = run(monkeypatch, agent_args)

    assert failed
    assert_names_full_disk_access(result["msg"])
    assert result["rc"] == 40
    assert result["cmd"][1:] == [".", "-create", "/Users/agent", "NFSHomeDirectory", agent_args["home"]]
    assert any("cannot probe" in warning for warning in result["warnings"])
    agent = fake.state()["users"]["agent"]
    assert agent["dsAttrTypeNative:IsHidden"] == ["1"]
    assert agent["Password"] == ["*"]
    writes = fake.writes()
    assert writes[:2] == [("dscl", [".", "-create", "/Users/agent"]),
                          ("dscl", [".", "-create", "/Users/agent", "IsHidden", "1"])]


def test_createhomedir_that_exits_non_zero_but_made_the_home_is_a_warning(monkeypatch, fake, agent_args):
    fake.edit(lambda state: state.update(createhomedir_status=1))

    result, failed = run(monkeypatch, agent_args)

    assert not failed, result
    assert os.path.isdir(agent_args["home"])
    assert any("createhomedir exited with status 1" in warning and "home exists" in warning
               for warning in result["warnings"])

    # Run again: the home is there, createhomedir is not run, no warning.
    fake.clear_calls()
    result, failed = run(monkeypatch, agent_args)
    assert not failed and not result.get("warnings")
    assert [call for call in fake.calls() if call[0] == "createhomedir"] == []
