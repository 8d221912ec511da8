# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stateful launchctl stand-in (tests/unit/fakes/launchctl), for module and role-script tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import plistlib
import subprocess

from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules import module_runner

FAKE_LAUNCHCTL = str(module_runner.pathlib.Path(__file__).resolve().parents[2] / "fakes" / "launchctl")


def _fake_module():
    loader = importlib.machinery.SourceFileLoader("fake_launchctl", FAKE_LAUNCHCTL)
    spec = importlib.util.spec_from_loader("fake_launchctl", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class FakeLaunchctl(module_runner.StandIns):
    """The stand-in with its own state directory; get_bin_path("launchctl") finds it."""

    def __init__(self, monkeypatch, state_dir):
        super().__init__(monkeypatch, state_dir, {"launchctl": FAKE_LAUNCHCTL})
        self.path = FAKE_LAUNCHCTL
        monkeypatch.setenv("FAKE_LAUNCHCTL_STATE", str(self.state_dir))

    def __call__(self, *args):
        proc = subprocess.run([self.path] + list(args), capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def calls(self):
        return [entry[1:] for entry in self.logged_calls()]

    def jobs(self):
        path = self.state_dir / "state.json"
        return json.loads(path.read_text())["jobs"] if path.exists() else {}

    def fire(self, label):
        """Run the job as launchd does when its StartInterval comes round."""
        _fake_module().run_job(label)  # FAKE_LAUNCHCTL_STATE is set (monkeypatch)


def write_plist(path, label, argv, **keys):
    """A LaunchDaemon property list, as launchd.plist(5) describes it."""
    definition = dict({"Label": label, "ProgramArguments": list(argv)}, **keys)
    with open(path, "wb") as handle:
        plistlib.dump(definition, handle)
    return str(path)
