# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor checks, per toolchain, that the agent's clients trust the proxy's CA (issue 16).

The probe runs the real clients (curl, python3 with ssl, requests and pip, git, node where this host has
them) against a real HTTPS server on loopback whose certificate comes from a test CA, with the variables
the agent's dotfiles set: pointed at a bundle holding the test CA they PASS, pointed at one without it they
FAIL naming the variable, and a client missing from PATH is a SKIP. No proxy: with HTTPS_PROXY unset the
clients connect directly, and trust is the same question.
"""
from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import sys
import threading

import pytest

# Every variable a client of the table reads for its trust or its proxy: the test sets each one itself.
TRUST_VARIABLES = ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
                   "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "CARGO_HTTP_CAINFO", "JAVA_TOOL_OPTIONS",
                   "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                   "npm_config_cafile", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"]


PYTHON = "this python"
SEARCH_PATH = os.environ.get("PATH", os.defpath)  # where the host's clients are found, before a test empties PATH


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """https://localhost:PORT/ with a certificate from a test CA; (url, bundle with the CA, bundle without)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("site")

    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=agent-sandbox test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "site.key", "-out", "site.csr")
    (folder / "ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "site.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "ext", "-out", "site.pem")
    system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    other = folder / "system-only.pem"
    other.write_text(open(system, encoding="utf-8").read() if os.path.exists(system) else "")
    trusted = folder / "bundle.pem"
    trusted.write_text(other.read_text() + "\n" + (folder / "ca.pem").read_text())

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = b"<!DOCTYPE html><html><body></body></html>\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "site.pem", folder / "site.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "https://localhost:%d/" % server.server_address[1], str(trusted), str(other)
    server.shutdown()


@pytest.fixture()
def agent_env(tmp_path, monkeypatch):
    """An agent's environment with nothing of this host's: a home of its own (no ~/.npmrc, ~/.curlrc), no pip
    config, no proxy and no CA variable, and a PATH holding only the clients linked into it."""
    home = tmp_path / "home"
    home.mkdir()
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PATH", str(tools))

    def link(name, target=None):
        if target == PYTHON:
            # This Python with its own packages (a virtualenv is found from the path it is started by).
            (tools / name).write_text('#!/bin/sh\nexec %s "$@"\n' % sys.executable)
            (tools / name).chmod(0o755)
            return
        target = target or shutil.which(name, path=SEARCH_PATH)
        if not target:
            pytest.skip("%s is not installed on this host" % name)
        (tools / name).symlink_to(target)

    return link


# Each client, the variable that decides its trust here, and what to link into the agent's PATH.
CLIENTS = [
    ("curl", "CURL_CA_BUNDLE", ["curl"]),
    ("python ssl", "SSL_CERT_FILE", ["python3"]),
    ("python requests", "REQUESTS_CA_BUNDLE", ["python3"]),
    ("pip", "PIP_CERT", ["python3"]),
    ("git", "GIT_SSL_CAINFO", ["git"]),
    ("node", "NODE_EXTRA_CA_CERTS", ["node"]),
]


def link_clients(link, names):
    for name in names:
        link(name, PYTHON if name == "python3" else None)


@pytest.mark.parametrize("name, variable, programs", CLIENTS, ids=[c[0] for c in CLIENTS])
def test_a_client_that_trusts_the_bundle_passes_and_one_that_does_not_fails_naming_the_variable(
        doctor, site, agent_env, monkeypatch, name, variable, programs):
    link_clients(agent_env, programs)
    if name in ("python requests", "pip"):
        probe = subprocess.run([sys.executable, "-c", "import requests, pip"], capture_output=True, check=False)
        if probe.returncode:
            pytest.skip("requests or pip is missing from this Python")
    url, trusted, other = site
    monkeypatch.setenv(variable, trusted)
    res = doctor.probe_toolchain(name, url, 5, 60)
    assert res["outcome"] == "answered", res
    assert doctor.judge_toolchain(name, res, "/etc/agent-sandbox/ca-bundle.pem")[0] == "PASS"

    monkeypatch.setenv(variable, other)  # the system's CAs only: the variable names a file without the CA
    res = doctor.probe_toolchain(name, url, 5, 60)
    assert res["outcome"] == "untrusted", res
    status, happened = doctor.judge_toolchain(name, res, "/etc/agent-sandbox/ca-bundle.pem")
    assert status == "FAIL"
    assert "does not trust the proxy CA" in happened
    assert "fix: %s=/etc/agent-sandbox/ca-bundle.pem" % variable in happened, happened
    assert "%s=%s" % (variable, other) in happened, happened  # what it is now


def test_requests_loses_to_nothing_but_pip_cert_loses_to_requests_ca_bundle(doctor, site, agent_env, monkeypatch):
    # requests applies REQUESTS_CA_BUNDLE over a session's own bundle: pip's PIP_CERT counts only while
    # REQUESTS_CA_BUNDLE is unset or names the same file. The fix says so, and shows both values.
    agent_env("python3", PYTHON)
    if subprocess.run([sys.executable, "-c", "import pip"], capture_output=True, check=False).returncode:
        pytest.skip("pip is missing from this Python")
    url, trusted, other = site
    monkeypatch.setenv("PIP_CERT", trusted)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other)
    res = doctor.probe_toolchain("pip", url, 5, 60)
    status, happened = doctor.judge_toolchain("pip", res, trusted)
    assert status == "FAIL" and "REQUESTS_CA_BUNDLE=%s" % other in happened, happened


def test_a_client_not_installed_is_skipped(doctor, site, agent_env):
    url = site[0]
    for name in doctor.TOOLCHAINS:
        res = doctor.probe_toolchain(name, url, 5, 60)
        assert res["outcome"] == "missing", (name, res)
        status, happened = doctor.judge_toolchain(name, res, "/b.pem")
        assert status == "SKIP" and "not installed" in happened, (name, happened)


def test_requests_missing_from_python_is_skipped(doctor, site, agent_env, tmp_path):
    # A python3 that cannot import requests (a stand-in that runs this Python with -I and an empty path).
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\nexec %s -S -I "$@"\n' % sys.executable)
    fake.chmod(0o755)
    agent_env("python3", str(fake))
    res = doctor.probe_toolchain("python requests", site[0], 5, 60)
    assert res["outcome"] == "missing" and "requests" in res["detail"], res
    assert doctor.judge_toolchain("python requests", res, "/b.pem")[0] == "SKIP"


def test_a_client_that_gets_no_answer_fails_without_blaming_the_certificate(doctor, agent_env):
    agent_env("curl")
    res = doctor.probe_toolchain("curl", "https://localhost:9/", 2, 30)  # nothing listens on port 9
    status, happened = doctor.judge_toolchain("curl", res, "/b.pem")
    assert res["outcome"] == "error" and status == "FAIL", res
    assert "not a certificate error" in happened and "fix:" not in happened


def test_a_client_that_hangs_fails_within_its_limit(doctor, agent_env, tmp_path):
    slow = tmp_path / "slow-curl"
    slow.write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    slow.chmod(0o755)
    agent_env("curl", str(slow))
    res = doctor.probe_toolchain("curl", "https://localhost:9/", 1, 1)
    assert res["outcome"] == "error" and "did not finish in 1 s" in res["detail"], res


# What the clients print when they refuse the certificate, as captured from each (Debian 12: curl 7.88
# with OpenSSL, git 2.39 with GnuTLS, npm 10, cargo 1.95, OpenJDK 17; Debian 13: git 2.47 with GnuTLS 3.8,
# in the default scenario) against a server whose CA they lack.
REFUSALS = {
    "git on Debian 13": (128, "fatal: unable to access 'https://allowed.test/': server verification failed:"
                              " certificate signer not trusted. (CAfile: /etc/ssl/certs/ca-certificates.crt"
                              " CRLfile: none)"),
    "curl": (60, "000\ncurl: (60) SSL certificate problem: unable to get local issuer certificate"),
    "git": (128, "fatal: unable to access 'https://localhost:8443/': server certificate verification failed."
                 " CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none"),
    "npm": (1, "npm notice PING https://localhost:8443/\nnpm error code UNABLE_TO_VERIFY_LEAF_SIGNATURE\n"
               "npm error request to https://localhost:8443/-/ping failed, reason: unable to verify the first"
               " certificate"),
    "cargo": (101, "    Updating `sparse+https://localhost:8443/` index\nerror: failed to query replaced source\n"
                   "Caused by:\n  [60] SSL peer certificate or SSH remote key was not OK (SSL certificate problem:"
                   " unable to get local issuer certificate)"),
    "java": (1, "Exception in thread \"main\" javax.net.ssl.SSLHandshakeException: PKIX path building failed:"
                " sun.security.provider.certpath.SunCertPathBuilderException: unable to find valid certification"
                " path to requested target"),
    "go": (1, '{"Path": "agent-sandbox.invalid/doctor-probe", "Error": "agent-sandbox.invalid/doctor-probe@latest:'
              ' Get \\"https://allowed.test/agent-sandbox.invalid/doctor-probe/@v/list\\": tls: failed to verify'
              ' certificate: x509: certificate signed by unknown authority"}'),
}
# And what they print when the server answered over TLS (a page that is no registry, index or repository).
ANSWERS = {
    "curl": (0, "200"),
    "git": (128, "fatal: https://localhost:8443/info/refs not valid: is this a git repository?"),
    "npm": (0, "npm notice PING https://localhost:8443/\nnpm notice PONG 651ms"),
    "cargo": (101, "    Updating `sparse+https://localhost:8443/` index\nerror: expected value at line 1 column 1"),
    "java": (0, "Picked up JAVA_TOOL_OPTIONS: -Djavax.net.ssl.trustStore=/x.p12\nHTTP 200"),
    "go": (1, '{"Path": "agent-sandbox.invalid/doctor-probe", "Error": "agent-sandbox.invalid/doctor-probe@latest:'
              ' reading https://allowed.test/agent-sandbox.invalid/doctor-probe/@v/list: 404 Not Found"}'),
    "pip": (1, "WARNING: Skipping page https://localhost:8443/ because the GET request got Content-Type: text/plain.\n"
               "ERROR: No matching distribution found for agent-sandbox-doctor-probe"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_each_clients_refusal_is_read_as_untrusted(doctor, name):
    rc, out = REFUSALS[name]
    assert doctor.judge_output(name.split()[0], rc, out)["outcome"] == "untrusted"


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_each_clients_answer_is_read_as_trusted(doctor, name):
    rc, out = ANSWERS[name]
    assert doctor.judge_output(name, rc, out)["outcome"] == "answered", doctor.judge_output(name, rc, out)


def test_a_jre_without_compiler_is_skipped(doctor):
    out = "error: module not found: jdk.compiler"
    assert doctor.judge_output("java", 1, out)["outcome"] == "missing"


def test_the_java_fix_names_a_truststore(doctor):
    res = {"outcome": "untrusted", "detail": REFUSALS["java"][1], "env": {"JAVA_TOOL_OPTIONS": None}}
    status, happened = doctor.judge_toolchain("java", res, "/etc/agent-sandbox/ca-bundle.pem")
    assert status == "FAIL" and "-Djavax.net.ssl.trustStore=" in happened and "JAVA_TOOL_OPTIONS=(unset)" in happened


def test_the_check_runs_only_with_an_https_allowed_url(doctor):
    class Probed(doctor.Doctor):
        asked = []

        def as_agent_all(self, *probes):
            self.asked.extend(probes)
            return [{"outcome": "missing", "detail": "not installed", "env": {}} for _probe in probes]

    check = Probed({"proxy_port": 8080, "allowed_url": "http://allowed.test/"}, "agent")
    check.toolchains()
    assert check.results == [] and Probed.asked == []
    check = Probed({"proxy_port": 8080, "allowed_url": "https://allowed.test/", "ca_bundle": "/b.pem"}, "agent")
    check.toolchains()
    assert [r["check"] for r in check.results] == ["%s trusts the proxy CA" % n for n in doctor.TOOLCHAINS]
    assert {r["status"] for r in check.results} == {"SKIP"}
    assert all(p[0] == "toolchain" and p[2] == "https://allowed.test/" for p in Probed.asked)
