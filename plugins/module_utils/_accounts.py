# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one reader of local accounts (local_accounts_info): uid, gid, home, shell and groups.

Linux asks the C library (pwd, grp and getgrouplist), which follows nsswitch.conf as getent
and id do. macOS reads the local Directory Services node with `dscl -plist` through _dscl,
and each user's groups with `id -Gn NAME`: id asks the membership resolver, which also counts
the primary group, nested groups and the implicit ones (everyone), as the kernel does when
the user logs in. A group's own record lists its direct members only; a question such as
"is the agent in a privileged group" needs the resolved answer.

Nothing here writes, and no attribute that can hold a secret is read.
"""

from __future__ import annotations

import grp
import os
import platform
import pwd

from ansible_collections.agent_sandbox.native.plugins.module_utils import _dscl
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError


class AccountsError(CommandError):
    """A name that cannot be looked up; the module turns it into fail_json (run_and_exit)."""


def system():
    """The kernel's name (platform.system()); the tests of the macOS path replace it."""
    return platform.system()


def missing_user(name):
    return {"name": name, "exists": False, "uid": None, "gid": None, "group": None, "home": None,
            "shell": None, "groups": []}


def missing_group(name):
    return {"name": name, "exists": False, "gid": None, "members": []}


def _check_name(name, what):
    if not isinstance(name, str) or not name or "\0" in name:
        raise AccountsError("%r is not a %s name." % (name, what))
    return name


class LinuxAccounts:
    """pwd, grp and os.getgrouplist: what getent passwd/group and id print, without a process."""

    def user(self, name):
        """{name, uid, gid, home, shell} or None."""
        try:
            entry = pwd.getpwnam(_check_name(name, "user"))
        except KeyError:
            return None
        return {"name": entry.pw_name, "uid": entry.pw_uid, "gid": entry.pw_gid, "home": entry.pw_dir,
                "shell": entry.pw_shell}

    @staticmethod
    def _group_name(gid):
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return None

    def group_name(self, gid):
        return self._group_name(gid)

    def groups_of(self, user):
        # A gid without a group entry is shown as its number, as id(1) does.
        gids = os.getgrouplist(user["name"], user["gid"])
        return sorted({self._group_name(gid) or str(gid) for gid in gids})

    def group(self, name):
        """{name, gid, members} or None; members are the names the group entry lists."""
        try:
            entry = grp.getgrnam(_check_name(name, "group"))
        except KeyError:
            return None
        return {"name": entry.gr_name, "gid": entry.gr_gid, "members": sorted(entry.gr_mem)}

    def all_users(self):
        table = {}
        for entry in pwd.getpwall():
            table.setdefault(entry.pw_name, {"name": entry.pw_name, "uid": entry.pw_uid, "gid": entry.pw_gid,
                                             "home": entry.pw_dir, "shell": entry.pw_shell})
        return table

    def all_groups(self):
        table = {}
        for entry in grp.getgrall():
            table.setdefault(entry.gr_name, {"name": entry.gr_name, "gid": entry.gr_gid,
                                             "members": sorted(entry.gr_mem)})
        return table


class DarwinAccounts:
    """The local node through dscl -plist, and id -Gn for each user's groups."""

    def __init__(self, module):
        self.directory = _dscl.Directory(module)
        self._groups = None

    def _group_table(self):
        # One -readall of /Groups answers every group question of a run.
        if self._groups is None:
            self._groups = self.directory.groups()
        return self._groups

    def user(self, name):
        _dscl.validate_name(name)
        record = self.directory.read(_dscl.USERS, name, _dscl.ACCOUNT_KEYS)
        if record is None:
            return None
        view = _dscl.account_view(record)
        view["name"] = view["name"] or name
        return view

    def group_name(self, gid):
        if gid is None:
            return None
        return next((name for name, info in sorted(self._group_table().items()) if info["gid"] == gid), None)

    def groups_of(self, user):
        return self.directory.group_names_of(user["name"])

    def group(self, name):
        _dscl.validate_name(name, "group")
        info = self._group_table().get(name)
        if info is None:
            return None
        return {"name": name, "gid": info["gid"], "members": sorted(info["members"])}

    def all_users(self):
        return self.directory.accounts()

    def all_groups(self):
        return {name: {"name": name, "gid": info["gid"], "members": sorted(info["members"])}
                for name, info in self._group_table().items()}


def reader(module):
    return DarwinAccounts(module) if system() == "Darwin" else LinuxAccounts()


def current_user():
    """The account this module runs as (with become: false, the one who ran the play)."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return {"name": name, "uid": uid}


def describe_user(accounts, name):
    view = accounts.user(name)
    if view is None:
        return missing_user(name)
    groups = accounts.groups_of(view)
    if groups is None:
        return missing_user(name)  # removed between the two reads
    return dict(view, exists=True, group=accounts.group_name(view["gid"]), groups=groups)


def describe_group(accounts, name):
    view = accounts.group(name)
    return missing_group(name) if view is None else dict(view, exists=True)


def read_accounts(module, users=(), groups=(), all_accounts=False):
    """The result of local_accounts_info (without `changed`)."""
    accounts = reader(module)
    result = {
        "users": {name: describe_user(accounts, name) for name in users},
        "groups": {name: describe_group(accounts, name) for name in groups},
        "current_user": current_user(),
    }
    if all_accounts:
        result["all_users"] = accounts.all_users()
        result["all_groups"] = accounts.all_groups()
    return result
