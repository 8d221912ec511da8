#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dscl_user_info
short_description: Read local macOS users through dscl
version_added: 0.1.0
description:
  - Lists the uid of every user in the local Directory Services node (C(dscl -plist . -readall /Users), as
    M(agent_sandbox.native.local_accounts_info) reads it) and,
    with O(name), reads that user's managed attributes (C(dscl -plist . -read /Users/NAME)).
  - Meant for validation before anything changes, for example to stop a run when a wanted uid belongs to another user.
  - Never returns password material.
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
    platforms: darwin
options:
  name:
    description:
      - Short name of a user to describe in RV(user).
    type: str
seealso:
  - module: agent_sandbox.native.dscl_user
  - module: agent_sandbox.native.local_accounts_info
"""

EXAMPLES = r"""
- name: Read the local users and the agent user
  agent_sandbox.native.dscl_user_info:
    name: agent
  register: local_users

- name: Stop when the wanted uid belongs to another user
  ansible.builtin.assert:
    that:
      - local_users.uids | dict2items | selectattr('value', 'equalto', 600) | rejectattr('key', 'equalto', 'agent') | list | length == 0
    fail_msg: "uid 600 is taken by another user; choose another sandbox_user_uid."
"""

RETURN = r"""
uids:
  description: The uid of every local user, by short name.
  returned: always
  type: dict
  sample: {"root": 0, "nobody": -2, "alice": 501}
user:
  description:
    - The managed attributes of O(name); only C(name) and C(state=absent) when there is no such user.
    - V(null) when O(name) is unset.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._dscl import (
    USERS,
    Directory,
    user_view,
    validate_name,
)
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit


def run(module):
    directory = Directory(module)
    # The same plist read of every user as local_accounts_info; a record without a uid is left out.
    uids = {name: view["uid"] for name, view in directory.accounts().items() if view["uid"] is not None}
    result = dict(changed=False, uids=uids, user=None)
    name = module.params["name"]
    if name is not None:
        validate_name(name)
        record = directory.read(USERS, name)
        result["user"] = user_view(name, record, directory.groups() if record is not None else {})
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str")),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
