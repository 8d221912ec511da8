# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-ins for the parts of WSL2 that a Linux container cannot have (there is no Windows here),
for the Molecule wsl scenario only. One file, called by several names, as WSL's /init is:

  wsl-standin serve   WSL's interop server of one session: makes /run/WSL (mode 0777) if it is
                      missing, never changes its mode after, listens on /run/WSL/<pid>_interop
                      (chmod 0777), "starts" the Windows program each client names, and removes
                      its socket when it ends.
  init PROGRAM ARGV0  WSL's /init as the binfmt_misc interpreter of MZ files (flag P): finds the
                      socket as /init does ($WSL_INTEROP unless it is missing, else those of its
                      parent processes), connects, and fails with /init's message when it cannot.
  wsl-standin boot [--defaults]
                      What WSL's init does with the drives when the VM starts: reads /etc/wsl.conf
                      ([automount] enabled, root, options, mountFsTab) and the drvfs lines of
                      /etc/fstab, and mounts each Windows drive as a tmpfs with drvfs's owner and
                      masks (uid, gid, umask, fmask, dmask), filled with a user folder and a Windows
                      program. --defaults ignores /etc/wsl.conf: WSL as shipped (umask 000).

Registering a real binfmt_misc entry would change the host's kernel for every container, so the
tests run this interpreter the way binfmt_misc would. What only a real WSL2 shows: docs/wsl.md.
prepare.yml installs it with a #! line, as /usr/local/libexec/wsl-standin/wsl-standin and init.
"""
import configparser
import json
import os
import pwd
import signal
import socket
import subprocess
import sys

INTEROP = "/run/WSL"
DRIVES = ("c", "d")  # the stand-in machine's Windows drives
DEFAULT_USER = "admin"  # WSL's default user, who owns the drives when no uid is given
PROGRAM = b"MZ" + bytes(62) + b"stand-in for C:\\Windows\\System32\\HOSTNAME.EXE\n"


def serve():
    os.umask(0)
    try:
        os.mkdir(INTEROP, 0o777)
    except FileExistsError:
        pass
    path = "%s/%d_interop" % (INTEROP, os.getpid())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(16)

    def end(_signum, _frame):
        # As WSL's server does when its session ends: the socket goes with it.
        os.unlink(path)
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, end)
    while True:
        conn, _addr = server.accept()
        with conn:
            try:  # a client that only connects (the doctor's probe) sends nothing and leaves
                request = json.loads(conn.recv(65536).decode() or "{}")
                if request:
                    conn.sendall(("started %s as the Windows user\n" % request.get("program", "?")).encode())
            except (OSError, ValueError):
                pass


def parent_of(pid):
    with open("/proc/%d/stat" % pid, encoding="utf-8") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def interop_socket():
    """As WSL's UtilConnectToInteropServer: $WSL_INTEROP unless it does not exist (ENOENT), else
    the socket of the nearest parent process that has one."""
    path = os.environ.get("WSL_INTEROP")
    if path:
        try:
            os.stat(path)
            return path
        except FileNotFoundError:
            pass
        except OSError:
            return path  # not ENOENT (EACCES): /init tries it anyway
    pid = os.getppid()
    while pid > 0:
        candidate = "%s/%d_interop" % (INTEROP, pid)
        if os.path.exists(candidate):
            return candidate
        try:
            pid = parent_of(pid)
        except (OSError, IndexError, ValueError):
            break
    return None


def init(argv):
    if len(argv) < 2:
        return 1
    path = interop_socket()
    if path is None:
        print("<3>WSL (%d) ERROR: UtilConnectToInteropServer: no interop server" % os.getpid(), file=sys.stderr)
        return 1
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError as exc:
        print("<3>WSL (%d) ERROR: UtilConnectUnix: connect failed %d" % (os.getpid(), exc.errno or 0), file=sys.stderr)
        return 1
    with conn:
        conn.sendall(json.dumps({"program": argv[1], "args": argv[2:]}).encode())
        sys.stdout.write(conn.recv(65536).decode())
    return 0


def drvfs_mount(letter, target, options):
    values = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
    user = pwd.getpwnam(DEFAULT_USER)
    uid, gid = int(values.get("uid", user.pw_uid)), int(values.get("gid", user.pw_gid))
    umask = int(values.get("umask", "000"), 8)
    files = 0o777 & ~(umask | int(values.get("fmask", "000"), 8))
    folders = 0o777 & ~(umask | int(values.get("dmask", "000"), 8))
    os.makedirs(target, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "uid=%d,gid=%d,mode=%o" % (uid, gid, folders),
                    "drvfs-%s" % letter, target], check=True)
    tree = {"Users/%s/secret.txt" % DEFAULT_USER: b"a Windows user's file\n"}
    if letter == "c":
        tree["Windows/System32/HOSTNAME.EXE"] = PROGRAM
    for rel, content in tree.items():
        path = os.path.join(target, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
    for top, dirs, names in os.walk(target):
        for name in dirs:
            os.chmod(os.path.join(top, name), folders)
            os.chown(os.path.join(top, name), uid, gid)
        for name in names:
            os.chmod(os.path.join(top, name), files)
            os.chown(os.path.join(top, name), uid, gid)


def boot(defaults):
    conf = configparser.ConfigParser(strict=False, interpolation=None)
    if not defaults:
        conf.read("/etc/wsl.conf")
    auto = conf["automount"] if conf.has_section("automount") else {}
    enabled = auto.get("enabled", "true").strip().lower() != "false"
    root = auto.get("root", "/mnt/").strip().strip('"')
    options = auto.get("options", "").strip().strip('"')
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        ours = [line.split()[1] for line in fh if line.startswith("drvfs-")]
    for point in reversed(ours):
        subprocess.run(["umount", point], check=True)
    mounts = {}
    if auto.get("mountFsTab", "true").strip().lower() != "false" and not defaults:
        with open("/etc/fstab", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 4 and fields[2] == "drvfs":
                    mounts[fields[0][0].lower()] = (fields[1], fields[3])
    if enabled:
        for letter in DRIVES:
            mounts.setdefault(letter, (root + letter, options))
    for letter, (target, opts) in sorted(mounts.items()):
        drvfs_mount(letter, target, opts)
    return 0


def main(argv):
    name = os.path.basename(argv[0])
    if name == "init":
        return init(argv)
    if argv[1:2] == ["serve"]:
        return serve()
    if argv[1:2] == ["boot"]:
        return boot("--defaults" in argv)
    print("usage: wsl-standin serve | boot [--defaults]; init PROGRAM ARGV0 ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
