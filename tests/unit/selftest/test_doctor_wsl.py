# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The doctor's WSL2 checks: the drvfs mounts it reads from /proc/self/mountinfo, the options that
open a drive to others, how it runs a Windows program, and how each check stands beside its
admin control. The Molecule wsl scenario runs them on a host with WSL's stand-ins.

tests/unit/fixtures/wsl_mountinfo.txt imitates WSL2's /proc/self/mountinfo: drvfs over 9p puts its
own options in aname, separated by `;`, after the uid and gid of WSL's default user (the form
`mount` shows in microsoft/WSL issues 5122 and 7152); the drivers share is 9p too, but not drvfs."""
from __future__ import annotations

import os
import pathlib
import socket
import stat

import pytest

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "wsl_mountinfo.txt"


def test_drvfs_mounts_are_the_windows_drives_only(doctor):
    mounts = doctor.drvfs_mounts(FIXTURE.read_text(), "/mnt/")
    assert sorted(mounts) == ["/mnt/c", "/mnt/d", "/mnt/e", "/mnt/my share"]
    assert "umask=077" in mounts["/mnt/d"] and "aname=drvfs" in mounts["/mnt/d"]


@pytest.mark.parametrize("point, uid, wrong", [
    ("/mnt/c", 1000, ["files open", "folders open"]),  # WSL's default: no umask, everything 0777
    ("/mnt/d", 1000, []),
    ("/mnt/d", 1001, ["uid=1000 (want 1001)"]),
    ("/mnt/e", 1000, ["folders open"]),  # fmask closes the files, umask=022 leaves the folders readable
    ("/mnt/my share", 1001, []),
])
def test_drvfs_openings(doctor, point, uid, wrong):
    said = doctor.drvfs_openings(doctor.drvfs_mounts(FIXTURE.read_text(), "/mnt/")[point], uid)
    assert len(said) == len(wrong) and all(any(w in s for s in said) for w in wrong), said


def interpreter(tmp_path, body):
    path = tmp_path / "init"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def windows_program(tmp_path):
    path = tmp_path / "HOSTNAME.EXE"
    path.write_bytes(b"MZ" + bytes(62))
    path.chmod(0o755)
    return str(path)


def test_exec_hands_an_mz_file_to_the_interpreter_as_binfmt_misc_would(doctor, tmp_path):
    init = interpreter(tmp_path, 'echo "args=$* interop=$WSL_INTEROP"\n')
    res = doctor.probe_exec(windows_program(tmp_path), init, "/run/WSL/7_interop", 5)
    assert res["outcome"] == "ran" and "through %s" % init in res["detail"]
    assert "HOSTNAME.EXE" in res["detail"] and "interop=/run/WSL/7_interop" in res["detail"]


def test_exec_reports_the_interpreters_failure(doctor, tmp_path):
    init = interpreter(tmp_path, 'echo "UtilConnectUnix: connect failed 13" >&2; exit 1\n')
    res = doctor.probe_exec(windows_program(tmp_path), init, "", 5)
    assert res["outcome"] == "failed" and "connect failed 13" in res["detail"]


def test_unix_probe_connects(doctor, tmp_path):
    path = str(tmp_path / "1_interop")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        assert doctor.probe_unix(path, 2)["outcome"] == "connected"
        assert doctor.probe_unix(str(tmp_path / "none"), 2)["outcome"] == "error"
    finally:
        server.close()


def test_interop_sockets_newest_first(doctor, tmp_path):
    for name, when in (("2_interop", 100), ("410_interop", 300), ("549_interop", 200), ("other", 400)):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (when, when))
    assert doctor.interop_sockets(str(tmp_path)) == [str(tmp_path / n) for n in ("410_interop", "549_interop", "2_interop")]
    assert doctor.interop_sockets(str(tmp_path / "missing")) == []


class Host:
    """What the doctor sees of a WSL host: /run/WSL's sockets, the drives, the answers of the agent's
    probes and of the admin's controls."""

    def __init__(self, tmp_path, agent, admin):
        self.root = tmp_path / "mnt"
        (self.root / "c" / "Users").mkdir(parents=True)
        (self.root / "c" / "Windows" / "System32").mkdir(parents=True)
        windows_program(self.root / "c" / "Windows" / "System32")
        self.agent, self.admin, self.asked = agent, admin, []

    def settings(self, interop="admin-only"):
        return {"wsl": {"admin": "admin", "interop": interop, "interpreter": "/init",
                        "windows_program": str(self.root / "c" / "Windows" / "System32" / "HOSTNAME.EXE"),
                        "drives_root": str(self.root) + "/", "drives_excluded": []}}

    def install(self, doctor, checker, monkeypatch):
        monkeypatch.setattr(doctor, "interop_sockets", lambda folder=None: ["/run/WSL/9_interop"])
        monkeypatch.setattr(checker, "as_agent_all", lambda *probes: [self.agent[p[0]] for p in probes])

        def as_admin(*argv):
            self.asked.append(argv[0])
            return self.admin[argv[0]]
        monkeypatch.setattr(checker, "as_admin", as_admin)


CLOSED = {"unix": {"outcome": "denied", "detail": "Permission denied"},
          "read": {"outcome": "denied", "detail": "Permission denied"},
          "exec": {"outcome": "failed", "detail": "exit 1: connect failed 13"}}
OPEN = {"unix": {"outcome": "connected", "detail": "connected"},
        "read": {"outcome": "readable", "detail": "read succeeded"},
        "exec": {"outcome": "ran", "detail": "exit 0: host"}}


def statuses(checker):
    return {r["check"]: r["status"] for r in checker.results}


def test_wsl_passes_when_the_agent_is_refused_and_the_admin_is_not(doctor, tmp_path, monkeypatch):
    host = Host(tmp_path, CLOSED, OPEN)
    checker = doctor.Doctor(host.settings(), "agent")
    host.install(doctor, checker, monkeypatch)
    checker.wsl()
    assert statuses(checker) == {"WSL interop socket closed to the agent": "PASS",
                                 "Windows drive closed to the agent": "PASS",
                                 "Windows programs do not start for the agent": "PASS"}
    assert sorted(host.asked) == ["exec", "read", "unix"]


@pytest.mark.parametrize("probe", ["unix", "read", "exec"])
def test_wsl_fails_what_the_agent_reaches(doctor, tmp_path, monkeypatch, probe):
    host = Host(tmp_path, dict(CLOSED, **{probe: OPEN[probe]}), OPEN)
    checker = doctor.Doctor(host.settings(), "agent")
    host.install(doctor, checker, monkeypatch)
    checker.wsl()
    failed = [r["check"] for r in checker.results if r["status"] == "FAIL"]
    assert len(failed) == 1, checker.results


@pytest.mark.parametrize("probe", ["unix", "read", "exec"])
def test_wsl_fails_when_the_admin_control_fails(doctor, tmp_path, monkeypatch, probe):
    host = Host(tmp_path, CLOSED, dict(OPEN, **{probe: CLOSED[probe]}))
    checker = doctor.Doctor(host.settings(), "agent")
    host.install(doctor, checker, monkeypatch)
    checker.wsl()
    assert len([r for r in checker.results if r["status"] == "FAIL"]) == 1, checker.results


def test_wsl_with_interop_disabled_expects_no_windows_program_for_the_admin(doctor, tmp_path, monkeypatch):
    host = Host(tmp_path, CLOSED, dict(OPEN, unix=CLOSED["unix"], exec=CLOSED["exec"]))
    checker = doctor.Doctor(host.settings(interop="disabled"), "agent")
    host.install(doctor, checker, monkeypatch)
    checker.wsl()
    assert set(statuses(checker).values()) == {"PASS"} and host.asked == ["read"]


def test_wsl_host_reads_the_interop_folder_and_the_version(doctor, tmp_path, monkeypatch):
    version = tmp_path / "version"
    version.write_text("Linux version 5.15.167.4-microsoft-standard-WSL2 (root@host) #1 SMP\n")
    folder = tmp_path / "WSL"
    folder.mkdir()
    monkeypatch.setattr(doctor, "WSL_INTEROP_DIR", str(folder))
    for mode, status in ((0o777, "FAIL"), (0o750, "PASS" if os.geteuid() == 0 else "FAIL")):
        folder.chmod(mode)
        checker = doctor.Doctor({"wsl": {"admin": "nobody", "version_file": str(version),
                                         "drives_root": str(tmp_path) + "/", "drives_excluded": ["z"]}}, "agent")
        checker.wsl_host()
        assert statuses(checker)["WSL interop folder closed to others"] == status
        assert statuses(checker)["left-out Windows drive not mounted"] == "PASS"
        assert any("microsoft-standard-WSL2" in n for n in checker.notes)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_no_wsl_settings_no_wsl_checks(doctor):
    checker = doctor.Doctor({}, "agent")
    checker.wsl()
    checker.wsl_host()
    assert checker.results == [] and checker.notes == []


def test_wsl_points_both_at_a_socket_the_admin_reaches(doctor, tmp_path, monkeypatch):
    # A session that ended may leave its socket behind: the control goes on to the next one.
    host = Host(tmp_path, CLOSED, OPEN)
    checker = doctor.Doctor(host.settings(), "agent")
    host.install(doctor, checker, monkeypatch)
    monkeypatch.setattr(doctor, "interop_sockets", lambda folder=None: ["/run/WSL/9_interop", "/run/WSL/7_interop"])
    seen = []

    def as_admin(*argv):
        seen.append(argv)
        if argv[0] == "unix":
            return OPEN["unix"] if argv[1] == "/run/WSL/7_interop" else {"outcome": "error", "detail": "refused"}
        return OPEN[argv[0]]
    monkeypatch.setattr(checker, "as_admin", as_admin)
    checker.wsl()
    assert set(statuses(checker).values()) == {"PASS"}
    assert [a for a in seen if a[0] == "exec"][0][3] == "/run/WSL/7_interop"


def test_quick_leaves_the_drives_for_after_the_restart(doctor, tmp_path, monkeypatch):
    # site.yml ends with --quick: the drives' new options need `wsl --shutdown` first, interop does not.
    host = Host(tmp_path, CLOSED, OPEN)
    checker = doctor.Doctor(host.settings(), "agent")
    host.install(doctor, checker, monkeypatch)
    checker.quick = True
    checker.wsl()
    assert "Windows drive closed to the agent" not in statuses(checker)
    assert statuses(checker)["Windows programs do not start for the agent"] == "PASS"
