"""The mitm_proxy role, checked as the agent against the fake internet (prepare.yml).

Every refusal is paired with a control showing the allowed path works.
The stopped-service case (no network at all) needs host_firewall; see docs/roles/mitm_proxy.md.
"""
import hashlib
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
MiB = 1 << 20


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
        "__init__", "__main__", "addon", "audit", "control", "guard", "hosts", "messages", "policy", "secrets",
        "streams"))
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
    # mitm_proxy_memory_max's default, in systemd and on the process's cgroup.
    assert unit_memory_limit(host, proxy_pid(host)) == (str(512 * MiB), str(512 * MiB))


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


# ---------------------------------------------------------------- streamed bodies
# The fake internet's /stream/ endpoints on allowed.test (molecule/shared/files/fake_internet.py)
# log what they sent and received to STREAM_LOG; uploads land in UPLOADS/<id>.bin as they arrive.

STREAM_LOG = "/var/log/fake-internet/streams.jsonl"
UPLOADS = "/var/log/fake-internet/uploads"

# The agent's Python client: http.client through the proxy named in https_proxy (or straight to
# the site with --direct, as root, for the controls). It prints one JSON object.
PY_CLIENT_HEAD = r'''
import http.client, json, os, ssl, sys, time, urllib.parse

def connect(direct):
    if direct:
        context = ssl.create_default_context(cafile="/etc/fake-internet/ca.pem")
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the test CA has no key usage extension
        return http.client.HTTPSConnection("allowed.test", 443, context=context, timeout=60)
    proxy = urllib.parse.urlsplit(os.environ["https_proxy"])
    context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=context, timeout=60)
    conn.set_tunnel("allowed.test", 443)
    return conn
'''

# Lockstep SSE: acknowledge each event (write its number to /tmp/sse-ack-ID) as soon as it is read.
SSE_PY = PY_CLIENT_HEAD + r'''
ident, count, framing, direct = sys.argv[1], int(sys.argv[2]), sys.argv[3], "--direct" in sys.argv
conn = connect(direct)
conn.request("GET", "/stream/sse?id=%s&n=%d&framing=%s" % (ident, count, framing), headers={"Accept": "text/event-stream"})
resp = conn.getresponse()
data = []
while True:
    line = resp.readline()
    if not line:
        break
    if line.startswith(b"data: "):
        data.append(line[6:].decode().strip())
        if line.startswith(b"data: event "):
            with open("/tmp/sse-ack-%s.new" % ident, "w") as ack:
                ack.write(line.split()[-1].decode())
            os.replace("/tmp/sse-ack-%s.new" % ident, "/tmp/sse-ack-%s" % ident)
print(json.dumps({"status": resp.status, "data": data}))
'''

SSE_CURL = (
    "curl -sS -N %(extra)s 'https://allowed.test/stream/sse?id=%(id)s&n=%(n)d&framing=%(framing)s' | "
    "while IFS= read -r line; do case \"$line\" in 'data: '*) echo \"${line#data: }\";; esac; "
    "case \"$line\" in 'data: event '*) echo \"${line#data: event }\" > /tmp/sse-ack-%(id)s.new "
    "&& mv -f /tmp/sse-ack-%(id)s.new /tmp/sse-ack-%(id)s;; esac; done"
)

# An upload whose body the client sends in parts, pausing after each so that they reach the proxy
# apart: header, part 1, part 2, part 3. framing: chunked (one chunk per part) or length.
# lockstep: before it sends the next part, wait (15 s at most) until the server has all but
# 1 KiB of the parts sent so far (a proxy may hold back a placeholder's length); "stalled" lists
# the parts after which it waited in vain. early: the server answers before it reads the body.
UPLOAD_PY = PY_CLIENT_HEAD + r'''
ident, framing, mode, parts = sys.argv[1], sys.argv[2], sys.argv[3], [part.encode() for part in sys.argv[4:]]
lockstep = mode == "lockstep"
stalled = []

def wait_for_upstream(count, index):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with open("/tmp/upload-progress-%s" % ident) as note:
                if int(note.read() or 0) >= count - 1024:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    stalled.append(index)

conn = connect(False)
conn.putrequest("POST", "/stream/upload?id=%s%s" % (ident, {"lockstep": "&progress=1", "early": "&early=1"}.get(mode, "")))
conn.putheader("Content-Type", "application/octet-stream")
if framing == "chunked":
    conn.putheader("Transfer-Encoding", "chunked")
else:
    conn.putheader("Content-Length", str(sum(len(part) for part in parts)))
conn.endheaders()
errors, sent = [], 0
for index, part in enumerate(parts + ([b""] if framing == "chunked" else [])):
    if lockstep and 0 < index < len(parts):
        wait_for_upstream(sent, index)
    else:
        time.sleep(0.5)
    try:
        conn.send(b"%x\r\n%s\r\n" % (len(part), part) if framing == "chunked" else part)
    except OSError as exc:
        errors.append(type(exc).__name__)
        break
    sent += len(part)
try:
    resp = conn.getresponse()
    out = {"status": resp.status, "block": resp.headers.get("X-Agent-Sandbox-Block"), "body": resp.read().decode()[:2000]}
except (OSError, http.client.HTTPException) as exc:
    out = {"status": None, "error": type(exc).__name__}
out["send_errors"] = errors
if lockstep:
    out["stalled"] = stalled
print(json.dumps(out))
'''


def run_id(name):
    return "%s-%d" % (name, time.time_ns())


def stream_records(host, ident):
    return [r for r in (json.loads(line) for line in host.file(STREAM_LOG).content_string.splitlines()) if r["id"] == ident]


def wait_for_stream_record(host, ident, seconds=30):
    """The server's record of run ident, written when it is done (it gives up after 15 s)."""
    for _attempt in range(seconds * 4):
        if host.file(STREAM_LOG).exists and stream_records(host, ident):
            return stream_records(host, ident)[-1]
        time.sleep(0.25)
    return None


def reached_upstream(host, ident):
    return any("id=%s" % ident in r["path"] for r in (json.loads(line) for line in host.file(FAKE_LOG).content_string.splitlines()))


def audit_lines(host, path):
    return [r for r in audit_records(host) if r.get("path") == path]


def new_audit_line(host, path, seen):
    """The first audit line for path after the seen ones (a streamed flow's line may come a moment
    after the agent has its answer)."""
    for _attempt in range(40):
        lines = audit_lines(host, path)
        if len(lines) > seen:
            return lines[seen]
        time.sleep(0.25)
    raise AssertionError("no new audit line for %s" % path)


def py(host, script, args, direct=False):
    """Run script (python3) with args: as root straight to the site if direct, else as the agent."""
    command = "python3 -c %s %s" % (shlex.quote(script), " ".join(shlex.quote(str(a)) for a in args))
    out = host.run(command + " --direct") if direct else as_agent(host, command)
    assert out.rc == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


EVENTS = ["event %d" % k for k in range(1, 6)]


@pytest.mark.parametrize("framing,version", [("chunked", "1.1"), ("close", "1.1"), ("chunked", "2")])
def test_sse_events_reach_the_agent_in_lockstep_with_curl(host, framing, version):
    """The server sends event k+1 only after the agent has read event k, so every event must
    reach the agent while the stream is still open: a proxy that holds the body back deadlocks
    it until the server gives up (15 s), and the agent then sees one event at most.
    version: the HTTP version between the agent and the proxy (the fake site speaks 1.1)."""
    ident = run_id("sse-curl-%s-http%s" % (framing, version.replace(".", "")))
    extra = "--http%s -w '%%{stderr}%%{http_code} %%{http_version}'" % ("2" if version == "2" else "1.1")
    out = as_agent(host, SSE_CURL % {"extra": extra, "id": ident, "n": len(EVENTS), "framing": framing})
    assert out.stdout.splitlines() == EVENTS + ["acked 5"], out.stdout + out.stderr
    # (At the end of a close-delimited stream mitmproxy 12.2.3 may close the agent's TLS
    # connection without close_notify, plain mitmdump too: curl then adds "curl: (56) ...
    # unexpected eof" once it has every event.)
    assert out.stderr.splitlines()[-1] == "200 " + version, out.stderr
    assert wait_for_stream_record(host, ident) == {"kind": "sse", "id": ident, "events": 5, "acked": 5, "gave_up": False}


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_sse_events_reach_the_agent_in_lockstep_with_python(host, framing):
    ident = run_id("sse-py-" + framing)
    assert py(host, SSE_PY, [ident, len(EVENTS), framing]) == {"status": 200, "data": EVENTS + ["acked 5"]}
    assert wait_for_stream_record(host, ident) == {"kind": "sse", "id": ident, "events": 5, "acked": 5, "gave_up": False}


def test_sse_lockstep_control_without_the_proxy(host):
    """Control: the same client and server straight to each other (root, the test CA) run in
    lockstep, so a failure above is the proxy's; and a client that never acknowledges shows
    the server does hold event 2 back (it gives up after event 1, here after 1 s)."""
    ident = run_id("sse-direct")
    assert py(host, SSE_PY, [ident, len(EVENTS), "chunked"], direct=True) == {"status": 200, "data": EVENTS + ["acked 5"]}
    assert wait_for_stream_record(host, ident)["acked"] == 5
    mute = run_id("sse-mute")
    out = host.run("curl -sS -N --noproxy '*' --cacert /etc/fake-internet/ca.pem "
                   "'https://allowed.test/stream/sse?id=%s&n=3&wait=1' | grep '^data: '" % mute)
    assert out.stdout.splitlines() == ["data: event 1", "data: acked 0"]
    assert wait_for_stream_record(host, mute) == {"kind": "sse", "id": mute, "events": 3, "acked": 0, "gave_up": True}


def unit_memory_limit(host, pid):
    """(systemd's MemoryMax, the limit in force on the process's cgroup: v1 or v2)."""
    configured = host.run("systemctl show -p MemoryMax --value %s" % SERVICE).stdout.strip()
    groups = dict(line.split(":", 2)[1:] for line in host.file("/proc/%s/cgroup" % pid).content_string.splitlines())
    if "memory" in groups:
        path = "/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % groups["memory"]
    else:
        path = "/sys/fs/cgroup%s/memory.max" % groups[""]
    return configured, host.file(path).content_string.strip()


def proxy_answers(host):
    for _attempt in range(60):
        if curl(host, "https://allowed.test/")[0] == "200":
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def small_memory_limit(host):
    """MemoryMax=150M on the proxy's unit for one test (a runtime property), and a restart so that
    its peak RSS counts from now. Afterwards the configured limit again."""
    before = host.run("systemctl show -p MemoryMax --value %s" % SERVICE).stdout.strip()
    assert host.run("systemctl set-property --runtime %s MemoryMax=150M" % SERVICE).rc == 0
    assert host.run("systemctl restart %s" % SERVICE).rc == 0
    assert proxy_answers(host)
    yield 150 * MiB
    host.run("systemctl set-property --runtime %s MemoryMax=%s" % (SERVICE, before))
    host.run("rm -f /run/systemd/system.control/{0}.d/50-MemoryMax.conf && rmdir --ignore-fail-on-non-empty "
             "/run/systemd/system.control/{0}.d && systemctl daemon-reload".format(SERVICE))
    assert host.run("systemctl show -p MemoryMax --value %s" % SERVICE).stdout.strip() == before
    assert proxy_answers(host)  # restarted by systemd if the limit killed it


def test_a_download_larger_than_the_proxys_memory_limit_streams_through(host, small_memory_limit):
    limit = small_memory_limit
    pid = proxy_pid(host)
    assert unit_memory_limit(host, pid) == (str(limit), str(limit))
    restarts = host.run("systemctl show -p NRestarts --value %s" % SERVICE).stdout.strip()
    ident, size = run_id("big-download"), 400 * MiB
    seen = len(audit_lines(host, "/stream/bytes"))
    out = as_agent(host, "curl -sS -w '%%{stderr}%%{http_code} %%{size_download}' "
                   "'https://allowed.test/stream/bytes?id=%s&size=%d' | sha256sum" % (ident, size))
    sent = wait_for_stream_record(host, ident)
    assert sent == {"kind": "bytes", "id": ident, "bytes": size, "sha256": sent["sha256"], "end": "complete"}
    assert (out.stderr.strip(), out.stdout.split()[0]) == ("200 %d" % size, sent["sha256"])
    # Not killed by the limit (systemd would have restarted it under a new pid) and never near it.
    assert proxy_pid(host) == pid
    assert host.run("systemctl show -p NRestarts --value %s" % SERVICE).stdout.strip() == restarts
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", host.file("/proc/%s/status" % pid).content_string).group(1)) * 1024
    assert peak < limit
    # The audit line counts the streamed body.
    line = new_audit_line(host, "/stream/bytes", seen)
    assert (line["status"], line["bytes"]) == (200, size)


def test_the_memory_limit_is_enforced_in_this_container(host):
    """Control for the download above: a process that does hold 400 MiB under the same limit is killed,
    so the download passing is the proxy streaming, not a limit that does not bite here."""
    out = host.run("systemd-run --wait --quiet -p MemoryMax=150M -p MemorySwapMax=0 "
                   "/usr/bin/python3 -c 'import time; x = bytearray(b\"x\") * (400 << 20); print(len(x))'")
    assert out.rc != 0 and str(400 * MiB) not in out.stdout
    ok = host.run("systemd-run --wait --quiet -p MemoryMax=150M -p MemorySwapMax=0 "
                  "/usr/bin/python3 -c 'x = bytearray(b\"x\") * (40 << 20); print(len(x))'")
    assert ok.rc == 0


def upload_parts(placeholder):
    """Three parts; with a placeholder, part 1 ends with its first half and part 2 starts with the rest.
    120 kB in all: the proxy may take a body with a Content-Length of up to 64 KiB whole."""
    half = len(PLACEHOLDER) // 2
    first, second = (PLACEHOLDER[:half], PLACEHOLDER[half:]) if placeholder else ("h" * half, "H" * (len(PLACEHOLDER) - half))
    return ["a" * 40000 + first, second + "AFTER-THE-PLACEHOLDER" + "b" * 40000, "TAIL" + "c" * 40000]


def assert_cut_after_part_1(host, ident, parts):
    """The upstream got part 1 at most (a streaming proxy passes it on before it can know), never
    a byte of part 2 or after, and no complete request: the proxy closed the connection. (A proxy
    that holds the whole body first never contacts the upstream at all.)"""
    if reached_upstream(host, ident):
        received = host.file("%s/%s.bin" % (UPLOADS, ident)).content_string
        assert parts[0].startswith(received)
        assert "AFTER-THE-PLACEHOLDER" not in received and PLACEHOLDER[len(PLACEHOLDER) // 2:] not in received
        record = wait_for_stream_record(host, ident)
        assert record and record["end"] not in ("complete", "timeout"), record  # closed: eof or reset
    else:
        assert not host.file("%s/%s.bin" % (UPLOADS, ident)).exists


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_placeholder_split_across_upload_chunks_is_refused_before_it_leaves(host, framing):
    ident = run_id("split-" + framing)
    parts = upload_parts(placeholder=True)
    seen = len(audit_lines(host, "/stream/upload"))
    out = py(host, UPLOAD_PY, [ident, framing, "paced"] + parts)
    assert out["status"] == 403, out
    assert "reason=leak" in out["block"] and "leak" in out["body"]
    assert_cut_after_part_1(host, ident, parts)
    line = new_audit_line(host, "/stream/upload", seen)
    assert (line["reason"], line["leak"], line["decision"], line["status"]) == ("leak", True, "block", 403)


def test_a_placeholder_in_an_upload_the_upstream_answered_early_is_cut_and_logged_as_a_leak(host):
    """The upstream answers on the headers, before the body: the agent may already have that answer,
    but part 2 must still not reach the upstream, and the audit line must still say leak."""
    ident = run_id("split-early")
    parts = upload_parts(placeholder=True)
    seen = len(audit_lines(host, "/stream/upload"))
    out = py(host, UPLOAD_PY, [ident, "chunked", "early"] + parts)
    assert out["status"] in (200, 403, None), out
    assert_cut_after_part_1(host, ident, parts)
    # (The flow may have a line for its early answer too; one of its lines must say leak.)
    for _attempt in range(20):
        lines = audit_lines(host, "/stream/upload")[seen:]
        if any((line["reason"], line["leak"], line["decision"]) == ("leak", True, "block") for line in lines):
            break
        time.sleep(0.25)
    else:
        raise AssertionError("no leak line for the upload: %s" % lines)
    # Control: the same without the placeholder arrives whole, answered early all the same.
    whole = run_id("whole-early")
    out = py(host, UPLOAD_PY, [whole, "chunked", "early"] + upload_parts(placeholder=False))
    assert json.loads(out["body"]) == {"kind": "upload", "id": whole, "early": True}
    assert wait_for_stream_record(host, whole)["end"] == "complete"


def test_an_http2_upload_without_length_reaches_the_upstream_as_one_request(host):
    """HTTP/2 has no chunked framing: a body of unknown length must reach an HTTP/1.1 upstream
    framed (chunked), or the upstream reads it as requests of its own that no policy saw."""
    ident, smuggled = run_id("h2-upload"), run_id("smuggled")
    body = "GET /%s HTTP/1.1\r\nHost: allowed.test\r\n\r\n" % smuggled
    before = host.file(FAKE_LOG).content_string.count('"site": "allowed.test"')
    out = as_agent(host, "(sleep 0.3; printf %s; sleep 0.3) | curl --http2 -sS -T - -X POST -o /dev/null "
                   "-w '%%{http_code} %%{http_version}' 'https://allowed.test/stream/upload?id=%s'" % (shlex.quote(body), ident))
    assert smuggled not in host.file(FAKE_LOG).content_string
    assert host.file(FAKE_LOG).content_string.count('"site": "allowed.test"') == before + 1
    expected = body.encode()
    assert wait_for_stream_record(host, ident) == {"kind": "upload", "id": ident, "bytes": len(expected),
                                                   "sha256": hashlib.sha256(expected).hexdigest(), "end": "complete"}
    assert out.stdout == "200 2", out.stderr


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_control_the_same_upload_without_a_placeholder_arrives_whole_and_streamed(host, framing):
    """The client sends part 2 only once the upstream has part 1 (lockstep): a proxy that holds the
    request body back until it is complete stalls it (15 s per part, then the client goes on)."""
    ident = run_id("whole-" + framing)
    parts = upload_parts(placeholder=False)
    body = "".join(parts).encode()
    seen = len(audit_lines(host, "/stream/upload"))
    out = py(host, UPLOAD_PY, [ident, framing, "lockstep"] + parts)
    assert (out["status"], out["stalled"]) == (200, []), out
    record = wait_for_stream_record(host, ident)
    assert record == {"kind": "upload", "id": ident, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                      "end": "complete"}
    assert json.loads(out["body"]) == record
    line = new_audit_line(host, "/stream/upload", seen)
    assert (line["decision"], line["leak"], line["request_bytes"]) == ("allow", False, len(body))


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_secret_reflected_across_two_chunks_of_a_streamed_response_is_masked(host, encoding):
    """api.secret.test echoes the injected credential in a streamed body, its halves in two chunks
    sent apart (gzip: two flushed parts of one gzip stream)."""
    ident = run_id("reflect-" + encoding)
    out = as_agent(host, '. ~/.agent-env && curl -sS --compressed -H "x-api-key: $TEST_API_KEY" '
                   "'https://api.secret.test/stream/reflect?id=%s&encoding=%s'" % (ident, encoding))
    assert out.rc == 0, out.stderr
    assert SECRET not in out.stdout and SECRET[:12] not in out.stdout and SECRET[12:] not in out.stdout
    # Control: the whole body came, and what the upstream echoed was the real value.
    assert out.stdout.startswith("BEGIN ") and out.stdout.endswith(" END\n"), out.stdout
    assert wait_for_stream_record(host, ident)["reflected"]
    assert last_fake_request(host, "api.secret.test")["headers"]["x-api-key"] == SECRET


def test_audit_counts_bytes_of_streamed_flows(host):
    """A chunked download (no Content-Length) and a chunked upload: the audit line has the body sizes."""
    down, size = run_id("count-down"), 20 * MiB + 17
    seen_down, seen_up = len(audit_lines(host, "/stream/bytes")), len(audit_lines(host, "/stream/upload"))
    out = as_agent(host, "curl -sS -o /dev/null -w '%%{http_code} %%{size_download}' "
                   "'https://allowed.test/stream/bytes?id=%s&size=%d&framing=chunked'" % (down, size))
    assert out.stdout == "200 %d" % size, out.stderr
    up, upload_size = run_id("count-up"), 20 * MiB + 5
    out = as_agent(host, "head -c %d /dev/zero | curl -sS -o /dev/null -w '%%{http_code}' -H 'Transfer-Encoding: chunked' "
                   "--data-binary @- 'https://allowed.test/stream/upload?id=%s'" % (upload_size, up))
    assert out.stdout == "200", out.stderr
    assert wait_for_stream_record(host, up)["bytes"] == upload_size  # control: it all arrived
    host.run("rm -f %s/%s.bin" % (UPLOADS, up))
    downloaded = new_audit_line(host, "/stream/bytes", seen_down)
    uploaded = new_audit_line(host, "/stream/upload", seen_up)
    assert (downloaded["status"], downloaded["bytes"]) == (200, size)
    assert (uploaded["status"], uploaded["request_bytes"]) == (200, upload_size)


BIG_WHEEL = "big_sandbox-1.0-py3-none-any.whl"


def test_agent_pip_downloads_a_large_wheel_through_the_proxy(host):
    """pip checks the wheel against the sha256 in the index link; the test checks it against the file too."""
    pip = "/opt/agent-sandbox/proxy/bin/python -m pip download --no-cache-dir --no-deps --disable-pip-version-check"
    served = host.check_output("sha256sum /srv/fake-internet/packages/%s" % BIG_WHEEL).split()[0]
    assert "#sha256=%s" % served in host.file("/srv/fake-internet/simple/big-sandbox/index.html").content_string
    out = as_agent(host, "d=$(mktemp -d) && %s -q -d $d --index-url https://allowed.test/simple big-sandbox && sha256sum $d/%s && rm -rf $d"
                   % (pip, BIG_WHEEL))
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.split()[0] == served
    # Control: the same from an index that is not allowed. pip does not show the 403; the proxy's log does.
    before = host.file(FAKE_LOG).content_string.count('"site": "blocked.test"')
    blocks = len([r for r in audit_records(host) if r["host"] == "blocked.test" and r["decision"] == "block"])
    refused = as_agent(host, "d=$(mktemp -d) && %s -q -d $d --retries 0 --index-url https://blocked.test/simple big-sandbox; "
                       "rc=$?; rm -rf $d; exit $rc" % pip)
    assert refused.rc != 0
    assert len([r for r in audit_records(host) if r["host"] == "blocked.test" and r["decision"] == "block"]) > blocks
    assert host.file(FAKE_LOG).content_string.count('"site": "blocked.test"') == before
