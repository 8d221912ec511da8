# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the pf module tests: run a module's main() and the stateful pfctl stand-in."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess

from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules import module_runner

UNIT = pathlib.Path(__file__).resolve().parents[2]
FAKE_PFCTL = str(UNIT / "fakes" / "pfctl")
FIXTURES = UNIT / "fixtures" / "pfctl"
ALTQ = "No ALTQ support in kernel\nALTQ related functions disabled\n"


def fixture_text(name):
    return (FIXTURES / name).read_text()


def fixture_lines(name):
    return [line for line in fixture_text(name).splitlines() if line.strip()]


def run_module(monkeypatch, module, args, tmp_path, check_mode=False, diff=False):
    """Run module.main() (see module_runner.run_module); tmp_path is the module's tmpdir."""
    return module_runner.run_module(monkeypatch, module, args, check_mode=check_mode, diff=diff, tmpdir=tmp_path)


class FakePfctl(module_runner.StandIns):
    """The stand-in at tests/unit/fakes/pfctl with its own state directory."""

    def __init__(self, monkeypatch, state_dir):
        super().__init__(monkeypatch, state_dir, {"pfctl": FAKE_PFCTL})
        self.path = FAKE_PFCTL
        monkeypatch.setenv("FAKE_PFCTL_STATE", str(self.state_dir))
        monkeypatch.setenv("FAKE_PFCTL_USERS", "agent=501,admin=502")

    def __call__(self, *args, stdin=None):
        proc = subprocess.run([self.path] + list(args), input=stdin, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def calls(self):
        """[argv without the program] in order."""
        return [entry[1:] for entry in self.logged_calls()]

    def state(self):
        self("-s", "info")  # make sure the state file exists
        return json.loads((self.state_dir / "state.json").read_text())

    def edit_state(self, **changes):
        state = self.state()
        state.update(changes)
        (self.state_dir / "state.json").write_text(json.dumps(state))

    def rulesets(self):
        return self.state()["rulesets"]


def writes(calls):
    """Calls that change pf: a load (-f without -n), a flush, enable or disable."""
    changing = []
    for argv in calls:
        if "-n" in argv:
            continue
        if any(flag in argv for flag in ("-f", "-F", "-E", "-e", "-d", "-X", "-k")):
            changing.append(argv)
    return changing


class RulesFile:
    """Stands for the temporary rules file in an expected argv; records what pfctl would read."""

    def __init__(self):
        self.seen = []

    def matches(self, value):
        if not os.path.isfile(value):
            return False
        self.seen.append({"path": value, "mode": stat.S_IMODE(os.stat(value).st_mode),
                          "text": pathlib.Path(value).read_text()})
        return True


class ScriptedRunCommand(module_runner.ScriptedRunCommand):
    """module_runner.ScriptedRunCommand where a RulesFile in the expected argv matches the
    temporary rules file, and pfctl is /sbin/pfctl."""

    def match(self, expected, args):
        assert len(args) == len(expected), "expected %r, got %r" % (expected, args)
        for want, got in zip(expected, args):
            if isinstance(want, RulesFile):
                assert want.matches(got), "expected the rules file, got %r" % (got,)
            else:
                assert want == got, "expected %r, got %r" % (expected, args)

    def bin_path(self, arg, required, opt_dirs):
        return "/sbin/pfctl"
