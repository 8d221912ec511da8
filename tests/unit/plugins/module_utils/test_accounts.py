# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_accounts: the Linux reader against the real user and group databases of the test process
(with the id and getent of this system as the oracle), and the shapes both readers share."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess

import pytest

from ansible_collections.agent_sandbox.native.plugins.module_utils import _accounts, _dscl

MISSING = "hacct-no-such-account"


def tool(*argv):
    if shutil.which(argv[0]) is None:
        pytest.skip("%s is not installed" % argv[0])
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=dict(os.environ, LANG="C"))
    return proc.returncode, proc.stdout


def test_root_is_described_as_id_and_getent_show_it():
    accounts = _accounts.LinuxAccounts()

    root = _accounts.describe_user(accounts, "root")

    _rc, passwd = tool("getent", "passwd", "root")
    fields = passwd.strip().split(":")
    assert root == {
        "name": "root", "exists": True, "uid": 0, "gid": int(fields[3]), "group": grp.getgrgid(int(fields[3])).gr_name,
        "home": fields[5], "shell": fields[6], "groups": sorted(set(tool("id", "-Gn", "root")[1].split())),
    }


def test_the_groups_of_a_user_include_the_primary_and_the_supplementary_ones():
    # The test process's own account: in a container often root alone, on a workstation many groups.
    me = pwd.getpwuid(os.getuid()).pw_name

    described = _accounts.describe_user(_accounts.LinuxAccounts(), me)

    assert described["groups"] == sorted(set(tool("id", "-Gn", me)[1].split()))
    assert described["group"] in described["groups"]


def test_supplementary_groups_agree_with_id_for_every_listed_member():
    listed = sorted({member for entry in grp.getgrall() for member in entry.gr_mem} & {e.pw_name for e in pwd.getpwall()})
    if not listed:
        pytest.skip("no user on this system is listed as a member of a group")
    accounts = _accounts.LinuxAccounts()

    for name in listed:
        described = _accounts.describe_user(accounts, name)
        assert described["groups"] == sorted(set(tool("id", "-Gn", name)[1].split())), name
        assert len(described["groups"]) > 1, name


def test_a_missing_user_and_group_are_reported_not_raised():
    accounts = _accounts.LinuxAccounts()

    assert tool("id", "-u", MISSING)[0] != 0
    assert _accounts.describe_user(accounts, MISSING) == {
        "name": MISSING, "exists": False, "uid": None, "gid": None, "group": None, "home": None, "shell": None,
        "groups": []}
    assert _accounts.describe_group(accounts, MISSING) == {"name": MISSING, "exists": False, "gid": None, "members": []}


def test_a_group_is_described_as_getent_shows_it():
    rc, line = tool("getent", "group", "root")
    assert rc == 0
    name, _password, gid, members = line.strip().split(":")

    assert _accounts.describe_group(_accounts.LinuxAccounts(), "root") == {
        "name": name, "exists": True, "gid": int(gid), "members": sorted(filter(None, members.split(",")))}


def test_every_account_is_listed():
    accounts = _accounts.LinuxAccounts()

    users, groups = accounts.all_users(), accounts.all_groups()

    assert users["root"] == {"name": "root", "uid": 0, "gid": 0, "home": pwd.getpwnam("root").pw_dir,
                             "shell": pwd.getpwnam("root").pw_shell}
    assert set(users) == {entry.pw_name for entry in pwd.getpwall()}
    assert groups["root"]["gid"] == 0
    assert set(groups) == {entry.gr_name for entry in grp.getgrall()}


@pytest.mark.parametrize("name", ["", "a\0b", None])
def test_a_name_that_cannot_be_looked_up_is_an_error(name):
    with pytest.raises(_accounts.AccountsError):
        _accounts.LinuxAccounts().user(name)


def test_current_user_is_the_process_owner():
    assert _accounts.current_user() == {"name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid()}


def test_the_macos_reader_is_chosen_on_darwin_only(monkeypatch):
    monkeypatch.setattr(_accounts, "system", lambda: "Linux")
    assert isinstance(_accounts.reader(None), _accounts.LinuxAccounts)
    monkeypatch.setattr(_accounts, "system", lambda: "Darwin")
    assert isinstance(_accounts.reader(ScriptedModule()), _accounts.DarwinAccounts)


class ScriptedModule:
    """Just enough of AnsibleModule for _dscl.Directory, answering run_command from a script."""

    check_mode = True

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def get_bin_path(self, tool_name, required=False, opt_dirs=None):
        return "/usr/bin/" + tool_name

    def run_command(self, argv):
        self.calls.append(argv)
        return self.answers.pop(0)


def test_a_read_of_named_keys_tolerates_keys_the_record_lacks():
    plist = '<?xml version="1.0"?><plist version="1.0"><dict><key>dsAttrTypeStandard:RecordName</key>' \
            '<array><string>svc</string></array><key>dsAttrTypeStandard:UniqueID</key><array><string>300</string>' \
            '</array></dict></plist>'
    module = ScriptedModule((1, plist, "No such key: UserShell\nNo such key: NFSHomeDirectory\n"))

    record = _dscl.Directory(module).read(_dscl.USERS, "svc", _dscl.ACCOUNT_KEYS)

    assert _dscl.account_view(record) == {"name": "svc", "uid": 300, "gid": None, "home": None, "shell": None}


def test_a_read_that_fails_otherwise_is_an_error_without_stdout():
    module = ScriptedModule((40, "partial", "<dscl_cmd> DS Error: -14120 (eDSPermissionError)\n"))

    with pytest.raises(_dscl.DsclError) as caught:
        _dscl.Directory(module).read(_dscl.USERS, "svc", _dscl.ACCOUNT_KEYS)

    assert caught.value.rc == 40 and caught.value.stdout == ""


def test_id_that_cannot_find_the_user_means_missing_and_other_failures_raise():
    module = ScriptedModule((1, "", "id: gone: no such user\n"), (2, "", "id: illegal option -- x\n"))
    directory = _dscl.Directory(module)

    assert directory.group_names_of("gone") is None
    with pytest.raises(_dscl.DsclError, match="Reading the groups of gone failed"):
        directory.group_names_of("gone")
