# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() the way Ansible does, for the module unit tests, against stand-in
binaries (tests/unit/fakes) or a scripted run_command. dscl_harness and pf_harness build on these."""

from __future__ import annotations

import json
import os
import pathlib
import sys

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


class StandIns:
    """Stand-in binaries with a state directory of their own, where each logs its calls to calls.jsonl.

    get_bin_path answers with the stand-ins (paths: {tool: path}) and None for anything else,
    never the host's tools (on a Mac the real ones would be found), and records every request.
    """

    def __init__(self, monkeypatch, state_dir, paths):
        self.state_dir = pathlib.Path(state_dir)
        self.bin_path_requests = []
        # The stand-ins' shebang is `env python`: make it the interpreter running the tests.
        monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        fake = self

        def get_bin_path(module, arg, required=False, opt_dirs=None):
            fake.bin_path_requests.append((arg, required, opt_dirs))
            return paths.get(arg)

        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)

    def logged_calls(self):
        """The entries of calls.jsonl, in order."""
        path = self.state_dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def clear_calls(self):
        path = self.state_dir / "calls.jsonl"
        if path.exists():
            path.unlink()


class ScriptedRunCommand:
    """A run_command stand-in that asserts the exact ordered argv and answers from a script.

    The script is a list of (expected argv, answer): answer is (rc, stdout, stderr), or a function
    returning one (to imitate a side effect). Subclasses say how an argv matches (match) and which
    path get_bin_path returns (bin_path).
    """

    def __init__(self, monkeypatch, script):
        self.script = list(script)
        self.calls = []
        self.environ = []
        runner = self

        def run_command(module, args, **kwargs):
            runner.calls.append(list(args))
            runner.environ.append(dict(module.run_command_environ_update, **(kwargs.get("environ_update") or {})))
            assert runner.script, "unexpected command: %r" % (args,)
            expected, answer = runner.script.pop(0)
            runner.match(expected, list(args))
            return answer() if callable(answer) else answer

        def get_bin_path(module, arg, required=False, opt_dirs=None):
            return runner.bin_path(arg, required, opt_dirs)

        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)

    def match(self, expected, args):
        assert args == expected, "expected %r, got %r" % (expected, args)

    def bin_path(self, arg, required, opt_dirs):
        raise NotImplementedError

    def done(self):
        assert not self.script, "commands never run: %r" % ([step[0] for step in self.script],)
