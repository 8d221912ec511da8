# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The error every module_utils of ours raises: a message and, when a command
failed, its argv, exit code and output, turned into fail_json in one place."""

from __future__ import annotations


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
