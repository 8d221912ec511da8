#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dscl_user
short_description: Manage a local macOS user through dscl
version_added: 0.1.0
description:
  - Creates, updates and deletes a user in the local Directory Services node (C(dscl .)).
  - Reads the record first (C(dscl -plist . -read /Users/NAME)) and writes only the attributes that differ.
  - The uid of a new user is O(uid), or the lowest free uid in O(uid_range) found in a full listing
    (C(dscl . -list /Users UniqueID)). The listing is taken again right before the record is created, so a
    uid claimed in the meantime is not reused. An existing user is never renumbered.
  - Supplementary groups and the admin guarantee go through C(dseditgroup), which keeps the names
    (C(GroupMembership)) and the GeneratedUIDs (C(GroupMembers)) of a group in step.
  - This module never takes, sets or prints a password, and puts no secret in any command line.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads always run; no write runs in check mode, and RV(actions) lists what would be done.
      - The Full Disk Access probe is a write, so check mode skips it and cannot tell whether the real run will be
        allowed; the real run probes before its first change.
  diff_mode:
    support: full
    details: Before and after show the managed attributes only, never password material.
  platform:
    platforms: darwin
options:
  name:
    description:
      - Short name of the user (C(RecordName)).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the user; V(absent) removes it from every group that lists it and deletes
        the record (C(dscl . -delete /Users/NAME)).
    type: str
    choices: [present, absent]
    default: present
  uid:
    description:
      - The uid (C(UniqueID)) of the user. Pins the uid of a new user; it must not belong to another user.
      - For an existing user it must match the current uid, or the module fails. It does not renumber users,
        whose files would keep the old uid.
      - When unset, a new user gets the lowest free uid in O(uid_range).
    type: int
  uid_range:
    description:
      - Inclusive V([min, max]) range from which a new user's uid is picked when O(uid) is unset.
      - When every uid in it is taken the module fails rather than going past V(max).
    type: list
    elements: int
    default: [501, 599]
  primary_group_id:
    description:
      - The gid of the user's primary group (C(PrimaryGroupID)). A local group must have this gid.
      - Required to create a user. It must not be the admin group's gid while O(admin=false).
    type: int
  shell:
    description:
      - Login shell (C(UserShell)). When unset, a new user gets V(/bin/zsh) and an existing one keeps its shell.
    type: str
  home:
    description:
      - Home directory (C(NFSHomeDirectory)). When unset, a new user gets V(/Users/NAME) and an existing one keeps
        its home. Changing it changes the attribute only; nothing is moved.
    type: path
  create_home:
    description:
      - Create the home directory with C(createhomedir -c -l -u NAME) when it does not exist.
    type: bool
    default: true
  real_name:
    description:
      - Full name (C(RealName)). Unset leaves it as it is.
    type: str
  hidden:
    description:
      - V(true) sets C(IsHidden) to V(1), which hides the user from the login window and Users & Groups;
        V(false) removes C(IsHidden). Unset leaves it as it is.
    type: bool
  password_locked:
    description:
      - V(true) makes sure no password can log the user in - C(Password) is V(*), and the
        C(AuthenticationAuthority) and C(ShadowHashData) attributes are removed, so no password hash is left.
      - V(false) leaves the password attributes alone; this module never sets a password.
    type: bool
    default: true
  groups:
    description:
      - Supplementary groups, by name. Every group must exist.
      - With O(append=false) the user is also removed from every group that lists it and is not named here.
      - Unset leaves group memberships alone, apart from O(admin).
    type: list
    elements: str
  append:
    description:
      - V(true) only adds the user to O(groups); V(false) makes O(groups) the exact list.
    type: bool
    default: false
  admin:
    description:
      - V(false) guarantees the user is not an administrator. It is removed from the C(admin) group if it is listed
        there (reported in RV(admin_removed) and as a warning), and the module fails if C(dseditgroup -o checkmember)
        still finds it in C(admin) afterwards, through a nested group for example.
      - V(true) adds the user to C(admin).
    type: bool
    default: false
  remove_home:
    description:
      - With O(state=absent), also delete the home directory, but only if it is a directory owned by the user's uid.
    type: bool
    default: false
notes:
  - Only the local node is managed. A uid free in the local node may still be used by a network directory user.
  - macOS lets only a process with Full Disk Access set a user's home (C(NFSHomeDirectory)) or delete a user; without
    it dscl fails with C(eDSPermissionError) (-14120, exit status 40). Before creating a user, changing a home or
    deleting a user, and before any other write of that run, the module writes the home of C(nobody) over itself
    (as nix-darwin does) and fails with the setting to turn on when that is refused - System Settings >
    Privacy & Security > Full Disk Access for the program that runs Ansible, and, over SSH,
    "Allow full disk access for remote users" under Sharing > Remote Login. Any later write refused the same way
    fails with the same message.
  - A new user is hidden (C(IsHidden)) by the first write after the record is created, so a run stopped later leaves
    no user at the login window.
  - The home directory is judged made when it exists after C(createhomedir), whatever its exit status (it is seen to
    exit non-zero on success); a non-zero status is reported as a warning.
  - The home directory's permissions are what C(createhomedir) gives it; tighten them in a later task.
  - O(state=absent) removes the user from every group that lists it by name before deleting the record, so that a
    later user with the same name does not inherit those memberships.
seealso:
  - module: agent_sandbox.native.dscl_group
  - module: agent_sandbox.native.dscl_user_info
  - module: ansible.builtin.user
"""

EXAMPLES = r"""
- name: Create the agent's own group
  agent_sandbox.native.dscl_group:
    name: agent
    gid_range: [600, 699]
  register: agent_group

- name: Create the agent user, hidden, with no password and no admin rights
  agent_sandbox.native.dscl_user:
    name: agent
    uid_range: [600, 699]
    primary_group_id: "{{ agent_group.gid }}"
    shell: /bin/zsh
    home: /Users/agent
    real_name: Agent User
    hidden: true
    password_locked: true
    groups: [agent-share]
    admin: false
  register: agent_user

- name: Report an admin membership that was removed
  ansible.builtin.debug:
    msg: "agent was in the admin group and has been removed"
  when: agent_user.admin_removed

- name: Delete the agent user and its home directory
  agent_sandbox.native.dscl_user:
    name: agent
    state: absent
    remove_home: true
"""

RETURN = r"""
name:
  description: Short name of the user.
  returned: always
  type: str
  sample: agent
state:
  description: State of the user after the run (as planned, in check mode).
  returned: always
  type: str
  sample: present
uid:
  description: The user's uid; for a user created in check mode, the uid it would get.
  returned: when O(state=present)
  type: int
  sample: 600
actions:
  description: The writes done, in order (in check mode, the writes that would be done).
  returned: always
  type: list
  elements: str
  sample: ["create user agent", "set IsHidden of agent to 1", "set Password of agent to *", "set UniqueID of agent to 600"]
admin_removed:
  description: Whether the user was listed in the admin group and was removed from it.
  returned: when O(state=present)
  type: bool
  sample: false
user:
  description: The managed attributes of the user after the run (as planned, in check mode).
  returned: always
  type: dict
  sample:
    name: agent
    state: present
    uid: 600
    primary_group_id: 600
    shell: /bin/zsh
    home: /Users/agent
    real_name: Agent User
    hidden: true
    password_locked: true
    groups: [agent-share]
    admin: false
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._dscl import (
    ADMIN_GROUP,
    LOCKED_PASSWORD,
    PASSWORD_AUTHORITIES,
    USERS,
    DsclError,
    converge,
    create_argv,
    createhomedir_argv,
    delete_argv,
    first,
    is_hidden,
    membership_argv,
    owned_directory,
    pick_id,
    record_argument_spec,
    remove_tree,
    user_view,
    validate_id_range,
)
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit

DEFAULT_SHELL = "/bin/zsh"
# Written in this order, after IsHidden and the password lock, so the record is never loginable
# and never shown at the login window.
ATTRIBUTES = (
    ("primary_group_id", "PrimaryGroupID"),
    ("shell", "UserShell"),
    ("home", "NFSHomeDirectory"),
    ("real_name", "RealName"),
)


def run(module):
    return converge(module, USERS, ensure_present, ensure_absent)


def ensure_present(module, directory, name, record):
    """Check everything first (nothing is written if a check fails), then pick the uid, write the
    record's attributes, the group memberships and the home, and confirm the admin guarantee."""
    p = module.params
    uid_range = validate_id_range(p["uid_range"], "uid_range")
    if p["uid"] is not None and p["uid"] < 1:
        raise DsclError("uid must be a positive integer (0 is root), got %d." % p["uid"])
    table = directory.groups()
    before = user_view(name, record, table)
    current = record or {}
    creating = record is None
    current_uid = before.get("uid")

    if current_uid is not None and p["uid"] is not None and p["uid"] != current_uid:
        raise DsclError("User %s exists with uid %d, not the requested %d. This module does not renumber users "
                        "(their files would keep the old uid): set uid to %d, or unset it."
                        % (name, current_uid, p["uid"], current_uid))

    wanted = dict(p)
    if creating:
        wanted["shell"] = p["shell"] or DEFAULT_SHELL
        wanted["home"] = p["home"] or "/Users/%s" % name
    primary = p["primary_group_id"] if p["primary_group_id"] is not None else before.get("primary_group_id")
    check_primary_group(name, primary, p, table, creating)
    add, remove = plan_groups(name, before.get("groups") or [], p, table)
    home = wanted["home"] or first(current, "NFSHomeDirectory")
    if p["create_home"] and home and os.path.lexists(home) and not os.path.isdir(home):
        raise DsclError("The home %s of %s exists and is not a directory; move it away or set another home."
                        % (home, name))

    dscl = directory.bin("dscl")
    uid = current_uid
    if uid is None:
        uid = pick_id(directory.ids(USERS, "UniqueID"), p["uid"], uid_range, name, "uid", "user", "uid_range")
        if not directory.check_mode:
            # Taken again right before the write: another process may have claimed the uid since.
            uid = pick_id(directory.ids(USERS, "UniqueID"), p["uid"], uid_range, name, "uid", "user", "uid_range")
    if creating or (wanted["home"] is not None and current.get("NFSHomeDirectory") != [str(wanted["home"])]):
        # The home is a write macOS keeps for Full Disk Access: find out before the record exists.
        directory.require_write_access()
    if creating:
        directory.write("create user %s" % name, create_argv(dscl, USERS, name))
    if p["hidden"] is True and not is_hidden(current):
        # First, so that a run stopped by any later write leaves no user at the login window.
        directory.write("set IsHidden of %s to 1" % name, create_argv(dscl, USERS, name, "IsHidden", "1"))
    if p["password_locked"]:
        if current.get("Password") != [LOCKED_PASSWORD]:
            directory.write("set Password of %s to %s" % (name, LOCKED_PASSWORD),
                            create_argv(dscl, USERS, name, "Password", LOCKED_PASSWORD))
        for key in PASSWORD_AUTHORITIES:
            if current.get(key):
                directory.write("remove %s of %s" % (key, name), delete_argv(dscl, USERS, name, key))
    if current_uid is None:
        directory.write("set UniqueID of %s to %d" % (name, uid), create_argv(dscl, USERS, name, "UniqueID", uid))
    for option, key in ATTRIBUTES:
        value = wanted[option]
        if value is not None and current.get(key) != [str(value)]:
            directory.write("set %s of %s to %s" % (key, name, value), create_argv(dscl, USERS, name, key, value))
    if p["hidden"] is False and is_hidden(current):
        directory.write("remove IsHidden of %s" % name, delete_argv(dscl, USERS, name, "IsHidden"))

    if add or remove:
        dseditgroup = directory.bin("dseditgroup")
        for group in add:
            directory.write("add %s to %s" % (name, group), membership_argv(dseditgroup, True, name, group))
        for group in remove:
            directory.write("remove %s from %s" % (name, group), membership_argv(dseditgroup, False, name, group))
    admin_removed = ADMIN_GROUP in remove
    if admin_removed:
        module.warn("%s was a member of the %s group and %s removed from it (admin: false)."
                    % (name, ADMIN_GROUP, "would be" if directory.check_mode else "has been"))

    if p["create_home"] and home and not os.path.isdir(home):
        # createhomedir is seen to exit non-zero after making the home (Hazmat ignores its status):
        # the home on disk is the answer, the status is reported.
        argv = createhomedir_argv(directory.bin("createhomedir"), name)
        ran = directory.write("create home directory %s" % home, argv, ok=None)
        if ran is not None:
            rc, out, err = ran
            if not os.path.isdir(home):
                raise DsclError("createhomedir ran but %s does not exist (exit status %d); check that it is a local "
                                "path." % (home, rc), cmd=argv, rc=rc, stdout=out, stderr=err)
            if rc != 0:
                module.warn("createhomedir exited with status %d, but the home exists (%s), so it is taken as made%s"
                            % (rc, home, (": " + (err or out).strip()) if (err or out).strip() else "."))

    # dseditgroup's own answer also follows nested groups, which the records above do not show.
    user_exists = not (creating and directory.check_mode)
    if p["admin"] is False and user_exists and not (directory.check_mode and admin_removed):
        if directory.is_member(name, ADMIN_GROUP):
            raise DsclError("%s is still a member of %s (dseditgroup -o checkmember says yes), through a nested "
                            "group or its GeneratedUID in GroupMembers. Remove that membership by hand."
                            % (name, ADMIN_GROUP))

    groups = sorted((set(before.get("groups") or []) - set(remove)) | set(add))
    after = dict(before, state="present", uid=uid, primary_group_id=primary,
                 shell=wanted["shell"] or before.get("shell"), home=home,
                 real_name=p["real_name"] if p["real_name"] is not None else before.get("real_name"),
                 hidden=p["hidden"] if p["hidden"] is not None else before.get("hidden", False),
                 password_locked=True if p["password_locked"] else before.get("password_locked", False),
                 groups=groups, admin=ADMIN_GROUP in groups)
    return before, after, dict(user=after, uid=uid, admin_removed=admin_removed)


def check_primary_group(name, primary, p, table, creating):
    if primary is None:
        raise DsclError("primary_group_id is required %s. Create its group first "
                        "(agent_sandbox.native.dscl_group) and pass that gid."
                        % ("to create user %s" % name if creating else "because user %s has none" % name))
    gids = set(info["gid"] for info in table.values())
    if p["primary_group_id"] is not None and primary not in gids:
        raise DsclError("No local group has gid %d (primary_group_id); create the group first." % primary)
    admin_gid = (table.get(ADMIN_GROUP) or {}).get("gid")
    if p["admin"] is False and admin_gid is not None and primary == admin_gid:
        raise DsclError("The primary group of %s would be %s (gid %d) while admin is false; "
                        "choose another primary_group_id." % (name, ADMIN_GROUP, admin_gid))


def plan_groups(name, current, p, table):
    """The groups to add the user to and to remove it from, both sorted."""
    current = set(current)
    wanted = set(p["groups"]) if p["groups"] is not None else None
    if wanted is not None and p["admin"] is False and ADMIN_GROUP in wanted:
        raise DsclError("groups lists %s while admin is false; drop one of them." % ADMIN_GROUP)
    needed = set(wanted or ()) | (set([ADMIN_GROUP]) if p["admin"] else set())
    missing = sorted(group for group in needed if group not in table)
    if missing:
        raise DsclError("No local group named %s; create it first (agent_sandbox.native.dscl_group)."
                        % ", ".join(missing))
    add, remove = set(), set()
    if wanted is not None:
        add |= wanted - current
        if not p["append"]:
            remove |= current - wanted
    if p["admin"] is True:
        remove.discard(ADMIN_GROUP)
        if ADMIN_GROUP not in current:
            add.add(ADMIN_GROUP)
    elif ADMIN_GROUP in current:
        remove.add(ADMIN_GROUP)
    return sorted(add), sorted(remove)


def ensure_absent(module, directory, name, record):
    if record is None:
        view = user_view(name, None, {})
        return view, view, dict(user=view)
    table = directory.groups()
    before = user_view(name, record, table)
    uid = before["uid"]
    if uid == 0:
        raise DsclError("Refusing to delete %s: its uid is 0 (root)." % name)
    # Deleting a user record is kept for Full Disk Access: find out before its memberships go.
    directory.require_write_access()
    if before["groups"]:
        dseditgroup = directory.bin("dseditgroup")
        # Before the record goes: dseditgroup looks the user up to drop its GeneratedUID too.
        for group in before["groups"]:
            directory.write("remove %s from %s" % (name, group), membership_argv(dseditgroup, False, name, group))
    home = before["home"]
    if module.params["remove_home"] and home and os.path.lexists(home):
        if uid is not None and owned_directory(home, uid):
            directory.write("remove home directory %s" % home, call=remove_tree(home))
        else:
            module.warn("Not removing %s: it is not a directory owned by uid %s." % (home, uid))
    directory.write("delete user %s" % name, delete_argv(directory.bin("dscl"), USERS, name))
    after = user_view(name, None, {})
    return before, after, dict(user=after)


def main():
    module = AnsibleModule(
        argument_spec=record_argument_spec(
            "uid",
            primary_group_id=dict(type="int"),
            shell=dict(type="str"),
            home=dict(type="path"),
            create_home=dict(type="bool", default=True),
            real_name=dict(type="str"),
            hidden=dict(type="bool"),
            password_locked=dict(type="bool", default=True, no_log=False),
            groups=dict(type="list", elements="str"),
            append=dict(type="bool", default=False),
            admin=dict(type="bool", default=False),
            remove_home=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
