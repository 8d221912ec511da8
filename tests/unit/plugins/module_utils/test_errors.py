# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_and_exit: the one place where a module_utils error becomes fail_json."""

from __future__ import annotations

import pytest

from ansible_collections.agent_sandbox.native.plugins.module_utils._dscl import DsclError
from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import run_and_exit
from ansible_collections.agent_sandbox.native.plugins.module_utils._pfctl import PfctlError


class Exited(Exception):
    pass


class FakeModule:
    run_command_environ_update = {}

    def exit_json(self, **kwargs):
        raise Exited("exit", kwargs)

    def fail_json(self, **kwargs):
        raise Exited("fail", kwargs)


def test_result_is_exited_with_in_the_c_locale():
    module = FakeModule()
    with pytest.raises(Exited) as caught:
        run_and_exit(module, lambda m: {"changed": False, "environ": dict(m.run_command_environ_update)})
    assert caught.value.args == ("exit", {"changed": False, "environ": {"LANG": "C", "LC_ALL": "C"}})


@pytest.mark.parametrize("error", [DsclError, PfctlError])
def test_command_error_becomes_fail_json_with_the_command(error):
    def run(_module):
        raise error("it broke", cmd=("/usr/bin/dscl", ".", "-create", "/Users/x"), rc=40, stdout="out", stderr="err")

    with pytest.raises(Exited) as caught:
        run_and_exit(FakeModule(), run)
    assert caught.value.args == ("fail", {"msg": "it broke", "cmd": ["/usr/bin/dscl", ".", "-create", "/Users/x"],
                                          "rc": 40, "stdout": "out", "stderr": "err"})


def test_error_without_a_command_fails_with_the_message_alone():
    def run(_module):
        raise DsclError("bad name")

    with pytest.raises(Exited) as caught:
        run_and_exit(FakeModule(), run)
    assert caught.value.args == ("fail", {"msg": "bad name"})
