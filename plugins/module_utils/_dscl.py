# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Command building and output parsing for macOS Directory Services (dscl, dseditgroup).

Private to this collection: the dscl_user, dscl_group and dscl_user_info modules use it, and
local_accounts_info through _accounts.

Everything works on the local node (`dscl .`). Records are read with `dscl -plist`, whose
output is an XML plist of attribute arrays keyed `dsAttrTypeStandard:<Name>` or
`dsAttrTypeNative:<name>`; id listings come from `dscl . -list <path> <key>`, one record a
line. Samples of both live in tests/unit/fixtures/dscl/ with a note of their source.
Every command is an argv list and none carries a secret: these modules never take a password.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import stat
from xml.parsers.expat import ExpatError

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError

OPT_DIRS = ["/usr/bin", "/usr/sbin"]

USERS = "/Users"
GROUPS = "/Groups"
ADMIN_GROUP = "admin"

# dscl's exit status is the low byte of the Directory Services error's magnitude: a missing
# record is "DS Error: -14136 (eDSRecordNotFound)" and exit status 56, which is 14136 & 0xff
# (not the low byte of -14136 itself, which would be 200). Public captures agree for other
# errors: -14135 -> 55, -14120 -> 40, -14988 -> 140 (tests/unit/fixtures/dscl/README.md).
RECORD_NOT_FOUND_RC = 56
RECORD_NOT_FOUND = "eDSRecordNotFound"
# eDSPermissionError -14120 (14120 & 0xff = 40): not root, or, as root, a write that macOS
# keeps for processes with Full Disk Access (TCC's SystemPolicySysAdminFiles, which it includes): a user's
# NFSHomeDirectory and the deletion of a user record (NixOS/nix#2542; nix-darwin's users module).
PERMISSION_ERROR_RC = 40
PERMISSION_ERROR = "eDSPermissionError"
# The probe writes this record's home over itself, as nix-darwin's ensurePerms does: every Mac
# has nobody, and the write changes nothing when it is allowed.
PROBE_USER = "nobody"
FULL_DISK_ACCESS_HELP = (
    "macOS lets only a process with Full Disk Access set a user's home (NFSHomeDirectory) or delete a user. "
    "Give it to the program that runs Ansible: System Settings > Privacy & Security > Full Disk Access "
    "(the terminal app, when you run ansible-playbook on this Mac); when Ansible comes in over SSH, turn on "
    "\"Allow full disk access for remote users\" in System Settings > General > Sharing > Remote Login (the i "
    "button) and connect again. Then run again; nothing else needs undoing.")
# `dscl . -read PATH KEY...` names each requested key the record lacks on stderr and still
# prints the others (tests/unit/fixtures/dscl/README.md, "What the fakes guess").
NO_SUCH_KEY = "No such key:"
# What local_accounts_info reads of a user record: nothing that can hold a secret.
ACCOUNT_KEYS = ("UniqueID", "PrimaryGroupID", "NFSHomeDirectory", "UserShell", "RecordName")
# id(1) of macOS for a user it cannot find: "id: NAME: no such user", exit 1.
ID_NO_SUCH_USER = "no such user"
# dseditgroup -o checkmember: "yes NAME is a member of GROUP" (0) or
# "no NAME is NOT a member of GROUP" (67, EX_NOUSER).
NOT_A_MEMBER_RC = 67

_PREFIXES = ("dsAttrTypeStandard:", "dsAttrTypeNative:")
# Attributes that hold password material. A full read as root returns them; their values are
# dropped in the parser so that nothing downstream (diff, results, errors) can carry them.
SECRET_ATTRIBUTES = frozenset(["ShadowHashData", "HeimdalSRPKey", "KerberosKeys"])
REDACTED = "<redacted>"
# What the password lock removes: with neither an authentication authority nor a shadow
# hash, the local node falls back to the Password attribute, and "*" matches no password.
LOCKED_PASSWORD = "*"
PASSWORD_AUTHORITIES = ("AuthenticationAuthority", "ShadowHashData")

# Short names the modules accept: no leading '-' (argv), no '/' (record path), no space.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,243}$")
_TRUE_VALUES = frozenset(["1", "yes", "true"])


class DsclError(CommandError):
    """The one failure these modules raise; each module turns it into fail_json in one place."""


def validate_name(name, what="user"):
    """Return name if it is a short name the modules can put in a record path and argv."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DsclError(
            "%r is not a usable %s name: use 1 to 244 characters from letters, digits, '_', '.' "
            "and '-', starting with a letter or '_'." % (name, what))
    return name


def validate_id_range(id_range, option):
    """Return (low, high) from a two-element list, or raise with what to change."""
    if id_range is None or len(id_range) != 2:
        raise DsclError("%s must be a list of two integers [min, max], got %r." % (option, id_range))
    low, high = int(id_range[0]), int(id_range[1])
    if low < 1 or high < low:
        raise DsclError("%s must satisfy 1 <= min <= max (0 is root's id), got [%d, %d]."
                        % (option, low, high))
    return low, high


def lowest_free(taken, low, high):
    """The lowest id in [low, high] that no record holds, or None when the range is full."""
    for candidate in range(low, high + 1):
        if candidate not in taken:
            return candidate
    return None


def record_path(kind, name):
    """`/Users/NAME` or `/Groups/NAME`."""
    return "%s/%s" % (kind, name)


def short_key(key):
    """`dsAttrTypeStandard:UniqueID` -> `UniqueID`; `dsAttrTypeNative:IsHidden` -> `IsHidden`."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _record_from_plist(obj):
    if not isinstance(obj, dict):
        raise DsclError("dscl -plist returned a %s where a record (dict) was expected." % type(obj).__name__)
    record = {}
    for key, values in obj.items():
        name = short_key(str(key))
        if not isinstance(values, list):
            values = [values]
        if name in SECRET_ATTRIBUTES:
            values = [REDACTED for _value in values]
        else:
            values = [value if isinstance(value, str) else str(value) for value in values]
        record[name] = values
    return record


def _load_plist(text, what):
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return plistlib.loads(data)
    except (ValueError, ExpatError) as exc:
        # The text is not repeated here: a full user record may hold password material.
        raise DsclError("Cannot parse the plist that %s printed: %s" % (what, exc))


def parse_record(text):
    """Parse `dscl -plist . -read <path>` into {short attribute name: [values]}."""
    return _record_from_plist(_load_plist(text, "dscl -read"))


def parse_records(text):
    """Parse `dscl -plist . -readall <path> [keys]` into a list of records."""
    obj = _load_plist(text, "dscl -readall")
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise DsclError("dscl -plist -readall returned a %s where a list of records was expected."
                        % type(obj).__name__)
    return [_record_from_plist(item) for item in obj]


def parse_id_list(text, what="dscl -list"):
    """Parse `dscl . -list <path> <IdKey>` ("name   501" a line) into {name: id}.

    The id is the last field; the name is everything before the column gap.
    """
    ids = {}
    for line in text.splitlines():
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            continue  # a record without the key prints its name alone
        name, value = fields[0].strip(), fields[1]
        try:
            ids[name] = int(value)
        except ValueError:
            raise DsclError("%s printed a non-numeric id %r for %r." % (what, value, name))
    return ids


def parse_name_list(text):
    """Parse `dscl . -list <path>` (one name a line)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def first(record, key):
    """The first value of an attribute, or None."""
    values = (record or {}).get(key) or []
    return values[0] if values else None


def int_attribute(record, key, name):
    """An integer attribute (UniqueID, PrimaryGroupID) or None; garbage is an error."""
    value = first(record, key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DsclError("%s has a non-numeric %s %r; fix the record by hand first." % (name, key, value))


def is_hidden(record):
    return (first(record, "IsHidden") or "").strip().lower() in _TRUE_VALUES


def password_locked(record):
    """True when no password can match: Password is "*" and no authority or hash is left."""
    if (record or {}).get("Password") != [LOCKED_PASSWORD]:
        return False
    return not any((record or {}).get(key) for key in PASSWORD_AUTHORITIES)


def group_table(records):
    """{group name: {"gid": int or None, "members": [short names]}} from -readall records."""
    table = {}
    for record in records:
        name = first(record, "RecordName")
        if name is None:
            continue
        table[name] = {
            "gid": int_attribute(record, "PrimaryGroupID", "Group %s" % name),
            "members": list(record.get("GroupMembership") or []),
        }
    return table


def groups_of(user, table):
    """Sorted names of the groups that list user in GroupMembership."""
    return sorted(name for name, info in table.items() if user in info["members"])


def user_view(name, record, table):
    """What the modules report and diff for a user: managed attributes only, never secrets."""
    if record is None:
        return {"name": name, "state": "absent"}
    groups = groups_of(name, table)
    return {
        "name": name,
        "state": "present",
        "uid": int_attribute(record, "UniqueID", "User %s" % name),
        "primary_group_id": int_attribute(record, "PrimaryGroupID", "User %s" % name),
        "shell": first(record, "UserShell"),
        "home": first(record, "NFSHomeDirectory"),
        "real_name": first(record, "RealName"),
        "hidden": is_hidden(record),
        "password_locked": password_locked(record),
        "groups": groups,
        "admin": ADMIN_GROUP in groups,
    }


def account_view(record):
    """uid, gid, home and shell of a user record read with ACCOUNT_KEYS (local_accounts_info)."""
    name = first(record, "RecordName")
    what = "User %s" % name
    return {
        "name": name,
        "uid": int_attribute(record, "UniqueID", what),
        "gid": int_attribute(record, "PrimaryGroupID", what),
        "home": first(record, "NFSHomeDirectory"),
        "shell": first(record, "UserShell"),
    }


def account_table(records):
    """{short name: account_view} from `-readall /Users` records (the first RecordName names it)."""
    table = {}
    for record in records:
        view = account_view(record)
        if view["name"] is not None:
            table.setdefault(view["name"], view)
    return table


def parse_group_names(text):
    """Parse `id -Gn NAME` (group names on one line, split by spaces) into a sorted list."""
    return sorted(set(text.split()))


def group_view(name, record):
    """What dscl_group reports and diffs for a group."""
    if record is None:
        return {"name": name, "state": "absent"}
    return {
        "name": name,
        "state": "present",
        "gid": int_attribute(record, "PrimaryGroupID", "Group %s" % name),
        "real_name": first(record, "RealName"),
        "members": sorted(record.get("GroupMembership") or []),
    }


# Command builders. Each returns an argv list; tests assert these exactly.

def read_argv(dscl, kind, name, keys=()):
    return [dscl, "-plist", ".", "-read", record_path(kind, name)] + list(keys)


def readall_users_argv(dscl):
    return [dscl, "-plist", ".", "-readall", USERS, "RecordName", "UniqueID", "PrimaryGroupID",
            "NFSHomeDirectory", "UserShell"]


def id_groups_argv(id_tool, user):
    # Every group the membership resolver gives the user: primary, direct and nested.
    return [id_tool, "-Gn", user]


def readall_groups_argv(dscl):
    return [dscl, "-plist", ".", "-readall", GROUPS, "RecordName", "PrimaryGroupID", "GroupMembership"]


def list_argv(dscl, kind, key=None):
    return [dscl, ".", "-list", kind] + ([key] if key else [])


def create_argv(dscl, kind, name, key=None, value=None):
    argv = [dscl, ".", "-create", record_path(kind, name)]
    if key is not None:
        argv.append(key)
        if value is not None:
            argv.append(str(value))
    return argv


def delete_argv(dscl, kind, name, key=None):
    return [dscl, ".", "-delete", record_path(kind, name)] + ([key] if key else [])


def membership_argv(dseditgroup, add, user, group):
    return [dseditgroup, "-o", "edit", "-a" if add else "-d", user, "-t", "user", group]


def checkmember_argv(dseditgroup, user, group):
    return [dseditgroup, "-o", "checkmember", "-m", user, group]


def createhomedir_argv(createhomedir, user):
    # -c: local home paths (the default -s is server home paths); -l: users of the local node.
    return [createhomedir, "-c", "-l", "-u", user]


class Directory:
    """Runs reads at once and writes through one helper that check mode skips.

    `actions` lists every write, done or (in check mode) only planned, in order.
    """

    def __init__(self, module):
        self.module = module
        self.check_mode = module.check_mode
        self.actions = []
        self._bins = {}
        self._probed = False

    def bin(self, tool):
        if tool not in self._bins:
            self._bins[tool] = self.module.get_bin_path(tool, required=True, opt_dirs=OPT_DIRS)
        return self._bins[tool]

    def run(self, argv, what, ok=(0,)):
        """Run argv; an exit status outside ok (None: any) raises, a refused write with what to do."""
        rc, out, err = self.module.run_command(argv)
        if ok is not None and rc not in ok:
            if refused(argv, rc, err):
                raise DsclError("%s was refused (%s %d, exit status %s). %s%s"
                                % (what, PERMISSION_ERROR, -14120, rc, FULL_DISK_ACCESS_HELP, not_root()),
                                cmd=argv, rc=rc, stdout=out, stderr=err)
            raise DsclError("%s failed (rc=%s): %s" % (what, rc, (err or out).strip()),
                            cmd=argv, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def write(self, action, argv=None, call=None, ok=(0,)):
        """Record a write and perform it unless in check mode: a command, or a Python call.

        Returns the command's (rc, stdout, stderr), or None when nothing ran.
        """
        self.actions.append(action)
        if self.check_mode:
            return None
        result = None
        if argv is not None:
            result = self.run(argv, what=action, ok=ok)
        if call is not None:
            call()
        return result

    def require_write_access(self):
        """Stop before the first change when macOS would refuse a write kept for Full Disk Access.

        Writes nobody's NFSHomeDirectory over itself (nix-darwin's probe): allowed, it changes
        nothing; refused, it raises with the setting to turn on. Runs once per module run and
        never in check mode, where no write may run; a refused write later says the same.
        """
        if self.check_mode or self._probed:
            return
        self._probed = True
        record = self.read(USERS, PROBE_USER, ["NFSHomeDirectory"])
        home = first(record, "NFSHomeDirectory")
        if home is None:
            self.module.warn("The modules cannot probe for Full Disk Access: /Users/%s has no NFSHomeDirectory. "
                             "A write macOS refuses will still fail with what to do." % PROBE_USER)
            return
        argv = [self.bin("dscl"), ".", "-change", record_path(USERS, PROBE_USER), "NFSHomeDirectory", home, home]
        self.run(argv, what="Probing for Full Disk Access (writing the home of %s over itself)" % PROBE_USER)

    # Reads (always run, check mode included).

    def read(self, kind, name, keys=()):
        """The record at kind/name as {attribute: [values]}, or None when it does not exist.

        With keys, only those attributes; a record that lacks some of them is still read.
        """
        argv = read_argv(self.bin("dscl"), kind, name, keys)
        rc, out, err = self.module.run_command(argv)
        if rc == RECORD_NOT_FOUND_RC or RECORD_NOT_FOUND in (err or ""):
            return None
        if rc != 0 and not (keys and out.strip() and _only_missing_keys(err)):
            # stdout is withheld: a partial user record may hold password material.
            raise DsclError("Reading %s failed (rc=%s): %s" % (record_path(kind, name), rc, (err or "").strip()),
                            cmd=argv, rc=rc, stdout="", stderr=err)
        return parse_record(out)

    def groups(self):
        """Every local group with its gid and members."""
        _rc, out, _err = self.run(readall_groups_argv(self.bin("dscl")), what="Reading the local groups")
        return group_table(parse_records(out))

    def accounts(self):
        """Every local user's uid, gid, home and shell, by short name."""
        _rc, out, _err = self.run(readall_users_argv(self.bin("dscl")), what="Reading the local users")
        return account_table(parse_records(out))

    def group_names_of(self, user):
        """The names of every group id(1) resolves for user, sorted; None when there is no such user."""
        argv = id_groups_argv(self.bin("id"), user)
        rc, out, err = self.module.run_command(argv)
        if rc != 0 and ID_NO_SUCH_USER in (err or ""):
            return None
        if rc != 0:
            raise DsclError("Reading the groups of %s failed (rc=%s): %s" % (user, rc, (err or out).strip()),
                            cmd=argv, rc=rc, stdout=out, stderr=err)
        return parse_group_names(out)

    def ids(self, kind, key):
        """{record name: id} from `dscl . -list <kind> <key>`."""
        argv = list_argv(self.bin("dscl"), kind, key)
        _rc, out, _err = self.run(argv, what="Listing %s %s" % (kind, key))
        return parse_id_list(out, what=" ".join(argv))

    def names(self, kind):
        _rc, out, _err = self.run(list_argv(self.bin("dscl"), kind), what="Listing %s" % kind)
        return parse_name_list(out)

    def is_member(self, user, group):
        """dseditgroup's own answer, which also follows nested groups and the primary group."""
        argv = checkmember_argv(self.bin("dseditgroup"), user, group)
        rc, out, _err = self.run(argv, what="Checking whether %s is in %s" % (user, group), ok=(0, NOT_A_MEMBER_RC))
        return rc == 0 and out.strip().startswith("yes")


def refused(argv, rc, err):
    """Whether a command failed with eDSPermissionError: dscl's exit status 40, or the error's name."""
    if PERMISSION_ERROR in (err or "") or "-14120" in (err or ""):
        return True
    return rc == PERMISSION_ERROR_RC and os.path.basename(str(argv[0])) == "dscl"


def not_root():
    euid = os.geteuid()
    return "" if euid == 0 else (" This module runs as uid %d, not root: the write needs become: true as well." % euid)


def _only_missing_keys(err):
    lines = [line.strip() for line in (err or "").splitlines() if line.strip()]
    return bool(lines) and all(line.startswith(NO_SUCH_KEY) for line in lines)


def record_argument_spec(id_option, **options):
    """The argument_spec of a module that manages one record: name, state, the id option
    (uid or gid) and its range, then the module's own options."""
    spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    spec[id_option] = dict(type="int")
    spec[id_option + "_range"] = dict(type="list", elements="int", default=[501, 599])
    spec.update(options)
    return spec


def converge(module, kind, ensure_present, ensure_absent):
    """Read the record named by the name option, bring it to the state option and return
    the module result.

    ensure_present and ensure_absent take (module, directory, name, record) and return
    (before, after, extra): the views to diff and what the module adds to its result.
    """
    name = validate_name(module.params["name"], "group" if kind == GROUPS else "user")
    directory = Directory(module)
    record = directory.read(kind, name)
    ensure = ensure_present if module.params["state"] == "present" else ensure_absent
    before, after, extra = ensure(module, directory, name, record)
    result = dict(changed=bool(directory.actions), name=name, state=after["state"],
                  actions=directory.actions, **extra)
    if module._diff:
        result["diff"] = dict(before=before, after=after,
                              before_header="%s (before)" % record_path(kind, name),
                              after_header="%s (after)" % record_path(kind, name))
    return result


def pick_id(taken_by, wanted, id_range, name, id_word, record_word, option):
    """Choose the id for a new record from a full listing {record name: id}.

    An explicit id must not belong to another record; otherwise the lowest free id in the
    range, never max+1 (which walks past the range and cannot be pinned).
    """
    if wanted is not None:
        owners = sorted(other for other, value in taken_by.items() if value == wanted and other != name)
        if owners:
            raise DsclError("%s %d is already used by %s %s; choose another %s, or leave %s unset to take "
                            "the lowest free one in %s." % (id_word, wanted, record_word, owners[0], id_word,
                                                            id_word, option))
        return wanted
    low, high = id_range
    chosen = lowest_free(set(taken_by.values()), low, high)
    if chosen is None:
        raise DsclError("No free %s in %s [%d, %d]: every id in it is taken. Widen %s or set %s explicitly."
                        % (id_word, option, low, high, option, id_word))
    return chosen


def remove_tree(path):
    """Delete a home directory (dscl_user state=absent remove_home=true)."""
    def _remove():
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise DsclError("Could not remove %s: %s" % (path, exc))
    return _remove


def owned_directory(path, uid):
    """True when path is a real directory (not a link) owned by uid."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid
