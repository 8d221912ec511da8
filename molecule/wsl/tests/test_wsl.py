# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WSL2, with the stand-ins of files/wsl_standin.py: the agent starts no Windows program and reaches
neither WSL's interop sockets nor the Windows drives, whichever way it tries, while the admin still
does; the doctor says so, and says FAIL once the protections are gone. docs/wsl.md lists what only a
real WSL2 can confirm."""
import json
import shlex

import pytest
from testlib import as_user, refusals

STANDIN = "/usr/local/libexec/wsl-standin/wsl-standin"
INIT = "/usr/local/libexec/wsl-standin/init"
PROGRAM = "/mnt/c/Windows/System32/HOSTNAME.EXE"


@pytest.fixture(scope="module", autouse=True)
def wsl_restarted(host):
    """`wsl --shutdown` and a new start: the drives mounted as /etc/wsl.conf and /etc/fstab now say."""
    host.check_output("%s boot" % STANDIN)


def sockets(host):
    return host.check_output("ls -t /run/WSL/*_interop").split()


@pytest.fixture(scope="module")
def program(host):
    """A copy of the Windows program that both may read: the drive itself is the admin's alone."""
    host.check_output("install -d -m 0755 /var/tmp/wsl-test && install -m 0755 %s /var/tmp/wsl-test/" % PROGRAM)
    return "/var/tmp/wsl-test/HOSTNAME.EXE"


def windows_program(host, user, path, interop="", through=INIT):
    """Run path as binfmt_misc would for an MZ file: the interpreter, the file, then argv[0]."""
    env = "WSL_INTEROP=%s " % shlex.quote(interop) if interop else ""
    return as_user(host, user, "%s%s %s %s" % (env, through, shlex.quote(path), shlex.quote(path)))


def test_wsl_conf_mounts_the_drives_for_the_admin_alone(host):
    admin = host.user("admin")
    conf = host.file("/etc/wsl.conf").content_string
    assert 'options = "metadata,uid=%d,gid=%d,umask=077"' % (admin.uid, admin.gid) in conf
    assert "enabled = false" in conf and "mountFsTab = true" in conf  # drive d is left out
    fstab = host.file("/etc/fstab").content_string
    assert "C: /mnt/c drvfs metadata,uid=%d,gid=%d,umask=077 0 0" % (admin.uid, admin.gid) in fstab
    assert "D:" not in fstab
    assert "[interop]" not in conf  # admin-only leaves WSL's own switch alone


def test_interop_folder_is_closed_to_all_but_root_and_the_interop_group(host):
    folder = host.file("/run/WSL")
    assert (folder.user, folder.group, folder.mode) == ("root", "wsl-interop", 0o750)
    assert "wsl-interop" in host.user("admin").groups
    assert "wsl-interop" not in host.user("agent").groups
    assert host.file("/etc/tmpfiles.d/agent-sandbox-wsl.conf").contains("^d /run/WSL 0750 root wsl-interop -$")


def test_boot_closes_the_folder_wsl_made_open(host):
    # WSL's init makes /run/WSL with mode 0777 when it is missing; systemd-tmpfiles-setup, before
    # any session opens, closes it again whichever came first.
    host.check_output("chmod 0777 /run/WSL && chgrp root /run/WSL")
    host.check_output("systemd-tmpfiles --create /etc/tmpfiles.d/agent-sandbox-wsl.conf")
    folder = host.file("/run/WSL")
    assert (folder.user, folder.group, folder.mode) == ("root", "wsl-interop", 0o750)


def test_admin_starts_a_windows_program(host, program):
    out = windows_program(host, "admin", program, interop=sockets(host)[0])
    assert out.rc == 0 and "started %s" % program in out.stdout, out.stderr


@pytest.mark.parametrize("how", ["WSL_INTEROP names a socket", "parent processes", "its own MZ file",
                                 "a socket it names by a link", "/init by another name"])
def test_agent_starts_no_windows_program(host, program, how):
    sock = sockets(host)[0]
    if how == "WSL_INTEROP names a socket":
        out = windows_program(host, "agent", program, interop=sock)
    elif how == "parent processes":
        out = windows_program(host, "agent", program)
    elif how == "its own MZ file":
        out = as_user(host, "agent", "printf 'MZ\\220\\0' > ~/mine.exe && chmod +x ~/mine.exe && "
                      "WSL_INTEROP=%s %s ~/mine.exe ~/mine.exe" % (sock, INIT))
    elif how == "a socket it names by a link":
        out = as_user(host, "agent", "ln -sf %s ~/interop && WSL_INTEROP=~/interop %s %s %s"
                      % (sock, INIT, program, program))
    else:
        out = as_user(host, "agent", "cp %s ~/init && WSL_INTEROP=%s ~/init %s %s" % (STANDIN, sock, program, program))
    assert out.rc != 0 and "started" not in out.stdout, out.stdout
    assert "connect failed 13" in out.stderr or "no interop server" in out.stderr, out.stderr


def test_agent_cannot_connect_to_any_interop_socket(host):
    names = sockets(host)
    out = as_user(host, "agent", "for s in %s; do python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX)"
                  ".connect(sys.argv[1])' $s 2>&1 | tail -n1; done" % " ".join(names))
    assert out.stdout.count("Permission denied") == len(names), out.stdout
    assert as_user(host, "agent", "ls /run/WSL").rc != 0


def test_a_new_session_socket_is_closed_too(host, program):
    # Each new session of WSL makes a socket of its own (mode 0777) in the folder it keeps.
    host.check_output("systemd-run --unit wsl-standin-session2 %s serve" % STANDIN)
    try:
        host.check_output("for i in $(seq 50); do [ $(ls /run/WSL | wc -l) -ge 2 ] && exit 0; sleep 0.1; done; exit 1")
        newest = sockets(host)[0]
        assert host.file(newest).mode == 0o777
        assert windows_program(host, "agent", program, interop=newest).rc != 0
        assert windows_program(host, "admin", program, interop=newest).rc == 0
        assert host.file("/run/WSL").mode == 0o750
    finally:
        host.run("systemctl stop wsl-standin-session2")


def test_agent_cannot_read_the_windows_drives(host):
    assert as_user(host, "admin", "ls /mnt/c/Users").stdout.split() == ["admin"]
    out = as_user(host, "agent", "ls /mnt/c/Users; cat /mnt/c/Users/admin/secret.txt; ls /mnt/c")
    assert out.rc != 0 and out.stderr.count("Permission denied") == 3, out.stderr
    assert not host.mount_point("/mnt/d").exists  # left out: WSL mounts it no more


def doctor(host):
    out = host.run("agent-sandbox doctor --only wsl --only wsl_host --json")
    assert out.stdout.strip().startswith("{"), out.stderr
    report = json.loads(out.stdout)
    return out.rc, {(r["check"], r["tried"]): r for r in report["results"]}, report["notes"]


CHECKS = {"WSL interop socket closed to the agent", "Windows drive closed to the agent",
          "Windows programs do not start for the agent", "WSL interop folder closed to others",
          "left-out Windows drive not mounted"}


def test_doctor_checks_wsl_as_the_agent_beside_the_admin(host):
    rc, results, notes = doctor(host)
    assert {check for check, _tried in results} == CHECKS
    assert rc == 0, json.dumps([r for r in results.values() if r["status"] != "PASS"], indent=1)
    assert any("WSL detected: Linux version 5.15.167.4-microsoft-standard-WSL2" in n for n in notes)
    program = next(r for (check, _t), r in results.items() if check == "Windows programs do not start for the agent")
    assert "admin: exit 0" in program["happened"] and "connect failed 13" in program["happened"]


def test_doctor_fails_once_the_protections_are_gone(host):
    # WSL as shipped: its folder open, the drives mounted for everyone.
    host.check_output("chmod 0777 /run/WSL && %s boot --defaults" % STANDIN)
    try:
        rc, results, _notes = doctor(host)
    finally:
        host.check_output("systemd-tmpfiles --create /etc/tmpfiles.d/agent-sandbox-wsl.conf && %s boot" % STANDIN)
    failed = {check for (check, _tried), r in results.items() if r["status"] == "FAIL"}
    assert rc == 1 and failed == CHECKS, failed
    assert doctor(host)[0] == 0


WATCHED = ("cat /etc/wsl.conf /etc/fstab /etc/tmpfiles.d/agent-sandbox-wsl.conf; stat -c '%U %G %a' /run/WSL;"
           " getent group wsl-interop")
BASE = {"wsl_admin": "admin", "wsl_version_file": "/etc/wsl-standin/version", "wsl_drives_excluded": ["d"]}
BAD_INPUT = {
    "PID 1 is init, not systemd": {"wsl_pid1_comm_file": "/etc/wsl-standin/comm-init"},
    "drive letters a-z": {"wsl_drives_excluded": ["D:"]},
    "none in both": {"wsl_drives": ["c", "d"]},
    "which the role sets": {"wsl_drvfs_options": ["metadata", "umask=022"]},
}


@pytest.fixture(scope="module")
def cases():
    return refusals("Apply wsl", "agent_sandbox.native.wsl", dict(
        {case: dict(BASE, **settings) for case, settings in BAD_INPUT.items()},
        # Not WSL: nothing changes, whatever the settings say.
        **{"not WSL": dict(BASE, wsl_version_file="/etc/debian_version", wsl_interop="disabled",
                           wsl_drives_excluded=[])}), WATCHED)


@pytest.mark.parametrize("message", BAD_INPUT)
def test_bad_input_is_refused_before_any_change(host, cases, message):
    result = cases[host.backend.get_hostname()][message]
    failure = json.dumps(result["failure"])
    assert result["failure"] and message in failure, cases["output"]
    assert result["after"] == result["before"]


def test_without_systemd_the_message_says_what_to_do(host, cases):
    failure = json.dumps(cases[host.backend.get_hostname()]["PID 1 is init, not systemd"]["failure"])
    assert "systemd=true" in failure and "wsl --shutdown" in failure and "Nothing was changed" in failure


def test_a_host_that_is_not_wsl_sees_no_change(host, cases):
    result = cases[host.backend.get_hostname()]["not WSL"]
    assert result["failure"] is None and result["after"] == result["before"], cases["output"]


def test_disabled_turns_interop_off_for_everyone(host):
    # WSL's own switch: after `wsl --shutdown`, no Windows program for anyone, the admin included.
    host.check_output("cp -p /etc/wsl.conf /var/tmp/wsl.conf.before")
    try:
        report = refusals("Apply wsl with interop disabled", "agent_sandbox.native.wsl",
                          {"disabled": dict(BASE, wsl_interop="disabled")}, "cat /etc/wsl.conf")
        result = report[host.backend.get_hostname()]["disabled"]
        assert result["failure"] is None, report["output"]
        assert "[interop]\nenabled = false\nappendWindowsPath = false" in result["after"], result["after"]
        assert "wsl --shutdown" in report["output"]  # the role says that WSL must restart
    finally:
        host.check_output("cp -p /var/tmp/wsl.conf.before /etc/wsl.conf")
