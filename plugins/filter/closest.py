# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter closest: the valid name nearest to a misspelt one, for "did you mean ...?" messages."""
from __future__ import annotations

import difflib

DOCUMENTATION = r"""
name: closest
short_description: The valid name nearest to a misspelt one
version_added: 0.2.0
description:
  - Returns the entry of O(choices) most like O(_input) (C(difflib), similarity 0.6 or more), or an empty string.
options:
  _input:
    description: The name that was given.
    type: str
    required: true
  choices:
    description: The valid names.
    type: list
    elements: str
    required: true
author: agent-sandbox developers
"""

EXAMPLES = r"""
- name: Suggest the key that was meant
  ansible.builtin.debug:
    msg: "did you mean {{ 'hots' | agent_sandbox.native.closest(['host', 'ports']) }}?"
"""

RETURN = r"""
_value:
  description: The nearest valid name, or an empty string when none is close.
  type: str
"""


def closest(name, choices):
    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else ""


class FilterModule:
    def filters(self):
        return {"closest": closest}
