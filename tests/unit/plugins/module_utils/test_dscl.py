# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_dscl parsers and command builders, on the format samples in tests/unit/fixtures/dscl;
and the stand-ins in tests/unit/fakes print those same samples for the same records."""

from __future__ import annotations

import json
import os
import pathlib
import plistlib
import subprocess
import sys

import pytest

from ansible_collections.agent_sandbox.native.plugins.module_utils import _dscl

UNIT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = UNIT / "fixtures" / "dscl"
FAKES = UNIT / "fakes"


def sample(name):
    return (FIXTURES / name).read_text()


def test_user_record_is_parsed_with_short_keys_and_no_secret():
    record = _dscl.parse_record(sample("read_user_alice.plist"))

    assert record["UniqueID"] == ["501"]
    assert record["RealName"] == ["Alice Example"]
    assert record["_writers_passwd"] == ["alice"]
    assert len(record["AuthenticationAuthority"]) == 3
    assert record["ShadowHashData"] == [_dscl.REDACTED]
    assert "62706c69" not in json.dumps(record)


def test_user_view_reports_managed_attributes_only():
    record = _dscl.parse_record(sample("read_user_alice.plist"))
    table = _dscl.group_table(_dscl.parse_records(sample("readall_groups.plist")))

    assert _dscl.user_view("alice", record, table) == {
        "name": "alice", "state": "present", "uid": 501, "primary_group_id": 20, "shell": "/bin/zsh",
        "home": "/Users/alice", "real_name": "Alice Example", "hidden": False, "password_locked": False,
        "groups": ["admin"], "admin": True,
    }
    assert _dscl.user_view("agent", None, table) == {"name": "agent", "state": "absent"}


def test_group_table_from_readall():
    table = _dscl.group_table(_dscl.parse_records(sample("readall_groups.plist")))

    assert table["admin"] == {"gid": 80, "members": ["root", "alice"]}
    assert table["everyone"] == {"gid": 12, "members": []}
    assert _dscl.groups_of("root", table) == ["admin", "staff", "wheel"]


def test_id_listing_is_parsed_including_negative_ids():
    ids = _dscl.parse_id_list(sample("list_users_uniqueid.txt"))

    assert ids["_amavisd"] == 83
    assert ids["nobody"] == -2
    assert ids["root"] == 0
    assert len(ids) == 8


def test_id_listing_tolerates_a_record_without_the_key_and_rejects_garbage():
    assert _dscl.parse_id_list("orphan\nalice                    501\n") == {"alice": 501}
    with pytest.raises(_dscl.DsclError, match="non-numeric id 'x5'"):
        _dscl.parse_id_list("alice                    x5\n")


def test_unparsable_plist_raises_without_repeating_the_text():
    with pytest.raises(_dscl.DsclError) as caught:
        _dscl.parse_record("<plist><dict><key>dsAttrTypeNative:ShadowHashData</key>SECRET")
    assert "SECRET" not in caught.value.msg


@pytest.mark.parametrize("record, locked", [
    ({"Password": ["*"]}, True),
    ({"Password": ["********"]}, False),
    ({"Password": ["*"], "AuthenticationAuthority": [";ShadowHash;"]}, False),
    ({"Password": ["*"], "ShadowHashData": [_dscl.REDACTED]}, False),
    ({}, False),
])
def test_password_locked(record, locked):
    assert _dscl.password_locked(record) is locked


@pytest.mark.parametrize("taken, expected", [
    ({"a": 600, "b": 601, "c": 603}, 602),
    ({}, 600),
    ({"a": 600, "b": 601, "c": 602, "d": 603}, None),
    ({"x": 9999}, 600),
])
def test_lowest_free_never_walks_past_the_range(taken, expected):
    assert _dscl.lowest_free(set(taken.values()), 600, 603) == expected


def test_pick_id_refuses_an_id_of_another_record_and_a_full_range():
    taken = {"alice": 501, "agent": 600}
    assert _dscl.pick_id(taken, 600, (600, 699), "agent", "uid", "user", "uid_range") == 600
    assert _dscl.pick_id(taken, None, (600, 699), "new", "uid", "user", "uid_range") == 601
    with pytest.raises(_dscl.DsclError, match="uid 501 is already used by user alice"):
        _dscl.pick_id(taken, 501, (600, 699), "agent", "uid", "user", "uid_range")
    with pytest.raises(_dscl.DsclError, match=r"No free uid in uid_range \[600, 600\]"):
        _dscl.pick_id(taken, None, (600, 600), "new", "uid", "user", "uid_range")


@pytest.mark.parametrize("name", ["", "-rf", "a/b", "agent user", "../x", ".hidden", "x" * 245, None])
def test_names_that_cannot_go_into_argv_or_a_path_are_refused(name):
    with pytest.raises(_dscl.DsclError):
        _dscl.validate_name(name)


@pytest.mark.parametrize("name", ["agent", "_agent", "agent-proxy", "agent.2", "A1"])
def test_usable_names(name):
    assert _dscl.validate_name(name) == name


def test_account_view_reads_the_account_keys_only():
    record = _dscl.parse_record(sample("read_user_alice_account.plist"))

    assert sorted(record) == sorted(_dscl.ACCOUNT_KEYS)
    assert _dscl.account_view(record) == {
        "name": "alice", "uid": 501, "gid": 20, "home": "/Users/alice", "shell": "/bin/zsh"}
    assert _dscl.account_view({"RecordName": ["x"]}) == {"name": "x", "uid": None, "gid": None, "home": None,
                                                         "shell": None}


def test_account_table_keys_each_record_by_its_first_name():
    records = [{"RecordName": ["root", "BUILTIN\\Local System"], "UniqueID": ["0"], "PrimaryGroupID": ["0"]},
               {"RecordName": ["nobody"], "UniqueID": ["-2"]}, {"UniqueID": ["9"]}]

    table = _dscl.account_table(records)

    assert sorted(table) == ["nobody", "root"]
    assert table["nobody"]["uid"] == -2
    with pytest.raises(_dscl.DsclError, match="non-numeric UniqueID"):
        _dscl.account_table([{"RecordName": ["bad"], "UniqueID": ["x"]}])


def test_group_names_from_id_are_sorted_and_unique():
    assert _dscl.parse_group_names(sample("id_Gn_alice.txt")) == ["admin", "everyone", "staff"]
    assert _dscl.parse_group_names("staff 1234 staff\n") == ["1234", "staff"]
    assert _dscl.parse_group_names("") == []


def test_command_builders():
    assert _dscl.read_argv("dscl", _dscl.USERS, "agent") == ["dscl", "-plist", ".", "-read", "/Users/agent"]
    assert _dscl.read_argv("dscl", _dscl.USERS, "agent", _dscl.ACCOUNT_KEYS) == [
        "dscl", "-plist", ".", "-read", "/Users/agent", "UniqueID", "PrimaryGroupID", "NFSHomeDirectory", "UserShell",
        "RecordName"]
    assert _dscl.readall_users_argv("dscl") == [
        "dscl", "-plist", ".", "-readall", "/Users", "RecordName", "UniqueID", "PrimaryGroupID", "NFSHomeDirectory",
        "UserShell"]
    assert _dscl.id_groups_argv("id", "agent") == ["id", "-Gn", "agent"]
    assert _dscl.list_argv("dscl", _dscl.USERS, "UniqueID") == ["dscl", ".", "-list", "/Users", "UniqueID"]
    assert _dscl.create_argv("dscl", _dscl.USERS, "agent", "RealName", "Agent User") == [
        "dscl", ".", "-create", "/Users/agent", "RealName", "Agent User"]
    assert _dscl.create_argv("dscl", _dscl.GROUPS, "g", "PrimaryGroupID", 700)[-1] == "700"
    assert _dscl.delete_argv("dscl", _dscl.USERS, "agent", "IsHidden") == [
        "dscl", ".", "-delete", "/Users/agent", "IsHidden"]
    assert _dscl.membership_argv("dseditgroup", False, "agent", "admin") == [
        "dseditgroup", "-o", "edit", "-d", "agent", "-t", "user", "admin"]
    assert _dscl.checkmember_argv("dseditgroup", "agent", "admin") == [
        "dseditgroup", "-o", "checkmember", "-m", "agent", "admin"]
    assert _dscl.createhomedir_argv("createhomedir", "agent") == ["createhomedir", "-c", "-l", "-u", "agent"]


# The stand-ins print what the samples show.

@pytest.fixture
def fake_dir(tmp_path):
    """A stand-in state holding exactly the records of the samples."""
    alice = plistlib.loads(sample("read_user_alice.plist").encode())
    alice = {key.replace("dsAttrTypeStandard:", ""): value for key, value in alice.items()
             if key not in ("dsAttrTypeStandard:AppleMetaNodeLocation", "dsAttrTypeStandard:RecordType")}
    users = {"alice": alice}
    for name, uid in _dscl.parse_id_list(sample("list_users_uniqueid.txt")).items():
        users.setdefault(name, {"RecordName": [name], "UniqueID": [str(uid)], "GeneratedUID": ["G-%s" % name]})
    groups = {}
    for record in plistlib.loads(sample("readall_groups.plist").encode()):
        record = {key.replace("dsAttrTypeStandard:", ""): value for key, value in record.items()}
        record["GeneratedUID"] = ["G-%s" % record["RecordName"][0]]
        groups[record["RecordName"][0]] = record
    (tmp_path / "directory.json").write_text(json.dumps({"users": users, "groups": groups}))
    return tmp_path


def fake(state_dir, tool, *args):
    env = dict(os.environ, DSCL_FAKE_STATE=str(state_dir),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([str(FAKES / tool)] + list(args), capture_output=True, text=True, env=env, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args, name", [
    (["-plist", ".", "-read", "/Users/alice"], "read_user_alice.plist"),
    (["-plist", ".", "-read", "/Users/alice"] + list(_dscl.ACCOUNT_KEYS), "read_user_alice_account.plist"),
    ([".", "-read", "/Users/alice"], "read_user_alice.txt"),
    (["-plist", ".", "-readall", "/Groups", "RecordName", "PrimaryGroupID", "GroupMembership"], "readall_groups.plist"),
    ([".", "-list", "/Users", "UniqueID"], "list_users_uniqueid.txt"),
])
def test_fake_dscl_prints_the_samples(fake_dir, args, name):
    assert fake(fake_dir, "dscl", *args) == (0, sample(name), "")


def test_fake_dscl_reports_a_missing_record_like_dscl(fake_dir):
    assert fake(fake_dir, "dscl", ".", "-read", "/Users/nosuch") == (56, "", sample("record_not_found.stderr"))


def without_full_disk_access(state_dir):
    state = json.loads((state_dir / "directory.json").read_text())
    state["full_disk_access"] = False
    (state_dir / "directory.json").write_text(json.dumps(state))


def test_fake_dscl_without_full_disk_access_refuses_a_home_write_like_dscl(fake_dir):
    before = (fake_dir / "directory.json").read_text()
    without_full_disk_access(fake_dir)
    refused = (40, "", sample("permission_error_attribute.stderr"))

    assert fake(fake_dir, "dscl", ".", "-create", "/Users/alice", "NFSHomeDirectory", "/Users/other") == refused
    assert fake(fake_dir, "dscl", ".", "-change", "/Users/alice", "NFSHomeDirectory", "/Users/alice",
                "/Users/alice") == refused
    assert fake(fake_dir, "dscl", ".", "-delete", "/Users/alice") == (40, "", sample("permission_error_delete.stderr"))
    state = json.loads((fake_dir / "directory.json").read_text())
    assert json.loads(before)["users"] == state["users"]
    # The control: what macOS does not keep for Full Disk Access still goes through.
    assert fake(fake_dir, "dscl", ".", "-create", "/Users/alice", "UserShell", "/bin/bash") == (0, "", "")
    assert fake(fake_dir, "dscl", ".", "-create", "/Groups/other")[0] == 0


def test_fake_dscl_change_replaces_one_value(fake_dir):
    assert fake(fake_dir, "dscl", ".", "-change", "/Users/alice", "UserShell", "/bin/zsh", "/bin/bash") == (0, "", "")
    assert "UserShell: /bin/bash\n" in fake(fake_dir, "dscl", ".", "-read", "/Users/alice", "UserShell")[1]
    assert fake(fake_dir, "dscl", ".", "-change", "/Users/alice", "UserShell", "/bin/zsh", "/bin/sh")[0] == 54


def test_fake_dseditgroup_checkmember_answers_like_dseditgroup(fake_dir):
    assert fake(fake_dir, "dseditgroup", "-o", "checkmember", "-m", "alice", "admin") == (
        0, sample("checkmember_yes.txt"), "")
    state = json.loads((fake_dir / "directory.json").read_text())
    state["users"]["agent"] = {"RecordName": ["agent"], "UniqueID": ["600"], "GeneratedUID": ["G-agent"]}
    (fake_dir / "directory.json").write_text(json.dumps(state))
    assert fake(fake_dir, "dseditgroup", "-o", "checkmember", "-m", "agent", "admin") == (
        67, sample("checkmember_no.txt"), "")


def test_fake_id_lists_the_groups_like_id(fake_dir):
    assert fake(fake_dir, "id", "-Gn", "alice") == (0, sample("id_Gn_alice.txt"), "")
    assert fake(fake_dir, "id", "-Gn", "nosuch") == (1, "", sample("id_no_such_user.stderr"))


def test_fake_id_follows_nested_groups_and_a_primary_gid_without_a_group(fake_dir):
    state = json.loads((fake_dir / "directory.json").read_text())
    state["users"]["agent"] = {"RecordName": ["agent"], "UniqueID": ["600"], "PrimaryGroupID": ["600"],
                               "GeneratedUID": ["G-agent"]}
    state["groups"]["agent-share"]["GroupMembership"] = ["agent"]
    state["groups"]["admin"]["NestedGroups"] = ["G-agent-share"]
    (fake_dir / "directory.json").write_text(json.dumps(state))

    assert fake(fake_dir, "id", "-Gn", "agent") == (0, "600 everyone admin agent-share\n", "")
