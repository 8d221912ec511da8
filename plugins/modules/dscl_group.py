#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dscl_group
short_description: Manage a local macOS group through dscl
version_added: 0.1.0
description:
  - Creates and deletes a group in the local Directory Services node (C(dscl .)) and manages its members.
  - Reads the record first (C(dscl -plist . -read /Groups/NAME)) and writes only what differs.
  - The gid of a new group is O(gid), or the lowest free gid in O(gid_range) found in a full listing
    (C(dscl . -list /Groups PrimaryGroupID)), taken again right before the record is created.
    An existing group is never renumbered.
  - Members are added and removed with C(dseditgroup), which keeps C(GroupMembership) and C(GroupMembers) in step.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads always run; no write (the Full Disk Access probe included) runs in check mode, and RV(actions)
      lists what would be done.
  diff_mode:
    support: full
  platform:
    platforms: darwin
options:
  name:
    description:
      - Name of the group (C(RecordName)).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the group; V(absent) deletes it (C(dscl . -delete /Groups/NAME)).
      - The groups C(admin), C(staff), C(wheel), C(everyone) and C(localaccounts) are never deleted.
    type: str
    choices: [present, absent]
    default: present
  gid:
    description:
      - The gid (C(PrimaryGroupID)). Pins the gid of a new group; it must not belong to another group.
      - For an existing group it must match the current gid, or the module fails.
      - When unset, a new group gets the lowest free gid in O(gid_range).
    type: int
  gid_range:
    description:
      - Inclusive V([min, max]) range from which a new group's gid is picked when O(gid) is unset.
    type: list
    elements: int
    default: [501, 599]
  real_name:
    description:
      - Full name (C(RealName)). Unset leaves it as it is.
    type: str
  members:
    description:
      - Users that belong to the group, by short name. Each must be a local user.
      - With O(append=false) users not listed here are removed. Unset leaves members alone.
    type: list
    elements: str
  append:
    description:
      - V(true) only adds O(members); V(false) makes O(members) the exact list.
    type: bool
    default: false
notes:
  - Only the local node is managed. Nested groups (C(NestedGroups)) are not managed.
  - Before it creates or deletes a group the module probes for Full Disk Access as M(agent_sandbox.native.dscl_user)
    does (check mode skips the probe, which is a write). A group write is not known to need it; the user made next
    does, and the probe stops a run without it before the first record. A write refused with C(eDSPermissionError)
    fails with the settings to turn on.
  - A user is also a member of its primary group through C(PrimaryGroupID), which O(members) does not list.
seealso:
  - module: agent_sandbox.native.dscl_user
  - module: ansible.builtin.group
"""

EXAMPLES = r"""
- name: Create the group of the shared workspace
  agent_sandbox.native.dscl_group:
    name: agent-share
    gid_range: [600, 699]
    real_name: Agent shared workspace
    members: [agent, alice]
  register: share_group

- name: Add one more member, keeping the others
  agent_sandbox.native.dscl_group:
    name: agent-share
    members: [bob]
    append: true

- name: Delete the group
  agent_sandbox.native.dscl_group:
    name: agent-share
    state: absent
"""

RETURN = r"""
name:
  description: Name of the group.
  returned: always
  type: str
  sample: agent-share
state:
  description: State of the group after the run (as planned, in check mode).
  returned: always
  type: str
  sample: present
gid:
  description: The group's gid; for a group created in check mode, the gid it would get.
  returned: when O(state=present)
  type: int
  sample: 600
members:
  description: Members (C(GroupMembership)) after the run (as planned, in check mode).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [agent, alice]
actions:
  description: The writes done, in order (in check mode, the writes that would be done).
  returned: always
  type: list
  elements: str
  sample: ["create group agent-share", "set PrimaryGroupID of agent-share to 600", "add agent to agent-share"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._dscl import (
    GROUPS,
    LOCKED_PASSWORD,
    USERS,
    DsclError,
    converge,
    create_argv,
    delete_argv,
    group_view,
    membership_argv,
    pick_id,
    record_argument_spec,
    validate_id_range,
    validate_name,
)
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit

PROTECTED = frozenset(["admin", "staff", "wheel", "everyone", "localaccounts"])


def run(module):
    return converge(module, GROUPS, ensure_present, ensure_absent)


def ensure_present(module, directory, name, record):
    p = module.params
    gid_range = validate_id_range(p["gid_range"], "gid_range")
    if p["gid"] is not None and p["gid"] < 1:
        raise DsclError("gid must be a positive integer (0 is wheel), got %d." % p["gid"])
    before = group_view(name, record)
    current_gid = before.get("gid")
    if current_gid is not None and p["gid"] is not None and p["gid"] != current_gid:
        raise DsclError("Group %s exists with gid %d, not the requested %d. This module does not renumber groups: "
                        "set gid to %d, or unset it." % (name, current_gid, p["gid"], current_gid))

    current = set(before.get("members") or [])
    add, remove = set(), set()
    if p["members"] is not None:
        for member in p["members"]:
            validate_name(member)
        add = set(p["members"]) - current
        if not p["append"]:
            remove = current - set(p["members"])
    if add:
        missing = sorted(add - set(directory.names(USERS)))
        if missing:
            raise DsclError("members lists %s, which %s no local user; create %s first."
                            % (", ".join(missing), "is" if len(missing) == 1 else "are",
                               "it" if len(missing) == 1 else "them"))

    dscl = directory.bin("dscl")
    gid = current_gid
    if gid is None:
        gid = pick_id(directory.ids(GROUPS, "PrimaryGroupID"), p["gid"], gid_range, name, "gid", "group", "gid_range")
        if not directory.check_mode:
            # Taken again right before the write: another process may have claimed the gid since.
            gid = pick_id(directory.ids(GROUPS, "PrimaryGroupID"), p["gid"], gid_range, name,
                          "gid", "group", "gid_range")
    if record is None:
        # Not for the group's own sake: its user comes next and needs Full Disk Access, and a run
        # without it should stop before the first record, not between a group and its user.
        directory.require_write_access()
        directory.write("create group %s" % name, create_argv(dscl, GROUPS, name))
        directory.write("set Password of %s to %s" % (name, LOCKED_PASSWORD),
                        create_argv(dscl, GROUPS, name, "Password", LOCKED_PASSWORD))
    if current_gid is None:
        directory.write("set PrimaryGroupID of %s to %d" % (name, gid),
                        create_argv(dscl, GROUPS, name, "PrimaryGroupID", gid))
    if p["real_name"] is not None and p["real_name"] != before.get("real_name"):
        directory.write("set RealName of %s to %s" % (name, p["real_name"]),
                        create_argv(dscl, GROUPS, name, "RealName", p["real_name"]))
    if add or remove:
        dseditgroup = directory.bin("dseditgroup")
        for member in sorted(add):
            directory.write("add %s to %s" % (member, name), membership_argv(dseditgroup, True, member, name))
        for member in sorted(remove):
            directory.write("remove %s from %s" % (member, name), membership_argv(dseditgroup, False, member, name))

    after = dict(before, state="present", gid=gid, members=sorted((current - remove) | add),
                 real_name=p["real_name"] if p["real_name"] is not None else before.get("real_name"))
    return before, after, dict(gid=gid, members=after["members"])


def ensure_absent(_module, directory, name, record):
    before = group_view(name, record)
    if record is not None:
        if name in PROTECTED:
            raise DsclError("Refusing to delete the system group %s." % name)
        directory.require_write_access()
        directory.write("delete group %s" % name, delete_argv(directory.bin("dscl"), GROUPS, name))
    return before, group_view(name, None), {}


def main():
    module = AnsibleModule(
        argument_spec=record_argument_spec(
            "gid",
            real_name=dict(type="str"),
            members=dict(type="list", elements="str"),
            append=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
