#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: launchd_job
short_description: Load, reload, restart or remove a macOS LaunchDaemon
version_added: 0.2.0
description:
  - Keeps a job of launchd's system domain loaded from its property list, and makes launchd read that
    file again when it changed.
  - launchd reads a property list only when the job is bootstrapped; C(launchctl kickstart -k) restarts
    the job with the definition launchd already holds. So a changed file needs C(launchctl bootout),
    then a wait until C(launchctl print) no longer finds the job (bootout returns before the job has
    gone, and a bootstrap before that fails with error 5, Input/output error), then C(launchctl bootstrap).
  - A bootstrap runs a job that has C(RunAtLoad) at once.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  label:
    description:
      - The job's label, as in the C(Label) key of its property list.
    type: str
    required: true
  plist:
    description:
      - Path of the job's property list, for example C(/Library/LaunchDaemons/org.example.job.plist).
      - Required with O(state=present).
    type: path
  state:
    description:
      - V(present) loads the job when launchd does not hold it. V(absent) boots it out and waits until
        it has gone.
    type: str
    choices: [present, absent]
    default: present
  reload:
    description:
      - With O(state=present) and the job loaded, boot it out, wait until it has gone and bootstrap it
        again, so that launchd reads O(plist) anew. Pass whether the file changed in this run.
    type: bool
    default: false
  restart:
    description:
      - With O(state=present), restart a loaded job with C(launchctl kickstart -k) (its program or
        inputs changed, its definition did not). Nothing more happens when this run already
        bootstrapped it.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for a booted-out job to leave launchd before the module fails.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    details: Reads launchd's state and reports what it would do, without doing it.
  diff_mode:
    support: full
    details: The diff says whether the job was loaded before and after.
  platform:
    platforms: darwin
notes:
  - Requires root for the system domain.
  - Only the system domain (LaunchDaemons) is handled.
"""

EXAMPLES = r"""
- name: Install the LaunchDaemon
  ansible.builtin.template:
    src: launchd.plist.j2
    dest: /Library/LaunchDaemons/org.example.job.plist
    mode: "0644"
  register: plist

- name: Load the LaunchDaemon, and reload it when its file changed
  agent_sandbox.native.launchd_job:
    label: org.example.job
    plist: /Library/LaunchDaemons/org.example.job.plist
    reload: "{{ plist is changed }}"
"""

RETURN = r"""
loaded_before:
  description: Whether launchd held the job before the module ran.
  returned: always
  type: bool
  sample: true
actions:
  description: The launchctl commands that changed something, in order (in check mode, those it would run).
  returned: always
  type: list
  elements: str
  sample: ["bootout system/org.example.job", "bootstrap system /Library/LaunchDaemons/org.example.job.plist"]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError, run_and_exit

# launchctl's exit status for "Could not find service ... in domain for system".
NOT_FOUND = 113
# "Bootstrap failed: 5: Input/output error": the label is still held (or going away).
BUSY = 5
POLL_SECONDS = 0.5


class Launchctl:
    def __init__(self, module):
        self.module = module
        self.path = module.get_bin_path("launchctl", required=True, opt_dirs=["/bin", "/usr/bin"])

    def run(self, *args):
        return self.module.run_command([self.path] + list(args))

    def loaded(self, label):
        rc, stdout, stderr = self.run("print", "system/" + label)
        if rc == 0:
            return True
        if rc == NOT_FOUND or "Could not find service" in stderr:
            return False
        raise CommandError("launchctl print failed", [self.path, "print", "system/" + label], rc, stdout, stderr)

    def change(self, *args, ok=(0,)):
        rc, stdout, stderr = self.run(*args)
        if rc not in ok:
            raise CommandError("launchctl %s failed" % args[0], [self.path] + list(args), rc, stdout, stderr)
        return rc

    def wait_gone(self, label, timeout):
        deadline = time.monotonic() + timeout
        while self.loaded(label):
            if time.monotonic() > deadline:
                raise CommandError("launchd still holds system/%s %d s after bootout" % (label, timeout))
            time.sleep(POLL_SECONDS)

    def bootstrap(self, plist, timeout):
        # The label can stay busy a moment after print stops finding it: try again until the deadline.
        deadline = time.monotonic() + timeout
        while True:
            rc, stdout, stderr = self.run("bootstrap", "system", plist)
            if rc == 0:
                return
            if rc != BUSY or time.monotonic() > deadline:
                raise CommandError("launchctl bootstrap failed", [self.path, "bootstrap", "system", plist],
                                   rc, stdout, stderr)
            time.sleep(POLL_SECONDS)


def run(module):
    params = module.params
    label, plist, timeout = params["label"], params["plist"], params["wait_timeout"]
    launchctl = Launchctl(module)
    before = launchctl.loaded(label)
    target = "system/" + label
    actions = []
    if params["state"] == "absent":
        if before:
            actions.append("bootout " + target)
    elif not before:
        actions.append("bootstrap system " + plist)
    elif params["reload"]:
        actions += ["bootout " + target, "bootstrap system " + plist]
    elif params["restart"]:
        actions.append("kickstart -k " + target)

    if not module.check_mode:
        for action in actions:
            words = action.split()
            if words[0] == "bootout":
                # A job that left between the read and now is what we want: exit 3 is fine.
                launchctl.change(*words, ok=(0, 3))
                launchctl.wait_gone(label, timeout)
            elif words[0] == "bootstrap":
                launchctl.bootstrap(plist, timeout)
            else:
                launchctl.change(*words)
    after = params["state"] == "present"
    result = {"changed": bool(actions), "loaded_before": before, "actions": actions}
    if module._diff:
        result["diff"] = {"before_header": target, "after_header": target,
                          "before": "loaded: %s\n" % before, "after": "loaded: %s\n" % after}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            label=dict(type="str", required=True),
            plist=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            reload=dict(type="bool", default=False),
            restart=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=30),
        ),
        required_if=[("state", "present", ["plist"])],
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
