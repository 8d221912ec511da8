"""nix_tools: one shared tool profile both users run and only root can change (promise 10)."""

import re

import functools

import pytest
import testlib

PROFILE = "/nix/var/nix/profiles/agent-sandbox"
TOOL = PROFILE + "/bin/hello-sandbox"
EXPR = "/srv/nix-expr/hello.nix"
NIX = "nix --extra-experimental-features nix-command"


# In the user's login shell, so /etc/profile.d applies.
as_user = functools.partial(testlib.as_user, login=True)


def test_daemon_is_active(host):
    svc = host.service("nix-daemon.service")
    assert svc.is_running
    assert svc.is_enabled


@pytest.mark.parametrize("user", ["admin", "agent"])
def test_tool_runs_from_a_login_shell(host, user):
    out = as_user(host, user, "command -v hello-sandbox && hello-sandbox")
    assert out.rc == 0, out.stderr
    assert out.stdout.splitlines() == [TOOL, "hello from the sandbox"]


def test_profile_belongs_to_root(host):
    # The profile links and the directory holding them: only root may add a generation.
    profiles = host.file("/nix/var/nix/profiles")
    assert profiles.user == "root" and profiles.mode == 0o755
    assert host.file(PROFILE).is_symlink
    assert host.file(PROFILE).user == "root"


def test_agent_cannot_remove_a_shared_tool(host):
    out = as_user(host, "agent", "nix-env -p %s -e hello-sandbox" % PROFILE)
    assert out.rc != 0
    assert "Permission denied" in out.stderr
    # The tool is still there and still runs for the admin.
    assert as_user(host, "admin", "hello-sandbox").stdout.strip() == "hello from the sandbox"


def test_agent_cannot_install_into_the_shared_profile(host):
    before = host.check_output("readlink %s", PROFILE)
    out = as_user(host, "agent", "nix-env -p %s -i -f %s" % (PROFILE, EXPR))
    assert out.rc != 0
    assert "Permission denied" in out.stderr
    assert host.check_output("readlink %s", PROFILE) == before


def test_agent_can_use_its_own_profile(host):
    # Control: the agent is an allowed user of the daemon; per-project tools go to its own profile.
    out = as_user(host, "agent", "nix-env -i -f %s && ~/.nix-profile/bin/hello-sandbox" % EXPR)
    assert out.rc == 0, out.stderr
    assert out.stdout.strip().endswith("hello from the sandbox")


def nix_conf(host, user):
    out = as_user(host, user, NIX + " show-config")
    assert out.rc == 0, out.stderr
    conf = {}
    for line in out.stdout.splitlines():
        name, _sep, value = line.partition(" = ")
        conf[name] = value.split()
    return conf


def test_agent_is_allowed_but_not_trusted(host):
    conf = nix_conf(host, "agent")
    assert "agent" in conf["allowed-users"]
    assert conf["trusted-users"] == ["root"]
    assert conf["sandbox-fallback"] == ["false"]


def test_agent_cannot_add_a_substituter(host):
    # A trusted user could point the daemon at any cache; the agent's request is ignored.
    out = as_user(host, "agent", "nix-build --no-out-link --option substituters http://127.0.0.1:9/ %s" % EXPR)
    assert out.rc == 0, out.stderr
    assert "ignoring untrusted substituter 'http://127.0.0.1:9/'" in out.stderr


def test_store_says_agent_untrusted_where_nix_reports_it(host):
    ping = as_user(host, "agent", NIX + " store ping")
    assert ping.rc == 0, ping.stderr
    # Nix 2.8 (bookworm) prints no trust line; 2.26 (trixie) does, on stderr, and then
    # it must say 0 for the agent (control: 1 for root).
    said = ping.stdout + ping.stderr
    version = re.search(r"(\d+)\.(\d+)", host.run(NIX + " --version").stdout)
    if version and (int(version.group(1)), int(version.group(2))) >= (2, 20):
        assert "Trusted:" in said, said
    if "Trusted:" in said:
        assert "Trusted: 0" in said, said
        root = host.run(NIX + " store ping --store daemon")
        assert "Trusted: 1" in root.stdout + root.stderr, root.stdout + root.stderr


def test_agent_reaches_the_daemon_through_the_socket_group(host):
    assert "nix-users" in host.user("agent").groups
    sock_dir = host.file("/nix/var/nix/daemon-socket")
    assert sock_dir.group == "nix-users" and sock_dir.mode == 0o770


def test_agent_cannot_change_the_configuration(host):
    conf = host.file("/etc/nix/nix.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert host.run("runuser -u agent -- sh -c 'echo trusted-users = agent >> /etc/nix/nix.conf'").rc != 0
    tools = host.file("/etc/agent-sandbox/nix-tools.nix")
    assert tools.user == "root" and tools.mode == 0o644
