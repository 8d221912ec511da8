#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: paths
short_description: Make a list of folders and files, with their owner, group and mode, in one step
version_added: 0.2.0
description:
  - Brings each entry of O(entries) to its state, in the order given, in one module run (a folder, a file with the
    given content, or nothing). A role that installs ten files and folders spends one run on the target instead of ten,
    which is most of what a re-run that changes nothing costs.
  - A file is written to a new name in the same folder, given its owner, group and mode, checked with O(entries[].validate)
    when that is set, and only then renamed over the old one; a file that fails its check replaces nothing.
  - No entry is ever followed when it is a link. A link (or any other kind of entry) where a folder or file should be
    fails the task and is left as it is, as do the entries after it; the entries before it stay done.
  - Parent folders must exist (an earlier entry may make them). The path up to the parent is resolved as usual, so use
    this module for places that only root, or the accounts you name, can write; write into a folder that a less
    trusted user controls as that user instead.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  entries:
    description:
      - The folders and files, in the order they are made.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - An absolute path.
        type: path
        required: true
      state:
        description:
          - V(directory) makes a folder, V(file) a regular file with O(entries[].content), V(absent) removes a file, a
            link or an empty folder (a folder that is not empty fails the task).
        type: str
        choices: [directory, file, absent]
        default: file
      content:
        description:
          - The text of the file, written as UTF-8. Required with V(file).
        type: str
      owner:
        description:
          - The owner's name or uid. Defaults to O(owner); with neither, a new entry belongs to the user the module
            runs as and an existing one keeps its owner.
        type: str
      group:
        description:
          - The group's name or gid. Defaults to O(group); with neither, a new entry gets the group the system gives
            it and an existing one keeps its group.
        type: str
      mode:
        description:
          - Four octal digits, as a string (V("0644"), V("2750")). Defaults to O(mode).
        type: str
      validate:
        description:
          - A command that checks the new file before it replaces the old one; C(%s) is replaced by the new file's path.
            The file is only renamed into place when the command exits with 0. Split like a shell would, never run
            through one.
        type: str
  owner:
    description:
      - The owner of every entry that does not name one.
    type: str
  group:
    description:
      - The group of every entry that does not name one.
    type: str
  mode:
    description:
      - The mode of every entry that does not give one.
    type: str
attributes:
  check_mode:
    support: full
    details: Reports what it would make, change or remove, and changes nothing.
  diff_mode:
    support: full
    details: One diff per entry that changes, with the path as header; files show their text before and after.
  platform:
    platforms: posix
notes:
  - Every folder and file needs a mode, from the entry or from the module's defaults.
  - Does not manage SELinux contexts or access control lists.
"""

EXAMPLES = r"""
- name: Install the proxy's folders and its addon package
  agent_sandbox.native.paths:
    owner: root
    group: root
    mode: "0755"
    entries:
      - {path: /opt/agent-sandbox, state: directory}
      - {path: /etc/agent-sandbox/proxy, state: directory, group: agent-proxy, mode: "0750"}
      - path: /opt/agent-sandbox/proxy-addon/agent_sandbox_proxy/__init__.py
        content: "{{ lookup('ansible.builtin.file', 'agent_sandbox_proxy/__init__.py') }}\n"
        mode: "0644"
      - {path: /opt/agent-sandbox/agent_sandbox_policy.py, state: absent}
  notify: mitm_proxy restart

- name: Write the rules, after nft accepted them
  agent_sandbox.native.paths:
    entries:
      - path: /etc/nftables.d/agent-sandbox.nft
        content: "{{ lookup('ansible.builtin.template', 'agent-sandbox.nft.j2') }}"
        owner: root
        group: root
        mode: "0600"
        validate: nft -c -f %s
"""

RETURN = r"""
paths:
  description: The entries that were (in check mode, would be) made, changed or removed.
  returned: always
  type: list
  elements: str
  sample: [/opt/agent-sandbox/proxy-addon/agent_sandbox_proxy/policy.py]
"""

import grp
import os
import pwd
import re
import shlex
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError, run_and_exit

MODE = re.compile(r"^[0-7]{4}$")
SHOWN_BYTES = 64 * 1024  # longer files are shown as their size in a diff


def resolve(lookup, name, what):
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)[2]
    except KeyError:
        raise CommandError("no such %s: %s" % (what, name))


def kind(st):
    if st is None:
        return "nothing"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    if stat.S_ISLNK(st.st_mode):
        return "a link"
    return "a special file"


def attrs(st):
    return "%s:%s %04o" % (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def shown(data):
    if len(data) > SHOWN_BYTES or b"\0" in data:
        return "(%d bytes)\n" % len(data)
    return data.decode("utf-8", "replace")


class Entry:
    """One entry, checked and normalised before anything is changed."""

    def __init__(self, raw, defaults, index):
        self.path = raw["path"]
        self.state = raw["state"]
        where = "entries[%d] (%s)" % (index, self.path)
        if not os.path.isabs(self.path) or self.path.rstrip("/") in ("", ".") or os.path.basename(self.path) in ("", ".", ".."):
            raise CommandError("%s: the path must be absolute and name a file or folder" % where)
        self.path = os.path.normpath(self.path)
        self.content = raw.get("content")
        self.validate = raw.get("validate")
        if self.state == "file" and self.content is None:
            raise CommandError("%s: a file needs content" % where)
        if self.state != "file" and (self.content is not None or self.validate):
            raise CommandError("%s: content and validate are for files only" % where)
        if self.validate and "%s" not in self.validate:
            raise CommandError("%s: validate must contain %%s, the new file's path" % where)
        self.uid = self.gid = self.mode = None
        if self.state != "absent":
            owner, group, mode = (raw.get(key) or defaults[key] for key in ("owner", "group", "mode"))
            if not mode:
                raise CommandError("%s: give a mode (on the entry or the module)" % where)
            if not MODE.match(mode):
                raise CommandError("%s: mode %r is not four octal digits in quotes, such as \"0644\"" % (where, mode))
            self.uid = resolve(pwd.getpwnam, owner, "user") if owner else None
            self.gid = resolve(grp.getgrnam, group, "group") if group else None
            self.mode = int(mode, 8)
        self.data = self.content.encode("utf-8") if self.content is not None else None

    def wanted(self, st=None):
        uid = self.uid if self.uid is not None else (st.st_uid if st else os.geteuid())
        gid = self.gid if self.gid is not None else (st.st_gid if st else "-")
        return "%s:%s %04o" % (uid, gid, self.mode)

    def matches(self, st):
        return ((self.uid is None or st.st_uid == self.uid) and (self.gid is None or st.st_gid == self.gid)
                and stat.S_IMODE(st.st_mode) == self.mode)


class Paths:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.changed, self.diffs = [], []
        self.made = set()  # folders made (or that would be, in check mode) in this run

    def note(self, entry, before, after, before_text="", after_text=""):
        self.changed.append(entry.path)
        self.diffs.append({"before_header": entry.path, "after_header": entry.path,
                           "before": before + "\n" + before_text, "after": after + "\n" + after_text})

    def parent(self, entry):
        """An open descriptor of the entry's folder; None when it does not exist yet in check mode."""
        folder = os.path.dirname(entry.path)
        try:
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if self.check and folder in self.made:
                return None
            raise CommandError("%s: cannot open its folder %s: %s" % (entry.path, folder, exc.strerror))

    def apply(self, entry):
        fd = self.parent(entry)
        if fd is None:  # check mode, inside a folder this run would make
            if entry.state == "directory":
                self.made.add(entry.path)
            if entry.state != "absent":
                self.note(entry, "nothing", "%s %s" % (entry.state, entry.wanted()), "", shown(entry.data or b""))
            return
        try:
            name = os.path.basename(entry.path)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            getattr(self, entry.state)(entry, fd, name, st)
        finally:
            os.close(fd)

    def refuse(self, entry, st, wanted):
        raise CommandError("%s is %s where %s should be: left as it is (nothing is ever followed or replaced "
                           "through a link); remove it and run again" % (entry.path, kind(st), wanted))

    def absent(self, entry, fd, name, st):
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            handle = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                if os.listdir(handle):
                    raise CommandError("%s is a folder that is not empty: not removed" % entry.path)
            finally:
                os.close(handle)
        self.note(entry, "%s %s" % (kind(st), attrs(st)), "nothing")
        if not self.check:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)

    def directory(self, entry, fd, name, st):
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self.refuse(entry, st, "a folder")
        if st is None:
            self.note(entry, "nothing", "directory %s" % entry.wanted())
            self.made.add(entry.path)
            if self.check:
                return
            os.mkdir(name, 0o700, dir_fd=fd)
        handle = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            self.fix(entry, handle, st)
        finally:
            os.close(handle)

    def fix(self, entry, handle, old):
        """Owner, group and mode through an open descriptor; old is None for what this run made."""
        st = os.fstat(handle)
        if entry.matches(st):
            return
        if old is not None:
            self.note(entry, "%s %s" % (kind(st), attrs(st)), "%s %s" % (kind(st), entry.wanted(st)))
        if not self.check:
            self.own(handle, entry)

    @staticmethod
    def own(handle, entry):
        """The owner and group the entry names, then its mode."""
        if entry.uid is not None or entry.gid is not None:
            os.fchown(handle, -1 if entry.uid is None else entry.uid, -1 if entry.gid is None else entry.gid)
        os.fchmod(handle, entry.mode)  # after chown, which clears setuid and setgid bits

    def file(self, entry, fd, name, st):
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.refuse(entry, st, "a file")
        old = None
        if st is not None:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                old = b"".join(iter(lambda: os.read(handle, 1 << 20), b""))
                if old == entry.data:
                    self.fix(entry, handle, st)
                    return
            finally:
                os.close(handle)
        self.note(entry, "nothing" if st is None else "file %s" % attrs(st), "file %s" % entry.wanted(st),
                  shown(old or b""), shown(entry.data))
        if not self.check:
            self.write(entry, fd, name, st)

    def write(self, entry, fd, name, old):
        """A new file beside the old one (with the old one's owner and group where the entry names none),
        checked, then renamed over it."""
        folder = os.path.dirname(entry.path)
        handle, temp = tempfile.mkstemp(prefix=".%s." % name, suffix=".agent-sandbox", dir=folder)
        temp_name = os.path.basename(temp)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(entry.data)
                out.flush()
                if old is not None and (entry.uid is None or entry.gid is None):
                    os.fchown(out.fileno(), old.st_uid if entry.uid is None else -1, old.st_gid if entry.gid is None else -1)
                self.own(out.fileno(), entry)
                os.fsync(out.fileno())
            if entry.validate:
                argv = [temp if word == "%s" else word.replace("%s", temp) for word in shlex.split(entry.validate)]
                rc, out, err = self.module.run_command(argv)
                if rc != 0:
                    raise CommandError("%s: the new file failed its check (%s); the old one is unchanged"
                                       % (entry.path, entry.validate), cmd=argv, rc=rc, stdout=out, stderr=err)
            os.rename(temp_name, name, src_dir_fd=fd, dst_dir_fd=fd)
            temp = None
        finally:
            if temp is not None:
                try:
                    os.unlink(temp_name, dir_fd=fd)
                except FileNotFoundError:
                    pass


def run(module):
    defaults = {key: module.params[key] for key in ("owner", "group", "mode")}
    entries = [Entry(raw, defaults, index) for index, raw in enumerate(module.params["entries"])]
    paths = Paths(module)
    for entry in entries:
        try:
            paths.apply(entry)
        except OSError as exc:
            raise CommandError("%s: %s" % (entry.path, exc.strerror or exc))
    result = {"changed": bool(paths.changed), "paths": paths.changed}
    if module._diff and paths.diffs:
        result["diff"] = paths.diffs
    return result


def main():
    entry = dict(
        path=dict(type="path", required=True),
        state=dict(type="str", choices=["directory", "file", "absent"], default="file"),
        content=dict(type="str"),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="str"),
        validate=dict(type="str"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            entries=dict(type="list", elements="dict", required=True, options=entry),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
