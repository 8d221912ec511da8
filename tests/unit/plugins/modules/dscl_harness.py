# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the dscl module tests: run a module's main() against the Directory Services stand-ins
(tests/unit/fakes/dscl, dseditgroup, createhomedir, id), or against a scripted run_command."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules import module_runner

UNIT = pathlib.Path(__file__).resolve().parents[2]
FAKES = UNIT / "fakes"
FIXTURES = UNIT / "fixtures" / "dscl"
TOOLS = ("dscl", "dseditgroup", "createhomedir", "id")
OPT_DIRS = ["/usr/bin", "/usr/sbin"]
REAL_PATHS = {"dscl": "/usr/bin/dscl", "dseditgroup": "/usr/sbin/dseditgroup", "createhomedir": "/usr/sbin/createhomedir",
              "id": "/usr/bin/id"}

sys.path.insert(0, str(FAKES))
import _ds_state  # noqa: E402  pylint: disable=wrong-import-position


def guid(kind, name):
    return _ds_state.new_record(kind, name)["GeneratedUID"][0]


def user(name, uid, gid, **attrs):
    record = _ds_state.new_record("users", name)
    record.update(UniqueID=[str(uid)], PrimaryGroupID=[str(gid)], NFSHomeDirectory=["/Users/%s" % name],
                  UserShell=["/bin/zsh"])
    record.update({_ds_state.stored_key(key): value for key, value in attrs.items()})
    return record


def group(name, gid, members=(), **attrs):
    record = _ds_state.new_record("groups", name)
    record.update(PrimaryGroupID=[str(gid)], Password=["*"])
    if members:
        record["GroupMembership"] = list(members)
        record["GroupMembers"] = [guid("users", member) for member in members]
    record.update({_ds_state.stored_key(key): value for key, value in attrs.items()})
    return record


def base_directory():
    """A small Mac: system accounts, one admin (alice), and the groups the roles create."""
    users = {
        "root": user("root", 0, 0, NFSHomeDirectory=["/var/root"], UserShell=["/bin/sh"]),
        "daemon": user("daemon", 1, 1, NFSHomeDirectory=["/var/root"], UserShell=["/usr/bin/false"]),
        "nobody": user("nobody", -2, -2, NFSHomeDirectory=["/var/empty"], UserShell=["/usr/bin/false"]),
        "_www": user("_www", 70, 70, NFSHomeDirectory=["/Library/WebServer"], UserShell=["/usr/bin/false"]),
        "alice": user("alice", 501, 20, RealName=["Alice Example"], Password=["********"],
                      AuthenticationAuthority=[";ShadowHash;HASHLIST:<SALTED-SHA512-PBKDF2>", ";SecureToken;"],
                      ShadowHashData=["62706c6973743030"]),
    }
    groups = {
        "wheel": group("wheel", 0, ["root"]),
        "daemon": group("daemon", 1, ["root"]),
        "everyone": group("everyone", 12),
        "staff": group("staff", 20, ["root"]),
        "_www": group("_www", 70),
        "admin": group("admin", 80, ["root", "alice"]),
        "agent": group("agent", 600),
        "agent-share": group("agent-share", 700),
    }
    return {"users": users, "groups": groups}


run_module = module_runner.run_module


class FakeDirectory(module_runner.StandIns):
    """The stand-ins in tests/unit/fakes (dscl, dseditgroup, createhomedir, id) with a state directory of their own."""

    def __init__(self, monkeypatch, state_dir, directory=None):
        super().__init__(monkeypatch, state_dir, {tool: str(FAKES / tool) for tool in TOOLS})
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.write_state(directory if directory is not None else base_directory())
        monkeypatch.setenv("DSCL_FAKE_STATE", str(self.state_dir))
        monkeypatch.delenv("DSCL_FAKE_READONLY", raising=False)

    def write_state(self, directory):
        (self.state_dir / "directory.json").write_text(json.dumps(directory, indent=1, sort_keys=True))

    def state(self):
        return json.loads((self.state_dir / "directory.json").read_text())

    def edit(self, change):
        """Apply change(state) to the stored directory."""
        state = self.state()
        change(state)
        self.write_state(state)

    def run(self, tool, *args):
        proc = subprocess.run([str(FAKES / tool)] + list(args), capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def calls(self):
        """[(tool, argv without the program)] in order."""
        return [(entry["tool"], entry["argv"][1:]) for entry in self.logged_calls()]

    def writes(self):
        return [call for call in self.calls() if is_write(*call)]


def is_write(tool, argv):
    """Whether a call to a stand-in changes the directory or the disk."""
    if tool == "dscl":
        command = next((arg.lstrip("-") for arg in argv if arg not in ("-plist", "-q", ".")), "")
        return command in ("create", "append", "merge", "delete", "change", "changei", "passwd")
    if tool == "dseditgroup":
        return "checkmember" not in argv and "read" not in argv
    if tool == "id":
        return False
    return True


class ScriptedRunCommand(module_runner.ScriptedRunCommand):
    """module_runner.ScriptedRunCommand with the binaries at their macOS paths."""

    def bin_path(self, arg, required, opt_dirs):
        assert required is True and opt_dirs == OPT_DIRS, (arg, required, opt_dirs)
        return REAL_PATHS[arg]
