#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pf_info
short_description: Read the state of macOS pf
version_added: 0.1.0
description:
  - Reports whether pf is enabled, who holds enable references (C(pfctl -E) tokens), which anchors
    exist, which interfaces pf skips, and the rules of the main ruleset or of one anchor.
  - Read-only; it runs the same in check mode.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  anchor:
    description:
      - Anchor whose rules to return in RV(rules), for example C(com.apple/agent_sandbox).
      - When omitted, RV(rules) holds the main ruleset, which shows whether an anchor is evaluated at all.
    type: str
  pfctl_path:
    description:
      - Path to pfctl. By default it is looked up in the PATH, C(/sbin) and C(/usr/sbin).
    type: path
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: darwin
notes:
  - Requires root, as pfctl does.
seealso:
  - module: agent_sandbox.native.pf_anchor
"""

EXAMPLES = r"""
- name: Read the pf state
  agent_sandbox.native.pf_info:
    anchor: com.apple/agent_sandbox
  register: pf

- name: Check that pf filters the agent's traffic
  ansible.builtin.assert:
    that:
      - pf.enabled
      - "'lo0' not in pf.skip_interfaces"
      - pf.rules | length > 0
"""

RETURN = r"""
enabled:
  description: Whether pf is enabled.
  returned: always
  type: bool
  sample: true
status:
  description: The status line of C(pfctl -s info), whitespace normalised.
  returned: always
  type: str
  sample: "Status: Enabled for 0 days 00:07:40 Debug: Urgent"
references:
  description: The pf enable references (C(pfctl -s References)); each was taken with C(pfctl -E).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process that took the reference.
      type: int
    process:
      description: Name of that process.
      type: str
    token:
      description: The token that C(pfctl -X) releases.
      type: str
    timestamp:
      description: When the reference was taken, as pfctl prints it.
      type: str
  sample:
    - {pid: 5191, process: pfctl, token: "10051342025653898869", timestamp: "0 days 00:00:07"}
anchors:
  description: Every anchor, nested ones included (C(pfctl -v -s Anchors)).
  returned: always
  type: list
  elements: str
  sample: [com.apple, com.apple/250.ApplicationFirewall, com.apple/agent_sandbox]
interfaces:
  description: The interfaces pf knows (C(pfctl -v -s Interfaces)).
  returned: always
  type: list
  elements: str
  sample: [all, en0, lo0]
skip_interfaces:
  description: Interfaces pf does not filter at all (C(set skip on ...)); rules on them never match.
  returned: always
  type: list
  elements: str
  sample: []
anchor:
  description: The anchor RV(rules) belongs to; empty for the main ruleset.
  returned: always
  type: str
  sample: com.apple/agent_sandbox
rules:
  description: The filter rules of O(anchor), or of the main ruleset, as C(pfctl -s rules) prints them.
  returned: always
  type: list
  elements: str
  sample: ['scrub-anchor "com.apple/*" all fragment reassemble', 'anchor "com.apple/*" all']
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit
from ansible_collections.agent_sandbox.native.plugins.module_utils._pfctl import Pfctl, find_pfctl


def gather(pfctl, anchor):
    info = pfctl.info()
    interfaces, skipped = pfctl.interfaces()
    return {
        "changed": False,
        "enabled": info["enabled"],
        "status": info["status"],
        "references": pfctl.references(),
        "anchors": pfctl.anchors(),
        "interfaces": interfaces,
        "skip_interfaces": skipped,
        "anchor": anchor,
        "rules": pfctl.show_rules(anchor),
    }


def run(module):
    return gather(Pfctl(module, find_pfctl(module)), module.params["anchor"] or "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            anchor=dict(type="str"),
            pfctl_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
