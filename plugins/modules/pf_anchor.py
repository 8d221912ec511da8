#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pf_anchor
short_description: Manage the filter rules of one macOS pf anchor
version_added: 0.1.0
description:
  - Loads a set of pf filter rules into one named anchor with C(pfctl -a NAME -f FILE), or flushes that
    anchor's rules. The main ruleset and every other anchor are left alone.
  - The rules are always checked first with a dry run, C(pfctl -a NAME -n -v -f FILE), in check mode too.
    Rules pfctl rejects fail the task with pfctl's message and leave the running rules as they were.
  - The dry run prints the rules in pfctl's canonical form, the same form C(pfctl -a NAME -s rules)
    prints for loaded rules (for example C(pass out proto tcp to 127.0.0.1 port 8080) becomes
    C(pass out inet proto tcp from any to 127.0.0.1 port = 8080 flags S/SA keep state)). The module
    compares those two listings, so a rerun with the same rules changes nothing, however the rules
    were spelled.
  - The rules are written to a private temporary file (mode 0600) for pfctl; they never appear in argv.
  - The anchor only filters traffic if the main ruleset evaluates it. On macOS the stock
    C(/etc/pf.conf) evaluates C(com.apple/*), so a sub-anchor such as C(com.apple/agent_sandbox) is
    evaluated without editing system files; a top-level anchor needs an C(anchor) rule in the main
    ruleset. This module does not enable pf; use C(pfctl -E) and keep the token it prints.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  name:
    description:
      - Anchor path, for example C(agent_sandbox) or C(com.apple/agent_sandbox).
      - Refused when empty (that is the main ruleset), when it starts with C(/), contains C(..),
        whitespace, an empty component, C(*) or a component starting with C(_), and for C(com.apple)
        itself, which holds macOS's own anchor references.
    type: str
    required: true
  rules:
    description:
      - The anchor's rules in pf.conf(5) syntax, as one text or a list of lines.
      - Macros (C(name = "value")) may be used. Translation rules (C(nat), C(rdr), C(binat)), tables,
        nested anchors and options are refused, because C(pfctl -s rules) cannot show them, so a change
        to them could not be detected, or because they reach beyond this anchor's filter rules.
      - An empty list or text loads an empty ruleset, which leaves the anchor without rules.
      - Mutually exclusive with O(src). One of them is required when O(state=present).
    type: raw
  src:
    description:
      - Path on the managed host of a file holding the rules, instead of O(rules). The same rules apply.
    type: path
  state:
    description:
      - V(present) makes the anchor hold exactly the given rules.
      - V(absent) flushes the anchor's filter rules with C(pfctl -a NAME -F rules), if it has any.
    type: str
    choices: [present, absent]
    default: present
  flush_states:
    description:
      - After the rules were loaded or flushed (only when something changed), flush pf's state table
        so connections the old rules let through must match the new rules.
      - pf keeps one state table for all rulesets and pfctl cannot flush only the states one anchor's
        rules created, so this flushes B(every) state on the host, C(pfctl -F state). Connections of
        other users, the admin's SSH session included, are reset as well.
    type: bool
    default: false
  pfctl_path:
    description:
      - Path to pfctl. By default it is looked up in the PATH, C(/sbin) and C(/usr/sbin).
    type: path
attributes:
  check_mode:
    support: full
    details: The dry run and the reads still run; nothing is loaded or flushed.
  diff_mode:
    support: full
    details: Shows the anchor's rules before and after, in pfctl's canonical form.
  platform:
    platforms: darwin
notes:
  - Requires root, as pfctl does.
  - The comparison covers filter and scrub rules, which is what C(pfctl -s rules) shows.
seealso:
  - module: agent_sandbox.native.pf_info
  - name: pfctl(8)
    description: The pfctl manual page on macOS.
    link: https://keith.github.io/xcode-man-pages/pfctl.8.html
  - name: pf.conf(5)
    description: The pf.conf manual page on macOS.
    link: https://keith.github.io/xcode-man-pages/pf.conf.5.html
"""

EXAMPLES = r"""
- name: Confine the agent user to the proxy
  agent_sandbox.native.pf_anchor:
    name: com.apple/agent_sandbox
    rules:
      - 'proxy_port = "8080"'
      - pass out quick on lo0 proto tcp from any to { 127.0.0.1 ::1 } port $proxy_port user agent
      - block drop out quick proto { tcp udp } all user agent

- name: Load the anchor from a rendered file
  agent_sandbox.native.pf_anchor:
    name: agent_sandbox
    src: /etc/agent-sandbox/pf-anchor.conf
    flush_states: true

- name: Remove the agent's rules
  agent_sandbox.native.pf_anchor:
    name: com.apple/agent_sandbox
    state: absent
"""

RETURN = r"""
rules:
  description: The anchor's rules after the run (in check mode, the rules it would hold), as pfctl prints them.
  returned: always
  type: list
  elements: str
  sample:
    - pass out quick on lo0 inet proto tcp from any to 127.0.0.1 port = 8080 user = 501 flags S/SA keep state
    - block drop out quick proto tcp all user = 501
commands:
  description: The pfctl commands that changed something (in check mode, that would have run). Reads are not listed.
  returned: always
  type: list
  elements: list
  sample:
    - ["/sbin/pfctl", "-a", "com.apple/agent_sandbox", "-f", "/tmp/ansible-tmp/pf_anchor.x1y2.conf"]
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit
from ansible_collections.agent_sandbox.native.plugins.module_utils._pfctl import (
    Pfctl,
    PfctlError,
    find_pfctl,
    rules_diff_text,
    rules_to_text,
    validate_anchor_name,
)


def _read_src(path):
    try:
        with open(path, "rb") as handle:
            return to_native(handle.read(), errors="surrogate_or_strict")
    except (OSError, UnicodeError) as exc:
        raise PfctlError("Cannot read the rules from src %s: %s" % (path, to_native(exc))) from None


def _write_rules_file(module, text):
    # mkstemp creates the file 0600: the rules are policy, not for other local users to read.
    fd, path = tempfile.mkstemp(prefix="pf_anchor.", suffix=".conf", dir=module.tmpdir)
    with os.fdopen(fd, "wb") as handle:
        handle.write(to_bytes(text, errors="surrogate_or_strict"))
    return path


def _write(module, pfctl, name, rules_file, desired):
    """The only place that changes pf; never called in check mode."""
    if rules_file is not None:
        pfctl.load(name, rules_file)
    else:
        pfctl.flush_rules(name)
    if module.params["flush_states"]:
        pfctl.flush_states()
    loaded = pfctl.show_rules(name)
    if loaded != desired:
        module.warn("After the change, pfctl -a %s -s rules shows other rules than the dry run printed, "
                    "so the next run will report a change again. Shown: %r; expected: %r" % (name, loaded, desired))


def converge(module, pfctl, name):
    """Read, compare and, outside check mode, write. Returns the module result."""
    params = module.params
    state = params["state"]

    current = pfctl.show_rules(name)
    commands = []
    rules_file = None
    try:
        if state == "present":
            text = _read_src(params["src"]) if params["src"] is not None else rules_to_text(params["rules"])
            rules_file = _write_rules_file(module, text)
            desired = pfctl.dry_run(name, rules_file)
            changed = desired != current
            if changed:
                commands.append(pfctl.load_cmd(name, rules_file))
        else:
            desired = []
            changed = bool(current)
            if changed:
                commands.append(pfctl.flush_rules_cmd(name))
        if changed and params["flush_states"]:
            commands.append(pfctl.flush_states_cmd())

        if changed and not module.check_mode:
            _write(module, pfctl, name, rules_file, desired)
    finally:
        if rules_file is not None:
            os.unlink(rules_file)

    result = {"changed": changed, "rules": desired, "commands": commands}
    if module._diff:
        result["diff"] = {
            "before_header": "pfctl -a %s -s rules" % name,
            "after_header": "%s (%s)" % (name, "rules as pfctl parsed them" if state == "present" else "flushed"),
            "before": rules_diff_text(current),
            "after": rules_diff_text(desired),
        }
    return result


def run(module):
    name = validate_anchor_name(module.params["name"])
    return converge(module, Pfctl(module, find_pfctl(module)), name)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            rules=dict(type="raw"),
            src=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            flush_states=dict(type="bool", default=False),
            pfctl_path=dict(type="path"),
        ),
        mutually_exclusive=[("rules", "src")],
        required_if=[("state", "present", ("rules", "src"), True)],
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
