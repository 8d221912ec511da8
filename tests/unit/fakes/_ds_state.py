# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared state of the dscl, dseditgroup and createhomedir stand-ins.

The directory lives in $DSCL_FAKE_STATE/directory.json:
    {"users": {name: {attribute: [values]}}, "groups": {...}}
Attribute names are kept as dscl's text output shows them: standard attributes bare
("UniqueID"), native ones with their prefix ("dsAttrTypeNative:IsHidden").
Every call is appended to $DSCL_FAKE_STATE/calls.jsonl as {"tool": ..., "argv": [...]}.
"""

from __future__ import annotations

import json
import os
import sys

STANDARD = "dsAttrTypeStandard:"
NATIVE = "dsAttrTypeNative:"
# The standard attribute types these stand-ins meet; anything else is stored as native,
# which is how the local node keeps e.g. IsHidden and ShadowHashData.
STANDARD_NAMES = frozenset([
    "AppleMetaNodeLocation", "AuthenticationAuthority", "Comment", "GeneratedUID", "GroupMembers",
    "GroupMembership", "HomeDirectory", "JPEGPhoto", "NFSHomeDirectory", "NestedGroups", "Password",
    "Picture", "PrimaryGroupID", "RealName", "RecordName", "RecordType", "SMBSID", "UniqueID", "UserShell",
])
KINDS = {"/Users": "users", "/Groups": "groups"}
RECORD_TYPES = {"users": "dsRecTypeStandard:Users", "groups": "dsRecTypeStandard:Groups"}


def state_dir():
    path = os.environ.get("DSCL_FAKE_STATE")
    if not path:
        sys.stderr.write("fake: DSCL_FAKE_STATE is not set\n")
        sys.exit(2)
    return path


def load():
    with open(os.path.join(state_dir(), "directory.json"), encoding="utf-8") as handle:
        return json.load(handle)


def save(state):
    path = os.path.join(state_dir(), "directory.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def log_call(tool, argv):
    with open(os.path.join(state_dir(), "calls.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"tool": tool, "argv": argv}) + "\n")


def stored_key(key):
    """The name an attribute is kept under, whichever way the caller spelled it."""
    if key.startswith(STANDARD):
        return key[len(STANDARD):]
    if key.startswith(NATIVE):
        bare = key[len(NATIVE):]
        return bare if bare in STANDARD_NAMES else key
    return key if key in STANDARD_NAMES else NATIVE + key


def full_key(key):
    """The prefixed name dscl -plist prints (dsAttrTypeStandard:UniqueID)."""
    return key if key.startswith(NATIVE) else STANDARD + key


def new_record(kind, name):
    import uuid  # pylint: disable=import-outside-toplevel  # slow to import; only creation needs it
    guid = str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-ds:%s/%s" % (kind, name))).upper()
    return {"RecordName": [name], "GeneratedUID": [guid]}


def with_generated(kind, record):
    """A record as a read shows it: the node adds where it lives and what type it is."""
    shown = dict(record)
    shown["AppleMetaNodeLocation"] = ["/Local/Default"]
    shown["RecordType"] = [RECORD_TYPES[kind]]
    return shown


def split_path(path):
    """'/Users/agent' -> ('users', 'agent'); '/Users' -> ('users', None); unknown -> (None, None)."""
    for prefix, kind in KINDS.items():
        if path == prefix:
            return kind, None
        if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1:]:
            return kind, path[len(prefix) + 1:]
    return None, None


def member_of(state, user, group_name, seen=None):
    """Whether user is in the group, as the membership resolver answers: by GroupMembership,
    GroupMembers, the primary group, or through a group named in NestedGroups."""
    seen = seen or set()
    if group_name in seen or group_name not in state["groups"]:
        return False
    seen.add(group_name)
    group = state["groups"][group_name]
    record = state["users"][user]
    guid = record["GeneratedUID"][0]
    if user in group.get("GroupMembership", []) or guid in group.get("GroupMembers", []):
        return True
    if record.get("PrimaryGroupID") and record["PrimaryGroupID"] == group.get("PrimaryGroupID"):
        return True
    nested = group.get("NestedGroups", [])
    return any(member_of(state, user, name, seen) for name, other in state["groups"].items()
               if other["GeneratedUID"][0] in nested)
