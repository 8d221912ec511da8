"""The harness works: systemd runs the container and manages services."""


def test_systemd_is_pid_one(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_reached_a_running_state(host):
    # "degraded" would mean a unit failed to start in the image.
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout


def test_test_service_is_active_and_answers(host):
    svc = host.service("harness-echo.service")
    assert svc.is_running
    assert svc.is_enabled
    out = host.run("curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:8999/")
    assert out.stdout == "200"


def mount_options(host, pid):
    """Map each mount point of process `pid` to its options."""
    mounts = {}
    for line in host.file("/proc/%s/mountinfo" % pid).content_string.splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")
    return mounts


def test_service_hardening_is_honoured(host):
    # ProtectSystem=strict must make the file system read-only for the
    # service: the later roles rely on unit hardening working in containers.
    pid = host.run("systemctl show -p MainPID --value harness-echo.service").stdout.strip()
    assert pid not in ("", "0")
    assert "ro" in mount_options(host, pid)["/"]
    # The same root seen from outside the service stays writable.
    assert "rw" in mount_options(host, 1)["/"]


def test_host_extra_cas_are_trusted(host):
    # Package registries are reached through a TLS-intercepting path: the
    # image must trust the host's extra CAs or apt/pip over https fail.
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    extras = host.run("ls /usr/local/share/ca-certificates/").stdout.split()
    for name in extras:
        pem = host.file("/usr/local/share/ca-certificates/" + name).content_string
        body = "".join(pem.strip().splitlines()[1:-1])
        assert body in "".join(bundle.split()), name


def mount_types(host, pid):
    """Map each mount point of process `pid` to its file system type."""
    types = {}
    for line in host.file("/proc/%s/mountinfo" % pid).content_string.splitlines():
        left, dummy, right = line.partition(" - ")
        types[left.split()[4]] = right.split()[0]
    return types


def test_container_starts_with_empty_apt_lists_dated_now(host):
    # Every container starts as a freshly built image does, whatever the image's age: the
    # lists are a tmpfs made at container start, so cache_valid_time style checks see
    # "fresh" lists that hold nothing, and a role that trusts their age fails here.
    assert mount_types(host, 1).get("/var/lib/apt/lists") == "tmpfs"
    started = int(host.run("echo $(( $(date +%s) - $(ps -o etimes= -p 1) ))").stdout)
    assert int(host.run("stat -c %Y /var/lib/apt/lists").stdout) >= started - 5


def packages(host):
    return host.run("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' sl").stdout.split()


def test_os_packages_installs_on_fresh_lists_and_check_mode_does_not_fail(host):
    # A new, empty list directory dated now, as on a just-built image.
    assert host.run("umount /var/lib/apt/lists && mount -t tmpfs -o mode=0755 tmpfs /var/lib/apt/lists").rc == 0
    host.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sl")
    assert host.run("ls -A /var/lib/apt/lists").stdout == ""

    checked = host.ansible("agent_sandbox.native.os_packages", "name=sl", check=True)
    assert checked["changed"] is True and checked["installed"] == ["sl"], checked
    assert host.run("ls -A /var/lib/apt/lists").stdout == "", "check mode refreshed the lists"
    assert "ii" not in packages(host)

    done = host.ansible("agent_sandbox.native.os_packages", "name=sl", check=False)
    assert done["changed"] is True and done["cache_updated"] is True, done
    assert packages(host) == ["sl", "ii"]

    again = host.ansible("agent_sandbox.native.os_packages", "name=sl", check=False)
    assert again["changed"] is False and again["cache_updated"] is False, again
