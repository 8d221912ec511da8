# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() the way Ansible does, for the module unit tests."""

from __future__ import annotations

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    """exit_json was called; args[0] is the result."""


class ModuleFail(Exception):
    """fail_json was called; args[0] is the result."""


def run_module(monkeypatch, module, args, check_mode=False, diff=False, tmpdir=None):
    """Run module.main() with args the way Ansible hands them over; return (result, failed)."""

    def exit_json(self, **kwargs):
        kwargs.setdefault("changed", False)
        raise ModuleExit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.update(msg=msg, failed=True)
        raise ModuleFail(kwargs)

    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning: warnings.append(warning))
    payload = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    if tmpdir is not None:
        payload["_ansible_tmpdir"] = str(tmpdir)
    with patch_module_args(payload), pytest.raises((ModuleExit, ModuleFail)) as caught:
        module.main()
    result = caught.value.args[0]
    result["warnings"] = warnings
    return result, isinstance(caught.value, ModuleFail)
