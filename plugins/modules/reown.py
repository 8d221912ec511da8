#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: reown
short_description: Give what a folder kept from an earlier install to the user made again, never following links
version_added: 0.1.0
description:
  - Walks O(path) (staying on its file system) and changes the owner and group of entries to O(owner) and O(group).
  - Made for what a teardown keeps (the proxy's audit log, an agent's home) when the user is made again with
    another uid, and for folders that a less trusted user can write.
  - The walk holds each folder open and changes entries relative to it without following any link, so an entry
    swapped for a symlink while it runs cannot redirect a change outside O(path). Symlinks themselves are re-owned,
    never their targets.
  - Entries owned by root and regular files with more than one hard link are never changed (a link planted to a
    file elsewhere must not hand that file over); they are listed in RV(skipped).
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description:
      - The folder to walk. It must exist, be a folder and not a symlink.
    type: path
    required: true
  owner:
    description:
      - The user that gets the entries.
    type: str
    required: true
  group:
    description:
      - The group that gets the entries.
    type: str
    required: true
  only_stale:
    description:
      - When true, only an owner uid that no user has any more is changed to O(owner), and only a gid that no group
        has any more to O(group). Entries of existing accounts stay theirs.
      - When false, every entry not owned by O(owner) and O(group) is changed (subject to the root and hard-link rules).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Counts and lists what it would change.
  diff_mode:
    support: full
    details: Lists up to 20 changed entries with their owner and group before and after.
  platform:
    platforms: posix
notes:
  - Requires root to change owners.
"""

EXAMPLES = r"""
- name: Give the kept audit log to the proxy user made again
  agent_sandbox.native.reown:
    path: /var/log/agent-sandbox/proxy
    owner: agent-proxy
    group: adm

- name: Give a kept home's orphaned files to the agent made again
  agent_sandbox.native.reown:
    path: /home/agent
    owner: agent
    group: agent
    only_stale: true
"""

RETURN = r"""
count:
  description: How many entries were changed (in check mode, would be).
  returned: always
  type: int
  sample: 3
paths:
  description: Up to 20 of the changed entries.
  returned: always
  type: list
  elements: str
  sample: [/var/log/agent-sandbox/proxy/audit.jsonl]
skipped:
  description: Up to 20 entries left as they were because root owns them or they have more than one hard link.
  returned: always
  type: list
  elements: str
  sample: []
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError, run_and_exit

SHOWN = 20


def exists(lookup, ident, cache):
    if ident not in cache:
        try:
            lookup(ident)
            cache[ident] = True
        except KeyError:
            cache[ident] = False
    return cache[ident]


class Walk:
    def __init__(self, uid, gid, only_stale, check_mode):
        self.uid, self.gid, self.only_stale, self.check_mode = uid, gid, only_stale, check_mode
        self.users, self.groups = {}, {}
        self.changed, self.skipped = [], []

    def target(self, st):
        """The (uid, gid) the entry should get, or None when it stays as it is."""
        uid, gid = st.st_uid, st.st_gid
        if self.only_stale:
            new_uid = uid if exists(pwd.getpwuid, uid, self.users) else self.uid
            new_gid = gid if exists(grp.getgrgid, gid, self.groups) else self.gid
        else:
            new_uid, new_gid = self.uid, self.gid
        return None if (new_uid, new_gid) == (uid, gid) else (new_uid, new_gid)

    def visit(self, path, name, dir_fd):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        new = self.target(st)
        if new is None:
            return
        if st.st_uid == 0 or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            self.skipped.append(path)
            return
        self.changed.append((path, st.st_uid, st.st_gid, new))
        if not self.check_mode:
            os.chown(name, new[0], new[1], dir_fd=dir_fd, follow_symlinks=False)


def run(module):
    path, only_stale = module.params["path"], module.params["only_stale"]
    try:
        uid = pwd.getpwnam(module.params["owner"]).pw_uid
        gid = grp.getgrnam(module.params["group"]).gr_gid
    except KeyError as exc:
        raise CommandError("no such user or group: %s" % exc)
    try:
        top = os.lstat(path)
    except OSError as exc:
        raise CommandError("cannot read %s: %s" % (path, exc.strerror))
    if not stat.S_ISDIR(top.st_mode):
        raise CommandError("%s is not a folder (a symlink or file is never walked)" % path)

    walk = Walk(uid, gid, only_stale, module.check_mode)
    parent_fd = os.open(os.path.dirname(os.path.abspath(path)) or "/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk.visit(path, os.path.basename(os.path.abspath(path)), parent_fd)
    finally:
        os.close(parent_fd)
    for root, dirs, files, root_fd in os.fwalk(path, follow_symlinks=False):
        for name in list(dirs):
            if os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_dev != top.st_dev:
                dirs.remove(name)  # another file system: not ours to walk
        for name in dirs + files:
            walk.visit(os.path.join(root, name), name, root_fd)

    result = {"changed": bool(walk.changed), "count": len(walk.changed),
              "paths": [entry[0] for entry in walk.changed[:SHOWN]], "skipped": walk.skipped[:SHOWN]}
    if module._diff:
        shown = walk.changed[:SHOWN]
        result["diff"] = {
            "before_header": path, "after_header": path,
            "before": "".join("%s %d:%d\n" % (p, u, g) for p, u, g, new in shown),
            "after": "".join("%s %d:%d\n" % (p, new[0], new[1]) for p, u, g, new in shown),
        }
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="str", required=True),
            only_stale=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
