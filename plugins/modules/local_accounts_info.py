#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: local_accounts_info
short_description: Read local users and groups the same way on Linux and macOS
version_added: 0.1.0
description:
  - Describes the users named in O(users) (uid, primary gid and group name, home, shell and every group they are in) and
    the groups named in O(groups) (gid and members). A name that does not exist is reported with C(exists=false), never
    as an error.
  - With O(all_accounts=true) it also lists every user (uid, gid, home, shell) and every group (gid, members), for
    questions such as "is this uid taken" or "which homes are there".
  - Always returns the account the module runs as in RV(current_user); with C(become=false) that is the user who ran
    the play.
  - On Linux the C library answers (Python's C(pwd), C(grp) and C(os.getgrouplist)), following C(nsswitch.conf) as
    C(getent) and C(id) do; no command is run.
  - On macOS the local Directory Services node is read with C(dscl -plist . -read /Users/NAME UniqueID PrimaryGroupID
    NFSHomeDirectory UserShell RecordName), the groups with C(dscl -plist . -readall /Groups) and each user's groups
    with C(id -Gn NAME). C(id) asks the membership resolver, so the groups include the primary group, nested groups
    and implicit ones such as C(everyone), as the user gets them at login; a group record lists its direct members only.
  - Never reads password material.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; it changes nothing in any mode.
  diff_mode:
    support: none
  platform:
    platforms: [posix, darwin]
options:
  users:
    description:
      - Names of the users to describe in RV(users).
      - On macOS a name must be a short name usable in a record path (letters, digits, C(_), C(.) and C(-), starting with
        a letter or C(_)); another name fails the task.
    type: list
    elements: str
    default: []
  groups:
    description:
      - Names of the groups to describe in RV(groups).
    type: list
    elements: str
    default: []
  all_accounts:
    description:
      - Also list every user in RV(all_users) and every group in RV(all_groups).
    type: bool
    default: false
notes:
  - A group's C(members) are the names its entry lists (C(/etc/group), C(GroupMembership)); users whose primary group it
    is are not among them unless listed too. A user's C(groups) are complete.
seealso:
  - module: agent_sandbox.native.dscl_user_info
"""

EXAMPLES = r"""
- name: Read the agent, the admin and the Nix build group
  agent_sandbox.native.local_accounts_info:
    users: [agent, alice]
    groups: [nixbld]
  register: accounts

- name: Stop when the agent is in a privileged group
  ansible.builtin.assert:
    that: accounts.users.agent.groups | intersect(['sudo', 'wheel', 'admin', 'docker']) | length == 0
    fail_msg: "agent is in {{ accounts.users.agent.groups | intersect(['sudo', 'wheel', 'admin', 'docker']) }}."

- name: Find the user who runs the play and every home
  agent_sandbox.native.local_accounts_info:
    all_accounts: true
  become: false
  register: everyone

- name: Stop when uid 600 belongs to another user than the agent
  ansible.builtin.assert:
    that: >-
      everyone.all_users | dict2items | selectattr('value.uid', 'equalto', 600)
      | rejectattr('key', 'equalto', 'agent') | list | length == 0
"""

RETURN = r"""
users:
  description:
    - One entry per name in O(users), keyed by that name.
    - For a name that does not exist, C(exists) is V(false), C(groups) is empty and the other values are V(null).
  returned: always
  type: dict
  sample:
    agent: {name: agent, exists: true, uid: 1001, gid: 1001, group: agent, home: /home/agent, shell: /bin/bash,
            groups: [agent, agent-share]}
    nosuch: {name: nosuch, exists: false, uid: null, gid: null, group: null, home: null, shell: null, groups: []}
  contains:
    name:
      description: The user's name as the system spells it (on macOS the first C(RecordName)).
      type: str
    exists:
      description: Whether the user exists.
      type: bool
    uid:
      description: The user id.
      type: int
    gid:
      description: The primary group id.
      type: int
    group:
      description: The name of the primary group; V(null) when no group has that gid.
      type: str
    home:
      description: The home directory.
      type: str
    shell:
      description: The login shell.
      type: str
    groups:
      description:
        - Every group the user is in, the primary group and the supplementary ones, sorted by name.
        - A group id without a name is given as its number.
      type: list
      elements: str
groups:
  description:
    - One entry per name in O(groups), keyed by that name.
    - For a name that does not exist, C(exists) is V(false), C(gid) is V(null) and C(members) is empty.
  returned: always
  type: dict
  sample:
    nixbld: {name: nixbld, exists: true, gid: 30000, members: [nixbld1, nixbld2]}
  contains:
    name:
      description: The group's name.
      type: str
    exists:
      description: Whether the group exists.
      type: bool
    gid:
      description: The group id.
      type: int
    members:
      description: The members the group entry lists, sorted.
      type: list
      elements: str
current_user:
  description: The account the module runs as; C(name) is V(null) when no user has that uid.
  returned: always
  type: dict
  sample: {name: alice, uid: 1000}
all_users:
  description: Every user, keyed by name, with C(name), C(uid), C(gid), C(home) and C(shell).
  returned: when O(all_accounts=true)
  type: dict
  sample:
    root: {name: root, uid: 0, gid: 0, home: /root, shell: /bin/bash}
    alice: {name: alice, uid: 1000, gid: 1000, home: /home/alice, shell: /bin/bash}
all_groups:
  description: Every group, keyed by name, with C(name), C(gid) and C(members) (as in RV(groups)).
  returned: when O(all_accounts=true)
  type: dict
  sample:
    sudo: {name: sudo, gid: 27, members: [alice]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._accounts import read_accounts
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit


def run(module):
    result = read_accounts(module, users=module.params["users"], groups=module.params["groups"],
                           all_accounts=module.params["all_accounts"])
    return dict(result, changed=False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            users=dict(type="list", elements="str", default=[]),
            groups=dict(type="list", elements="str", default=[]),
            all_accounts=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
