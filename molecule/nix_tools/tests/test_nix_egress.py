"""nix_tools with site.yml's wiring: a build reaches the network only through its own proxy listener.

Issue 18, promise 3. Builds run as the nixbld users, for the agent and through the root daemon; the
agent submits each derivation (nix-build as the agent), then the fake internet's request log says
what really arrived upstream.
"""

import hashlib
import json
import shlex
import uuid

import functools

import pytest
import testlib

EXPR = "/srv/nix-expr/egress.nix"
LOG = "/var/log/fake-internet/requests.jsonl"
AUDIT = "/var/log/agent-sandbox/proxy/audit.jsonl"
ALLOWED_BODY = b"hello from allowed.test\n"
BLOCKED_BODY = b"blocked.test: you should never see this\n"


# In the user's login shell, so /etc/profile.d applies.
as_user = functools.partial(testlib.as_user, login=True)


def requests(host, path):
    """The requests the fake internet received for `path` (every site)."""
    out = host.run("cat %s", LOG)
    found = []
    for line in out.stdout.splitlines():
        record = json.loads(line)
        if record["path"] == path:
            found.append(record)
    return found


def audit(host, path):
    """The listener ports of the proxy's audit records for `path`."""
    out = host.run("cat %s", AUDIT)
    return [json.loads(line)["listener"] for line in out.stdout.splitlines() if json.loads(line).get("path") == path]


def build(host, user, mode, url, body):
    """nix-build one derivation of egress.nix as `user`; a fresh tag makes each a new build."""
    tag = uuid.uuid4().hex[:12]
    return as_user(
        host,
        user,
        "nix-build --no-out-link %s --argstr mode %s --argstr url %s --argstr sha256 %s --argstr tag %s"
        % (EXPR, mode, url, hashlib.sha256(body).hexdigest(), tag),
    )


def dropped(host):
    """Packets the build users sent that the firewall dropped."""
    gid = host.check_output("getent group nixbld | cut -d: -f3")
    out = host.check_output("nft list counter inet agent_sandbox group_%s_dropped", gid)
    return int(out.split("packets ")[1].split()[0])


def test_firewall_confines_the_build_users(host):
    table = host.check_output("nft list table inet agent_sandbox")
    gid = host.check_output("getent group nixbld | cut -d: -f3")
    assert "meta skgid %s jump group_%s" % (gid, gid) in table
    # The members by uid as well (a setgid program changes the group, not the uid).
    members = host.check_output("getent group nixbld | cut -d: -f4").split(",")
    uids = sorted(int(host.check_output("id -u %s", member)) for member in members)
    assert "meta skuid { %s } jump group_%s" % (", ".join(map(str, uids)), gid) in table
    assert 'tcp dport 8079 accept' in table


def test_daemon_has_the_builds_proxy(host):
    pid = host.check_output("systemctl show -p MainPID --value nix-daemon.service")
    env = host.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines()
    assert "https_proxy=http://127.0.0.1:8079" in env
    assert "http_proxy=http://127.0.0.1:8079" in env


@pytest.mark.parametrize("mode", ["direct", "plain"])
def test_build_cannot_reach_a_host_past_the_proxy(host, mode):
    path = "/nix-%s-%s" % (mode, uuid.uuid4().hex)
    before = dropped(host)
    out = build(host, "agent", mode, "https://blocked.test" + path, BLOCKED_BODY)
    assert out.rc != 0, out.stdout
    assert "curl failed" in out.stderr, out.stderr
    assert requests(host, path) == []
    assert dropped(host) > before
    # Control: the same curl, from a user no rule confines, reaches the host.
    root = host.run("curl -fsS --noproxy '*' --cacert /etc/fake-internet/ca.pem https://blocked.test%s", path)
    assert root.rc == 0 and root.stdout.encode() == BLOCKED_BODY
    assert len(requests(host, path)) == 1


@pytest.mark.parametrize("mode", ["builtin", "fod"])
def test_fixed_output_build_reaches_only_allowed_hosts(host, mode):
    path = "/nix-%s-%s" % (mode, uuid.uuid4().hex)
    out = build(host, "agent", mode, "https://blocked.test" + path, BLOCKED_BODY)
    assert out.rc != 0, out.stdout
    assert requests(host, path) == []
    # Control: from an allowed host, through the builds' listener, the same build succeeds.
    path = "/nix-%s-%s" % (mode, uuid.uuid4().hex)
    out = build(host, "agent", mode, "https://allowed.test" + path, ALLOWED_BODY)
    assert out.rc == 0, out.stderr
    assert host.file(out.stdout.strip()).content == ALLOWED_BODY
    assert [r["site"] for r in requests(host, path)] == ["allowed.test"]
    assert audit(host, path) == [8079]


def test_eval_time_fetch_is_the_agents_own(host):
    # builtins.fetchurl at evaluation runs in the agent's own nix process: its uid's rules apply.
    path = "/nix-eval-" + uuid.uuid4().hex
    cmd = ("nix-instantiate --option connect-timeout 3 --option download-attempts 1 --eval -E %s"
           % shlex.quote('builtins.readFile (builtins.fetchurl "https://blocked.test%s")' % path))
    out = as_user(host, "agent", cmd)
    assert out.rc != 0
    assert requests(host, path) == []
    # Control: the admin, whom no rule confines, fetches it (trusting the fake sites' CA).
    admin = as_user(host, "admin", "NIX_SSL_CERT_FILE=/etc/fake-internet/ca.pem " + cmd)
    assert admin.rc == 0, admin.stderr
    assert [r["site"] for r in requests(host, path)] == ["blocked.test"]


HOOK = "/usr/local/bin/nix-egress-hook"


@pytest.fixture(scope="module")
def hook(host):
    """A post-build hook that leaves a mark, which only a trusted user can make the daemon run."""
    mark = "/tmp/nix-egress-hook-ran"
    host.run("printf '#!/bin/sh\\ntouch %s\\n' > %s && chmod 755 %s && rm -f %s", mark, HOOK, HOOK, mark)
    return mark


def test_agent_options_open_no_way_out(host, hook):
    tag = uuid.uuid4().hex[:12]
    options = (
        "--option substituters https://allowed.test/opt-%(t)s --option extra-substituters https://allowed.test/xopt-%(t)s "
        "--option trusted-substituters https://allowed.test/topt-%(t)s --option post-build-hook %(h)s "
        "--option ssl-cert-file /etc/fake-internet/ca.pem --option sandbox false" % {"t": tag, "h": HOOK}
    )
    out = as_user(host, "agent", "nix-build --no-out-link %s %s --argstr mode fod --argstr url https://allowed.test/o-%s "
                  "--argstr sha256 %s --argstr tag %s"
                  % (options, EXPR, tag, hashlib.sha256(ALLOWED_BODY).hexdigest(), tag))
    assert out.rc == 0, out.stderr
    assert not host.file(hook).exists
    for prefix in ("opt", "xopt", "topt"):
        assert requests(host, "/%s-%s/nix-cache-info" % (prefix, tag)) == []
    # Control: root is trusted, and the daemon runs the hook root names.
    root = host.run("NIX_REMOTE=daemon nix-build --no-out-link --option post-build-hook %s %s --argstr mode fod "
                    "--argstr url https://allowed.test/r-%s --argstr sha256 %s --argstr tag r%s",
                    HOOK, EXPR, tag, hashlib.sha256(ALLOWED_BODY).hexdigest(), tag)
    assert root.rc == 0, root.stderr
    assert host.file(hook).exists


def test_agent_cannot_name_a_remote_builder(host):
    # A system no local builder has: only a remote builder could build it. The daemon considers the
    # machines it was given ("1 available machines") only when a trusted user names them.
    tag = uuid.uuid4().hex[:12]
    cmd = "nix-build --no-out-link --option builders 'ssh://blocked.test %s-x' /srv/nix-expr/hello.nix --argstr system %s-x"
    out = as_user(host, "agent", cmd % (tag, tag))
    assert out.rc != 0
    assert "is required to build" in out.stderr, out.stderr
    assert "available machines" not in out.stderr, out.stderr
    # Control: root's builder is taken (and fails: nothing answers ssh on blocked.test).
    root = host.run("NIX_REMOTE=daemon " + cmd % (tag, tag))
    assert root.rc != 0 and "1 available machines" in root.stderr, root.stderr


def test_daemon_substitutes_through_the_proxy(host):
    # Root is trusted: the daemon uses the substituter root names, and fetches it through the
    # builds' listener, which refuses blocked.test before connecting to it.
    tag = uuid.uuid4().hex[:12]
    nix_build = "NIX_REMOTE=daemon nix-build --no-out-link --option substituters %s /srv/nix-expr/hello.nix --argstr system %s"
    host.run(nix_build, "https://blocked.test/sub-" + tag, tag + "-b")
    assert requests(host, "/sub-%s/nix-cache-info" % tag) == []
    # Control: an allowed substituter is reached, through the proxy (the daemon has no other way).
    out = host.run(nix_build, "https://allowed.test/sub-" + tag, tag + "-a")
    assert [r["site"] for r in requests(host, "/sub-%s/nix-cache-info" % tag)] == ["allowed.test"], out.stderr
    assert audit(host, "/sub-%s/nix-cache-info" % tag) == [8079]
