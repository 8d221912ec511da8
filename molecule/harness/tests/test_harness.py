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
