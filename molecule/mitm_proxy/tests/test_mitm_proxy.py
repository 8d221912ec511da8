"""The mitm_proxy role, checked as the agent against the fake internet (prepare.yml).

Every refusal is paired with a control showing the allowed path works.
The stopped-service case (no network at all) needs host_firewall; see docs/roles/mitm_proxy.md.
"""
import json
import re
import shlex
import time

import pytest
from testlib import as_user, refusals

SECRET = "sk-test-REAL-9c41e7d0b2a6"
PLACEHOLDER = "AGENT_SANDBOX_PLACEHOLDER_test_api_5d1e"
BUNDLE = "/etc/agent-sandbox/ca-bundle.pem"
AUDIT = "/var/log/agent-sandbox/proxy/audit.jsonl"
POLICY = "/etc/agent-sandbox/proxy/policy.json"
SERVICE = "agent-sandbox-proxy.service"
FAKE_LOG = "/var/log/fake-internet/requests.jsonl"


def proxy_env(port=8080, address="127.0.0.1"):
    url = "http://%s:%d" % ("[%s]" % address if ":" in address else address, port)
    env = {
        "http_proxy": url, "https_proxy": url, "HTTP_PROXY": url, "HTTPS_PROXY": url,
        "CURL_CA_BUNDLE": BUNDLE, "SSL_CERT_FILE": BUNDLE, "REQUESTS_CA_BUNDLE": BUNDLE,
        "GIT_SSL_CAINFO": BUNDLE, "PIP_CERT": BUNDLE, "HOME": "/home/agent",
    }
    return env


def as_agent(host, command, **kwargs):
    """As the agent, with the proxy settings its shells get (proxy_env's arguments in kwargs)."""
    return as_user(host, "agent", command, env=proxy_env(**kwargs))


def curl(host, url, extra="", **kwargs):
    """(status, body) of a request made by the agent through the proxy.

    A refused CONNECT has no response body for curl; its status is the CONNECT's.
    """
    out = as_agent(host, "f=$(mktemp) && curl -sS -o $f -w '%%{http_code} %%{http_connect}' %s %s; echo; cat $f; rm -f $f"
                   % (extra, shlex.quote(url)), **kwargs)
    codes, _sep, body = out.stdout.partition("\n")
    status, _sep, connect = codes.strip().partition(" ")
    return (connect if status == "000" else status), body


def audit_records(host):
    return [json.loads(line) for line in host.file(AUDIT).content_string.splitlines() if line.strip()]


def proxy_pid(host):
    pid = host.run("systemctl show -p MainPID --value %s" % SERVICE).stdout.strip()
    assert pid not in ("", "0")
    return pid


# ---------------------------------------------------------------- the service


def test_service_runs_as_the_proxy_user_on_loopback_only(host):
    assert host.service(SERVICE).is_running
    assert host.service(SERVICE).is_enabled
    pid = proxy_pid(host)
    assert host.run("ps -o user= -p %s" % pid).stdout.strip() == "agent-proxy"
    # (root in the container may not read the proxy's fds, so match by port.)
    listening = [line.split()[3] for line in host.run("ss -Hltn").stdout.splitlines()]
    ours = [addr for addr in listening if addr.rsplit(":", 1)[1] in ("8080", "8081")]
    assert sorted(ours) == sorted(["127.0.0.1:8080", "[::1]:8080", "127.0.0.1:8081", "[::1]:8081"])


def test_proxy_user_has_no_login(host):
    user = host.user("agent-proxy")
    assert user.shell in ("/usr/sbin/nologin", "/bin/false")
    assert user.home == "/var/lib/agent-sandbox/proxy"
    assert host.run("passwd -S agent-proxy").stdout.split()[1] in ("L", "LK")


def test_mitmproxy_version_is_pinned_per_python(host):
    py = host.run("/opt/agent-sandbox/proxy/bin/python -c 'import sys; print(sys.version_info[:2] >= (3, 12))'").stdout.strip()
    version = host.run("/opt/agent-sandbox/proxy/bin/python -c "
                       "'import importlib.metadata as m; print(m.version(\"mitmproxy\"))'").stdout.strip()
    assert version == ("12.2.3" if py == "True" else "11.0.2")
    venv = host.file("/opt/agent-sandbox/proxy")
    assert venv.user == "root" and not venv.mode & 0o022
    assert as_agent(host, "touch /opt/agent-sandbox/proxy/bin/x").rc != 0


def test_the_addon_package_is_roots_and_is_what_runs(host):
    package = "/opt/agent-sandbox/proxy-addon/agent_sandbox_proxy"
    files = host.run("find %s -mindepth 1 -printf '%%P %%u %%m\\n'" % package).stdout.split("\n")
    assert sorted(line for line in files if line) == sorted("%s.py root 644" % name for name in (
        "__init__", "__main__", "addon", "audit", "hosts", "messages", "policy", "secrets"))
    assert host.file(package).user == "root" and host.file(package).mode == 0o755
    assert not host.file("/opt/agent-sandbox/proxy-addon/agent_sandbox_policy.py").exists  # the 0.1 layout
    for user in ("agent", "agent-proxy"):
        assert host.run("runuser -u %s -- touch %s/x.py" % (user, package)).rc != 0
        assert host.run("runuser -u %s -- cat %s/policy.py" % (user, package)).rc == 0  # control: readable
    argv = host.run("tr '\\0' ' ' < /proc/%s/cmdline" % proxy_pid(host)).stdout
    assert argv.startswith("/opt/agent-sandbox/proxy/bin/python -B -P -m agent_sandbox_proxy --mitmdump ")


def test_unit_is_hardened(host):
    props = dict(line.split("=", 1) for line in host.run(
        "systemctl show %s -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp -p Restart "
        "-p ReadWritePaths -p User" % SERVICE).stdout.splitlines())
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["User"] == "agent-proxy"
    assert sorted(props["ReadWritePaths"].split()) == ["/var/lib/agent-sandbox/proxy", "/var/log/agent-sandbox/proxy"]


def test_ca_is_published_and_its_key_is_private(host):
    cert = host.file("/etc/agent-sandbox/proxy-ca.pem")
    assert cert.mode == 0o644 and cert.user == "root"
    assert "BEGIN CERTIFICATE" in cert.content_string and "PRIVATE KEY" not in cert.content_string
    bundle = host.file(BUNDLE)
    assert bundle.mode == 0o644
    assert cert.content_string.strip() in bundle.content_string
    # The system CAs are in the bundle too.
    assert bundle.content_string.count("BEGIN CERTIFICATE") > 50
    confdir = host.file("/var/lib/agent-sandbox/proxy")
    assert confdir.mode == 0o700 and confdir.user == "agent-proxy"
    key = host.file("/var/lib/agent-sandbox/proxy/mitmproxy-ca.pem")
    assert "PRIVATE KEY" in key.content_string
    assert as_agent(host, "cat /var/lib/agent-sandbox/proxy/mitmproxy-ca.pem").rc != 0
    # Control: the agent can read the public certificate.
    assert as_agent(host, "cat /etc/agent-sandbox/proxy-ca.pem").rc == 0


# ---------------------------------------------------------------- allow and block


def test_agent_reaches_an_allowed_host_with_curl(host):
    assert curl(host, "https://allowed.test/") == ("200", "hello from allowed.test\n")
    assert curl(host, "http://allowed.test/") == ("200", "hello from allowed.test\n")


def test_agent_reaches_the_proxy_over_ipv6_too(host):
    assert curl(host, "https://allowed.test/", address="::1") == ("200", "hello from allowed.test\n")


def test_agent_is_refused_a_blocked_host_with_a_policy_403(host):
    before = host.file(FAKE_LOG).content_string.count('"site": "blocked.test"')
    # HTTPS: the CONNECT is refused; its status line and header say why.
    assert curl(host, "https://blocked.test/")[0] == "403"
    verbose = as_agent(host, "curl -sS -v -o /dev/null https://blocked.test/").stderr
    assert "403 Forbidden by agent-sandbox policy" in verbose
    assert "x-agent-sandbox-block: policy; host=blocked.test" in verbose.lower()
    # Plain HTTP: the body tells a human how to allow it.
    status, body = curl(host, "http://blocked.test/")
    assert status == "403", body
    assert "agent-sandbox" in body and "blocked.test" in body
    assert "mitm_proxy_allowlist" in body
    # The upstream never saw the requests.
    assert host.file(FAKE_LOG).content_string.count('"site": "blocked.test"') == before
    # Control: the allowed host works at the same moment.
    assert curl(host, "https://allowed.test/")[0] == "200"


def test_ip_literal_of_an_allowed_host_is_refused(host):
    assert curl(host, "https://127.0.10.1/", extra="-k")[0] == "403"
    assert curl(host, "http://127.0.10.1/")[0] == "403"
    assert curl(host, "http://allowed.test/")[0] == "200"


def test_agent_uses_python_urllib(host):
    script = (
        "import urllib.request, urllib.error\n"
        "print(urllib.request.urlopen('https://allowed.test/').read().decode().strip())\n"
        "try:\n"
        "    urllib.request.urlopen('https://blocked.test/')\n"
        "except urllib.error.URLError as exc:\n"
        "    print(exc.reason)\n"
    )
    out = as_agent(host, "python3 -c %s" % shlex.quote(script))
    assert out.rc == 0, out.stderr
    assert out.stdout.splitlines() == ["hello from allowed.test",
                                       "Tunnel connection failed: 403 Forbidden by agent-sandbox policy"]


def test_agent_uses_git_over_smart_http(host):
    out = as_agent(host, "git ls-remote https://allowed.test/git/repo.git")
    assert out.rc == 0, out.stderr
    assert "refs/heads/main" in out.stdout
    refused = as_agent(host, "git ls-remote https://blocked.test/git/repo.git")
    assert refused.rc != 0 and "403" in refused.stderr


def test_agent_uses_pip_download_from_an_allowed_index(host):
    pip = "/opt/agent-sandbox/proxy/bin/python -m pip download --no-cache-dir --no-deps --disable-pip-version-check"
    out = as_agent(host, "d=$(mktemp -d) && %s -d $d --index-url https://allowed.test/simple hello-sandbox && ls $d" % pip)
    assert out.rc == 0, out.stdout + out.stderr
    assert "hello_sandbox-1.0-py3-none-any.whl" in out.stdout
    refused = as_agent(host, "d=$(mktemp -d) && %s -d $d --retries 0 --index-url https://blocked.test/simple hello-sandbox" % pip)
    assert refused.rc != 0


def test_listener_profiles_differ_per_agent(host):
    # Port 8081 (agent "builder") may GET blocked.test; 8080 may not.
    assert curl(host, "https://blocked.test/", port=8081)[0] == "200"
    assert curl(host, "https://blocked.test/", extra="-X POST", port=8081)[0] == "403"
    assert curl(host, "https://blocked.test/", port=8080)[0] == "403"


# ---------------------------------------------------------------- secrets


def last_fake_request(host, site):
    lines = [json.loads(line) for line in host.file(FAKE_LOG).content_string.splitlines()]
    return [r for r in lines if r["site"] == site][-1]


def test_upstream_receives_the_real_secret_the_agent_only_holds_the_placeholder(host):
    out = as_agent(host, '. ~/.agent-env && curl -sS -H "x-api-key: $TEST_API_KEY" https://api.secret.test/v1/echo')
    assert out.rc == 0, out.stderr
    # The upstream echoes the header; the proxy masks the real value on the way back (as many
    # asterisks, so that the body's Content-Length stays true).
    assert SECRET not in out.stdout
    assert json.loads(out.stdout)["headers"]["x-api-key"] == "*" * len(SECRET)
    seen = last_fake_request(host, "api.secret.test")
    assert seen["path"] == "/v1/echo"
    assert seen["headers"]["x-api-key"] == SECRET
    assert "AGENT_SANDBOX_PLACEHOLDER" not in json.dumps(seen)


def test_placeholder_sent_to_another_host_is_refused_as_a_leak(host):
    before = host.file(FAKE_LOG).content_string.count('"site": "allowed.test"')
    status, body = curl(host, "https://allowed.test/", extra="-H 'x-api-key: %s'" % PLACEHOLDER)
    assert status == "403", body
    assert host.file(FAKE_LOG).content_string.count('"site": "allowed.test"') == before
    leaks = [r for r in audit_records(host) if r.get("leak") and r.get("host") == "allowed.test"]
    assert leaks and leaks[-1]["decision"] == "block"
    # The placeholder in the URL of the right host is a leak too; in its header it is not.
    assert curl(host, "https://api.secret.test/?k=%s" % PLACEHOLDER)[0] == "403"
    assert curl(host, "https://api.secret.test/", extra="-H 'x-api-key: %s'" % PLACEHOLDER)[0] == "200"
    # Control: the same request without the placeholder passes.
    assert curl(host, "https://allowed.test/")[0] == "200"


def test_agent_cannot_read_secrets_or_the_proxy_process(host):
    pid = proxy_pid(host)
    for path in ("/etc/agent-sandbox/proxy/secrets.json", "/etc/agent-sandbox/proxy/policy.json",
                 "/proc/%s/environ" % pid, "/var/lib/agent-sandbox/proxy/mitmproxy-ca.pem"):
        out = as_agent(host, "cat %s" % path)
        assert out.rc != 0 and SECRET not in out.stdout, path
    secrets = host.file("/etc/agent-sandbox/proxy/secrets.json")
    assert secrets.mode == 0o600 and secrets.user == "agent-proxy"
    assert SECRET in secrets.content_string  # control: it is there, for the proxy
    # Nothing the agent can read anywhere holds the value: argv, files, its own environment.
    assert SECRET not in host.file("/proc/%s/cmdline" % pid).content_string
    where = "/etc /opt /var /srv /home /tmp /run /usr/local"
    found = as_agent(host, "grep -rlsF -e %s %s" % (SECRET, where))
    assert found.stdout.strip() == "", found.stdout  # grep -l names the files it could read
    # Control: the same search as root does find the secrets file.
    assert "/etc/agent-sandbox/proxy/secrets.json" in host.run("grep -rlsF -e %s %s" % (SECRET, where)).stdout
    assert SECRET not in as_agent(host, "env").stdout
    assert PLACEHOLDER in as_agent(host, ". ~/.agent-env && env").stdout


def test_no_secret_in_the_journal_or_the_audit_log(host):
    journal = host.run("journalctl -u %s --no-pager -o cat" % SERVICE).stdout
    assert journal  # control: the proxy does log
    assert SECRET not in journal
    audit = host.file(AUDIT).content_string
    assert audit and SECRET not in audit


# ---------------------------------------------------------------- audit


def test_audit_log_has_allowed_blocked_and_leak_lines(host):
    curl(host, "https://allowed.test/audit-probe?token=not-logged")
    curl(host, "https://blocked.test/audit-probe")
    records = audit_records(host)
    for record in records:
        assert {"time", "method", "scheme", "host", "port", "path", "decision", "rule", "status", "bytes", "leak"} <= set(record)
    allowed = [r for r in records if r["host"] == "allowed.test" and r["path"] == "/audit-probe"]
    assert allowed and allowed[-1]["decision"] == "allow" and allowed[-1]["status"] == 200
    assert "not-logged" not in host.file(AUDIT).content_string  # no query strings
    blocked = [r for r in records if r["host"] == "blocked.test" and r["decision"] == "block"]
    assert blocked and blocked[-1]["status"] == 403
    assert any(r["leak"] for r in records)


def test_admin_reads_the_audit_log_the_agent_cannot(host):
    log = host.file(AUDIT)
    assert log.user == "agent-proxy" and log.group == "adm" and log.mode == 0o640
    assert as_user(host, "admin", "tail -n 1 %s" % AUDIT).rc == 0
    out = as_agent(host, "cat %s" % AUDIT)
    assert out.rc != 0 and "Permission denied" in out.stderr
    assert as_agent(host, "ls /var/log/agent-sandbox/proxy").rc != 0


# ---------------------------------------------------------------- live reload


@pytest.fixture
def live_policy(host):
    """Restore the converged policy after a test edits the live file."""
    backup = "/root/policy.json.orig"
    assert host.run("cp -p %s %s" % (POLICY, backup)).rc == 0
    yield
    host.run("cp -p %s %s.new && mv %s.new %s" % (backup, POLICY, POLICY, POLICY))
    time.sleep(1.2)
    curl(host, "https://allowed.test/")  # reloads happen on traffic
    assert curl(host, "https://blocked.test/")[0] == "403"


def replace_policy(host, content):
    host.run("cp -p %s %s.new && printf '%%s' %s > %s.new && mv %s.new %s"
             % (POLICY, POLICY, shlex.quote(content), POLICY, POLICY, POLICY))
    time.sleep(1.2)  # the addon looks at the file at most once a second, on traffic


def test_a_bad_policy_file_keeps_the_running_policy(host, live_policy):
    pid = proxy_pid(host)
    assert as_agent(host, "PYTHONPATH=/opt/agent-sandbox/proxy-addon /opt/agent-sandbox/proxy/bin/python -P "
                    "-m agent_sandbox_proxy --check-policy /dev/null").rc == 2  # control: the checker refuses junk
    replace_policy(host, '{"version": 1, "rules": [{"host": "https://blocked.test/"}]}')
    curl(host, "https://allowed.test/")  # triggers the reload attempt
    assert curl(host, "https://allowed.test/")[0] == "200"
    assert curl(host, "https://blocked.test/")[0] == "403"
    journal = host.run("journalctl -u %s --no-pager -o cat --since -2min" % SERVICE).stdout
    assert "refused" in journal and "previous policy stays in force" in journal
    assert proxy_pid(host) == pid


def test_a_good_policy_change_applies_without_a_restart(host, live_policy):
    pid = proxy_pid(host)
    replace_policy(host, json.dumps({"version": 1, "rules": ["allowed.test", "blocked.test"]}))
    curl(host, "https://allowed.test/")
    assert curl(host, "https://blocked.test/")[0] == "200"
    assert proxy_pid(host) == pid


# Bad input is refused before anything changes (from the verifier: converge runs three times).

# What every case starts from: the converged settings, less the secrets.
BAD_INPUT_BASE = {
    "mitm_proxy_upstream_ca_bundle": "/etc/fake-internet/ca.pem",
    "mitm_proxy_allowlist": ["allowed.test"],
    "mitm_proxy_secrets": [],
    "mitm_proxy_agents": [{"name": "agent", "port": 8080, "allowlist": []}, {"name": "builder", "port": 8081, "allowlist": []}],
}


def secret(name, placeholder, value="whatever-1", **extra):
    return dict({"name": name, "placeholder": placeholder, "hosts": ["api.secret.test"], "header": "x-api-key: {secret}",
                 "value": value}, **extra)


# Each case: the settings the role must refuse, and a pattern its failure must match.
BAD_INPUT = {
    "malformed rule": ({"mitm_proxy_allowlist": [{"host": "https://allowed.test/x"}]}, "Allowlist rule refused"),
    "secret without hosts": ({"mitm_proxy_secrets": [secret("nohosts", "PLACEHOLDER_NOHOSTS_1", hosts=[])]},
                             "hosts must list at least one host"),
    "colliding placeholders": ({"mitm_proxy_secrets": [secret("one", "PLACEHOLDER_SAME_1"),
                                                       secret("two", "PLACEHOLDER_SAME_1x", "whatever-2")]},
                               "collides with"),
    "misspelt rule key": ({"mitm_proxy_allowlist": [{"hots": "allowed.test"}]},
                          r'has no host \(it has an unknown key "hots"; did you mean host\?\)'),
    # The role's argument spec may speak first here.
    "misspelt secret key": ({"mitm_proxy_secrets": [{"name": "typo", "placeholder": "PLACEHOLDER_TYPO_1",
                                                     "host": ["api.secret.test"], "header": "x-api-key: {secret}",
                                                     "value": "whatever-1"}]},
                            r'unknown key "host" \(did you mean hosts\?\)|mitm_proxy_secrets.host. Supported parameters '
                            r'include: comment, header, hosts'),
    "placeholder that is its value": ({"mitm_proxy_secrets": [secret("same", "SAME_AS_VALUE_1", "SAME_AS_VALUE_1")]},
                                      "placeholder of secret same is its own value"),
    # Public suffixes: ICANN ones always, private ones without the opt-in.
    "wildcard over com": ({"mitm_proxy_allowlist": [{"host": "*.com"}]}, 'every name registered under the public suffix "com"'),
    "wildcard over co.uk": ({"mitm_proxy_allowlist": ["*.co.uk"]},
                            r'public suffix "co.uk" \(Public Suffix List, ICANN section\)'),
    "wildcard over github.io without the opt-in": ({"mitm_proxy_allowlist": [{"host": "*.github.io"}]},
                                                   "anyone can get a subdomain of their own .* trust_every_owner_below: true"),
    "wildcard above private suffixes": ({"mitm_proxy_allowlist": [{"host": "*.amazonaws.com"}]},
                                        'reaches names under ".*amazonaws.com", where anyone can'),
    "missing upstream CA bundle": ({"mitm_proxy_upstream_ca_bundle": "/nonexistent/ca.pem"},
                                   "/nonexistent/ca.pem cannot be read: No such file or directory"),
    "upstream CA bundle the proxy cannot read": ({"mitm_proxy_upstream_ca_bundle": "/etc/fake-internet/ca-root-only.pem"},
                                                 r"ca-root-only.pem cannot be read: Permission denied \(read as agent-proxy\)"),
    "upstream CA bundle that is not PEM": ({"mitm_proxy_upstream_ca_bundle": "/etc/hostname"}, "/etc/hostname holds no PEM certificate"),
    # Passes the role's own checks; the addon's check (the template's `validate:`) refuses it, and the run says why.
    "path with dot segments": ({"mitm_proxy_allowlist": [{"host": "allowed.test", "paths": ["/a/../b"]}]},
                               "The proxy's addon refused the policy .* has '.' or '..' segments"),
}
# The careful spellings of the same settings pass the role's checks.
ACCEPTED = {
    "wildcard over github.io with the opt-in, and an exact host under it": {
        "refusal_tasks_from": "validate",
        "mitm_proxy_allowlist": [{"host": "*.github.io", "trust_every_owner_below": True}, "myorg.github.io",
                                 {"host": "*.example.com"}],
    },
}
LIVE_FILES = "sha256sum %s /etc/agent-sandbox/proxy/secrets.json" % POLICY


@pytest.fixture(scope="module")
def bad_input_report():
    cases = {case: dict(BAD_INPUT_BASE, **settings) for case, (settings, _pattern) in BAD_INPUT.items()}
    cases.update({case: dict(BAD_INPUT_BASE, **settings) for case, settings in ACCEPTED.items()})
    return refusals("Apply mitm_proxy with bad input", "agent_sandbox.native.mitm_proxy", cases, LIVE_FILES, gather=True)


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_refused_and_the_live_files_stay(host, bad_input_report, case):
    result = bad_input_report[host.backend.get_hostname()][case]
    assert result["failure"], "the role accepted %s: %s" % (case, bad_input_report["output"])
    message = result["failure"]["result"].get("msg", "")
    assert re.search(BAD_INPUT[case][1], message), message
    assert result["after"] == result["before"]
    # The checksums the run read are the live ones.
    assert host.check_output(LIVE_FILES) == result["before"]


@pytest.mark.parametrize("case", ACCEPTED)
def test_careful_spellings_pass_the_checks(host, bad_input_report, case):
    result = bad_input_report[host.backend.get_hostname()][case]
    assert result["failure"] is None, result["failure"]
    assert result["after"] == result["before"]


@pytest.mark.usefixtures("bad_input_report")
def test_proxy_still_serves_the_agent_after_bad_input(host):
    assert curl(host, "https://allowed.test/")[0] == "200"
    assert curl(host, "https://blocked.test/")[0] == "403"
