# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The error every module_utils of ours raises: a message and, when a command
failed, its argv, exit code and output, turned into fail_json in one place (run_and_exit)."""

from __future__ import annotations

# Commands run in the C locale so that their output parses the same on every Mac.
C_LOCALE = {"LANG": "C", "LC_ALL": "C"}


class CommandError(Exception):
    """A failure with the command that caused it, if any."""

    def __init__(self, msg, cmd=None, rc=None, stdout="", stderr=""):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def fail_kwargs(self):
        """Keyword arguments for AnsibleModule.fail_json."""
        kwargs = {"msg": self.msg}
        if self.cmd is not None:
            kwargs.update(cmd=list(self.cmd), rc=self.rc, stdout=self.stdout, stderr=self.stderr)
        return kwargs


def run_and_exit(module, run):
    """Run run(module) in the C locale and exit with the result it returns.

    The one place where a CommandError (any module_utils' subclass of it) becomes
    fail_json(msg, cmd, rc, stdout, stderr).
    """
    module.run_command_environ_update = dict(C_LOCALE)
    try:
        result = run(module)
    except CommandError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)
