# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor: check the sandbox's promises on a live host.

The admin (or root) runs `agent-sandbox doctor`. Every claim about the agent is
tried *as the agent*, through `agent-run`, which re-invokes this same file as
`agent-sandbox probe serve`: one session of the agent per report that runs each probe
it is sent and answers with one JSON object per probe (`agent-sandbox probe KIND ...`
runs one probe by hand). The doctor prints one line per check (PASS/FAIL, what was
tried, what happened), a summary, and exits non-zero on any FAIL. `--json` prints the
results for machines.

The checks run at once (a thread each, and the agents side by side), and so do the probes
within a check: a blocked connection waits out its timeout once for the whole report, not once
per probe. The report keeps the order in which the checks are listed, whatever order they end in.

`agent-sandbox log` and `agent-sandbox status` (agent_sandbox_audit.py, installed beside this file)
show the admin what the proxy refused and whether the sandbox is up, without sudo.

`agent-sandbox stop [--agent NAME]`, run by root (the admin through sudo), ends
every process of the agents (or of one): SIGTERM, a short grace, then SIGKILL.

Settings come from /etc/agent-sandbox/doctor.json (written by the selftest
role; it holds no secret: the placeholder is what the agent already has).
"""
from __future__ import annotations

import argparse
import errno
import functools
import grp
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

CONFIG = "/etc/agent-sandbox/doctor.json"
CA_BUNDLE = "/etc/agent-sandbox/ca-bundle.pem"  # sandbox_user_ca_bundle's default
PRIVILEGED_GROUPS = {"sudo", "wheel", "admin", "adm", "docker", "lxd", "root"}


# --------------------------------------------------------------------------
# Probes: run as the agent, each prints {"outcome": ..., "detail": ...}.
# --------------------------------------------------------------------------

def probe_tcp(host, port, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, int(port)))
        return {"outcome": "connected", "detail": "connection established"}
    except socket.timeout:
        return {"outcome": "timeout", "detail": "no answer in %ss" % timeout}
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return {"outcome": "denied", "detail": os.strerror(exc.errno)}
        if exc.errno == errno.ECONNREFUSED:
            return {"outcome": "refused", "detail": "connection refused (a RST came back)"}
        return {"outcome": "error", "detail": str(exc)}
    finally:
        sock.close()


def probe_udp(host, port, timeout):
    """Send one datagram (a DNS query when port is 53) and wait for an answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    # A DNS query for example.com, type A: harmless to any UDP listener.
    query = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
    try:
        sock.sendto(query, (host, int(port)))
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return {"outcome": "denied", "detail": "sendto: " + os.strerror(exc.errno)}
        return {"outcome": "error", "detail": str(exc)}
    try:
        sock.recvfrom(4096)
        return {"outcome": "answered", "detail": "a reply came back"}
    except socket.timeout:
        return {"outcome": "sent", "detail": "datagram left the socket; no reply in %ss" % timeout}
    except OSError as exc:
        return {"outcome": "sent", "detail": "datagram left the socket; %s" % exc}
    finally:
        sock.close()


def probe_ping(host, timeout):
    cmd = ["ping", "-6" if ":" in host else "-4", "-c", "1", "-W", str(int(timeout)), host]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, check=False)
    except FileNotFoundError:
        return {"outcome": "error", "detail": "ping is not installed"}
    out = (proc.stdout + proc.stderr).strip().splitlines()
    last = out[-1] if out else ""
    if proc.returncode == 0:
        return {"outcome": "answered", "detail": "echo reply received"}
    return {"outcome": "denied", "detail": last or "ping exit %d" % proc.returncode}


def proxy_connect(url, timeout):
    """For an https URL, send the CONNECT the agent's clients send to its proxy
    (HTTPS_PROXY) and return the proxy's answer when it refuses the tunnel:
    urllib hides the refusal's headers, and the policy header is the point."""
    parsed = urllib.parse.urlsplit(url)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if parsed.scheme != "https" or not proxy:
        return None
    p = urllib.parse.urlsplit(proxy)
    target = "%s:%d" % (parsed.hostname, parsed.port or 443)
    try:
        with socket.create_connection((p.hostname, p.port or 8080), timeout=timeout) as sock:
            sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return {"outcome": "error", "status": 0, "block": "", "detail": "CONNECT %s: %s" % (target, exc)}
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return {"outcome": "error", "status": 0, "block": "", "detail": "CONNECT %s: bad answer" % target}
    if status == 200:
        return None
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    block = next((v.strip() for k, v in headers.items() if k.lower() == "x-agent-sandbox-block"), "")
    text = " ".join(body.decode("utf-8", "replace").split())[:120]
    return {"outcome": "status", "status": status, "block": block,
            "detail": "CONNECT refused: HTTP %d, %s; %s" % (status, block or "no block header", text)}


def probe_http(url, headers, timeout):
    """Fetch url with the agent's own proxy and CA settings (its login env)."""
    refused = proxy_connect(url, timeout)
    if refused:
        return refused
    req = urllib.request.Request(url, headers=dict(headers or {}))
    ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return {"outcome": "status", "status": resp.status,
                    "block": resp.headers.get("X-Agent-Sandbox-Block", ""),
                    "detail": "HTTP %d" % resp.status}
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace")
        return {"outcome": "status", "status": exc.code,
                "block": exc.headers.get("X-Agent-Sandbox-Block", ""),
                "detail": "HTTP %d: %s" % (exc.code, " ".join(body.split())[:120])}
    except (urllib.error.URLError, OSError) as exc:
        return {"outcome": "error", "status": 0, "block": "", "detail": str(exc)[:200]}


def probe_read(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as fh:
                fh.read(1)
        return {"outcome": "readable", "detail": "read succeeded"}
    except FileNotFoundError:
        return {"outcome": "missing", "detail": "no such file: nothing to check (wrong path in the settings?)"}
    except OSError as exc:
        return {"outcome": "denied", "detail": exc.strerror or str(exc)}


def probe_identity():
    groups = sorted({grp.getgrgid(g).gr_name for g in os.getgroups()} |
                    {grp.getgrgid(os.getgid()).gr_name})
    try:
        sudo = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True, check=False)
        sudo_rc, sudo_err = sudo.returncode, sudo.stderr.strip()[:160]
    except FileNotFoundError:
        sudo_rc, sudo_err = 127, "sudo is not installed"
    return {"outcome": "identity", "uid": os.getuid(), "groups": groups,
            "sudo_rc": sudo_rc, "sudo_err": sudo_err,
            "detail": "uid %d" % os.getuid()}


def probe_cgroup():
    """The probe's cgroup in systemd's own hierarchy: name=systemd on cgroup v1, else the unified one."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            lines = [line.rstrip("\n").split(":", 2) for line in fh if line.count(":") >= 2]
    except OSError as exc:
        return {"outcome": "error", "detail": "cannot read /proc/self/cgroup: %s" % exc}
    paths = [p for _num, ctl, p in lines if ctl == "name=systemd"] or [p for num, _ctl, p in lines if num == "0"]
    path = paths[0] if paths else ""
    return {"outcome": "cgroup", "uid": os.getuid(), "path": path, "detail": path or "no systemd cgroup"}


def probe_writable(paths):
    """Which of the paths the probe's user could change (access(2) with the real uid, ACLs included)."""
    writable = [p for p in paths if os.path.lexists(p) and os.access(p, os.W_OK)]
    return {"outcome": "writable", "paths": writable, "detail": "%d of %d writable" % (len(writable), len(paths))}


def probe_unix(path, timeout):
    """Connect to a unix stream socket (WSL's interop sockets), as WSL's /init does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        return {"outcome": "connected", "detail": "connected to " + path}
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return {"outcome": "denied", "detail": "%s: %s" % (path, os.strerror(exc.errno))}
        return {"outcome": "error", "detail": "%s: %s" % (path, exc)}
    finally:
        sock.close()


def probe_exec(path, interpreter, interop, timeout):
    """Run a Windows program as WSL runs it: the kernel hands a file that starts with MZ to the
    interpreter its binfmt_misc entry names (/init). Where the kernel has no such entry (ENOEXEC),
    run the interpreter the way binfmt_misc would (flag P: the file, then argv[0]). interop, when
    not empty, is put in WSL_INTEROP: the socket /init asks to start the program."""
    env = dict(os.environ, WSL_INTEROP=interop) if interop else dict(os.environ)
    for argv in ([path], [interpreter, path, path]):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        except OSError as exc:
            if exc.errno == errno.ENOEXEC and argv == [path]:
                continue
            return {"outcome": "denied" if exc.errno in (errno.EPERM, errno.EACCES) else "error",
                    "detail": "%s: %s" % (argv[0], exc.strerror or exc)}
        except subprocess.TimeoutExpired:
            return {"outcome": "error", "detail": "%s did not end in %ss" % (argv[0], timeout)}
        said = " ".join((proc.stdout + " " + proc.stderr).split())[:200]
        how = "" if argv == [path] else " (through %s)" % interpreter
        if proc.returncode == 0:
            return {"outcome": "ran", "detail": "exit 0%s: %s" % (how, said or "no output")}
        return {"outcome": "failed", "detail": "exit %d%s: %s" % (proc.returncode, how, said or "no output")}
    return {"outcome": "error", "detail": "not run"}


# --------------------------------------------------------------------------
# Toolchains: does each client the agent may run trust the proxy's CA?
# One HTTPS request to the allowed URL with the tool itself, in the agent's login environment.
# --------------------------------------------------------------------------

# What the tools print when the certificate the proxy presents does not chain to a CA they trust.
UNTRUSTED = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem|server (certificate )?verification"
    r" failed|certificate signer not trusted|unable to (get local issuer|verify the first) certificate|self[- ]signed certificate"
    r"|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT_IN_CHAIN"
    r"|certificate signed by unknown authority|PKIX path building failed|unable to find valid certification path"
    r"|invalid peer certificate|UnknownIssuer|SSL peer certificate", re.I)

PY_SSL = """import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as resp:
        print("HTTP %d" % resp.status)
except urllib.error.HTTPError as exc:
    print("HTTP %d" % exc.code)
"""

PY_REQUESTS = """import sys
try:
    import requests
except ImportError:
    print("not installed: no module named requests")
    sys.exit(3)
print("HTTP %d" % requests.get(sys.argv[1], timeout=float(sys.argv[2])).status_code)
"""

# Node's https module does not read HTTPS_PROXY: the tunnel is opened here, the TLS is node's own.
NODE = """const http = require('http'), https = require('https'), tls = require('tls');
const url = new URL(process.argv[1]), ms = 1000 * Number(process.argv[2]);
const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
const fail = (e) => { console.log((e.code || '') + ' ' + e.message); process.exit(1); };
const get = (options) => https.get(url, options, (res) => { console.log('HTTP ' + res.statusCode); res.resume(); process.exit(0); }).on('error', fail);
setTimeout(() => fail(new Error('no answer in ' + ms + ' ms')), ms).unref();
if (!proxy) { get({}); } else {
  const p = new URL(proxy), target = url.hostname + ':' + (url.port || 443);
  http.request({host: p.hostname, port: p.port || 80, method: 'CONNECT', path: target, headers: {host: target}})
    .on('connect', (res, socket) => {
      if (res.statusCode !== 200) { fail(new Error('CONNECT refused: HTTP ' + res.statusCode)); }
      // Without a Host header of its own, node names port 80 on a connection it did not open itself.
      get({headers: {host: url.host}, createConnection: () => tls.connect({socket: socket, servername: url.hostname})});
    }).on('error', fail).end();
}
"""

JAVA = """public class AgentSandboxProbe {
    public static void main(String[] args) throws Exception {
        java.net.HttpURLConnection conn = (java.net.HttpURLConnection) new java.net.URL(args[0]).openConnection();
        int ms = (int) (Double.parseDouble(args[1]) * 1000);
        conn.setConnectTimeout(ms);
        conn.setReadTimeout(ms);
        System.out.println("HTTP " + conn.getResponseCode());
    }
}
"""

# name: (program, the variables that decide its trust, the fix, what shows the server answered over TLS).
# The fix names the variable the agent's dotfiles set (sandbox_user_ca_env_names) to the CA bundle.
TOOLCHAINS = {
    "curl": ("curl", ["CURL_CA_BUNDLE", "SSL_CERT_FILE"], "CURL_CA_BUNDLE={bundle} (and no `cacert` in ~/.curlrc)",
             r"^[1-5]\d\d$"),
    "python ssl": ("python3", ["SSL_CERT_FILE", "SSL_CERT_DIR"], "SSL_CERT_FILE={bundle}", r"^HTTP \d+"),
    "python requests": ("python3", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"], "REQUESTS_CA_BUNDLE={bundle}",
                        r"^HTTP \d+"),
    "pip": ("python3", ["PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"],
            "PIP_CERT={bundle} (REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE win over it when set: the same file)",
            r"No matching distribution|Skipping page|Client Error|Server Error"),
    "git": ("git", ["GIT_SSL_CAINFO"], "GIT_SSL_CAINFO={bundle} (or http.sslCAInfo in ~/.gitconfig)",
            r"not found|not valid|returned error: \d{3}|Authentication failed|could not read Username"),
    "node": ("node", ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"],
             "NODE_EXTRA_CA_CERTS={bundle} (a node built to use OpenSSL's CAs, as Debian's, reads SSL_CERT_FILE too)",
             r"^HTTP \d+"),
    "npm": ("npm", ["NODE_EXTRA_CA_CERTS", "npm_config_cafile"],
            "NODE_EXTRA_CA_CERTS={bundle}, and no `cafile` or `ca` in ~/.npmrc other than {bundle}",
            r"PONG|\bE\d{3}\b|\b[1-5]\d\d\b (Not Found|Forbidden|Method)"),
    "go": ("go", ["SSL_CERT_FILE", "SSL_CERT_DIR"], "SSL_CERT_FILE={bundle} (Linux; on macOS Go asks the keychain)",
           r"reading https?://\S+: \d{3}|\bnot found\b|\b[1-5]\d\d [A-Z]"),
    "cargo": ("cargo", ["CARGO_HTTP_CAINFO", "SSL_CERT_FILE"], "CARGO_HTTP_CAINFO={bundle} (or http.cainfo)",
              r"got \d{3}|expected value|EOF while parsing|missing field|invalid type"),
    "java": ("java", ["JAVA_TOOL_OPTIONS"],
             "JAVA_TOOL_OPTIONS='-Djavax.net.ssl.trustStore=FILE -Djavax.net.ssl.trustStorePassword=changeit', FILE a"
             " copy of the JDK's cacerts with the proxy CA imported (keytool -importcert -file /etc/agent-sandbox/proxy-ca.pem)",
             r"^HTTP \d+"),
}


def toolchain_command(name, url, timeout, workdir):
    """(argv, extra environment) of one HTTPS request to url with the toolchain's own client."""
    t = "%g" % timeout
    if name == "curl":
        return ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-m", t, url], {}
    if name == "python ssl":
        return ["python3", "-c", PY_SSL, url, t], {}
    if name == "python requests":
        return ["python3", "-c", PY_REQUESTS, url, t], {}
    if name == "pip":
        # --find-links fetches exactly the allowed URL; nothing is installed or kept.
        return ["python3", "-m", "pip", "download", "--no-deps", "--no-index", "--find-links", url, "--dest", workdir,
                "--retries", "0", "--timeout", t, "--disable-pip-version-check", "--no-cache-dir",
                "agent-sandbox-doctor-probe"], {}
    if name == "git":
        return ["git", "ls-remote", "--", url], {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    if name == "node":
        return ["node", "-e", NODE, url, t], {}
    if name == "npm":
        return ["npm", "ping", "--registry", url, "--fetch-retries", "0", "--fetch-timeout", str(int(timeout * 1000)),
                "--no-update-notifier"], {}
    if name == "go":
        # The go command's own client, with the allowed URL as a module proxy: one GET of a list there.
        return ["go", "mod", "download", "-json", "agent-sandbox.invalid/doctor-probe@latest"], {
            "GOPROXY": url.rstrip("/"), "GOSUMDB": "off", "GOTOOLCHAIN": "local", "GO111MODULE": "on",
            "GOFLAGS": "-modcacherw", "GOPRIVATE": "", "GONOPROXY": "", "GOMODCACHE": os.path.join(workdir, "mod")}
    if name == "cargo":
        # A sparse index at the allowed URL: cargo fetches its config.json.
        return ["cargo", "search", "--limit", "1", "--index", "sparse+" + url.rstrip("/") + "/",
                "agent-sandbox-doctor-probe"], {"CARGO_NET_RETRY": "0"}
    if name == "java":
        source = os.path.join(workdir, "AgentSandboxProbe.java")
        with open(source, "w", encoding="utf-8") as fh:
            fh.write(JAVA)
        proxy = urllib.parse.urlsplit(os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or "")
        props = ["-Dhttps.proxyHost=%s" % proxy.hostname, "-Dhttps.proxyPort=%d" % (proxy.port or 80)] \
            if proxy.hostname else []
        return ["java"] + props + [source, url, t], {}
    raise ValueError("unknown toolchain %s" % name)


def probe_toolchain(name, url, timeout, limit):
    """Run one toolchain's request; outcome: missing (not installed), answered (an HTTP answer came back over
    TLS), untrusted (the tool refused the proxy's certificate) or error; with the trust variables' values."""
    program, variables = TOOLCHAINS[name][0], TOOLCHAINS[name][1]
    env_now = {var: os.environ.get(var) for var in variables}
    path = shutil.which(program)
    if not path:
        return {"outcome": "missing", "detail": "%s is not installed (not in PATH)" % program, "env": env_now}
    workdir = tempfile.mkdtemp(prefix="agent-sandbox-doctor-")
    try:
        argv, extra = toolchain_command(name, url, timeout, workdir)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=limit, cwd=workdir,
                              env=dict(os.environ, **extra), stdin=subprocess.DEVNULL)
        out = (proc.stdout + "\n" + proc.stderr).strip()
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        return {"outcome": "error", "detail": "%s did not finish in %g s" % (program, limit), "env": env_now}
    except OSError as exc:
        return {"outcome": "error", "detail": "%s: %s" % (program, exc), "env": env_now}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return dict(judge_output(name, rc, out), env=env_now)


def judge_output(name, rc, out):
    """What a toolchain's output says: its outcome and the line that shows it."""
    lines = [line.strip() for line in out.splitlines() if line.strip() and not line.startswith("Picked up ")]
    untrusted = next((line for line in lines if UNTRUSTED.search(line)), None)
    if untrusted:
        return {"outcome": "untrusted", "detail": untrusted[:300]}
    if (name == "python requests" and rc == 3 and "no module named requests" in out) or \
            (name == "pip" and "No module named pip" in out) or \
            (name == "java" and "jdk.compiler" in out):
        return {"outcome": "missing", "detail": (lines[-1] if lines else "not installed")[:300]}
    answer = re.compile(TOOLCHAINS[name][3], re.M)
    shown = next((line for line in lines if answer.search(line)), None)
    if shown and (rc == 0 or name not in ("curl", "python ssl", "python requests", "node", "java")):
        return {"outcome": "answered", "detail": shown[:300]}
    return {"outcome": "error", "detail": ("exit %d: %s" % (rc, " | ".join(lines[-3:]) or "no output"))[:300]}


def judge_toolchain(name, res, bundle):
    """(PASS, FAIL or SKIP, what happened) of a toolchain probe's result; bundle is the CA bundle the
    agent's variables should name."""
    outcome, detail = res.get("outcome"), res.get("detail", "")
    if outcome == "missing":
        return "SKIP", detail
    if outcome == "answered":
        return "PASS", "an answer over TLS: " + detail
    now = ", ".join("%s=%s" % (var, value if value is not None else "(unset)")
                    for var, value in (res.get("env") or {}).items())
    fix = TOOLCHAINS[name][2].format(bundle=bundle) if name in TOOLCHAINS else "?"
    if outcome == "untrusted":
        return "FAIL", "does not trust the proxy CA (%s); fix: %s in the agent's environment (now %s)" % (
            detail, fix, now or "nothing set")
    return "FAIL", "%s (not a certificate error; the check of the allowed host shows whether the proxy lets it" \
                   " through)" % detail


def probe(argv):
    """The result of one probe: argv is its kind and its arguments, as strings."""
    kind, args = argv[0], argv[1:]
    if kind == "tcp":
        return probe_tcp(args[0], args[1], float(args[2]))
    if kind == "udp":
        return probe_udp(args[0], args[1], float(args[2]))
    if kind == "ping":
        return probe_ping(args[0], float(args[1]))
    if kind == "http":
        return probe_http(args[0], json.loads(args[1]), float(args[2]))
    if kind == "read":
        return probe_read(args[0])
    if kind == "identity":
        return probe_identity()
    if kind == "cgroup":
        return probe_cgroup()
    if kind == "writable":
        return probe_writable(json.loads(args[0]))
    if kind == "unix":
        return probe_unix(args[0], float(args[1]))
    if kind == "exec":
        return probe_exec(args[0], args[1], args[2], float(args[3]))
    if kind == "toolchain":
        return probe_toolchain(args[0], args[1], float(args[2]), float(args[3]))
    return {"outcome": "error", "detail": "unknown probe %s" % kind}


def serve_probes(requests, answers):
    """`agent-sandbox probe serve`: run every probe asked for on requests (one JSON line each,
    [id, kind, arg, ...]) in a thread of its own, and write each result to answers as it comes,
    one JSON line {"id": id, "result": {...}}. Ends when requests end and the running probes have answered."""
    lock = threading.Lock()
    threads = []

    def answer(ident, argv):
        try:
            res = probe(argv)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # the doctor reports it as this probe's
            res = {"outcome": "error", "detail": "probe %s stopped with %s: %s" % (argv[0], type(exc).__name__, exc)}
        with lock:
            answers.write(json.dumps({"id": ident, "result": res}) + "\n")
            answers.flush()

    for line in iter(requests.readline, ""):
        try:
            ident, kind, *args = json.loads(line)
        except (ValueError, TypeError):
            continue
        thread = threading.Thread(target=answer, args=(ident, [str(kind)] + [str(a) for a in args]), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return 0


def run_probe(argv):
    if argv == ["serve"]:
        return serve_probes(sys.stdin, sys.stdout)
    print(json.dumps(probe(argv)))
    return 0


# --------------------------------------------------------------------------
# An agent's processes: listed from /proc, ended with kill(-1) as the agent.
# --------------------------------------------------------------------------

def processes_of(uid, gid=None):
    """{pid: command line} of the processes kill(-1) from uid reaches: real or saved uid is uid.

    Where /proc hides other users' processes (hidepid), root without CAP_SYS_PTRACE (in a
    container) sees none of the agent's; so root looks as the agent (gid given), who sees its own.
    """
    if gid is not None and os.geteuid() == 0 and uid != 0:
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                os.write(write_end, json.dumps(processes_of(uid)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            data = fh.read()
        os.waitpid(child, 0)
        # The child itself is one of the agent's processes while it looks.
        return {int(pid): cmd for pid, cmd in json.loads(data or b"{}").items() if int(pid) != child}
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/status" % name, encoding="utf-8", errors="replace") as fh:
                uids = next(line.split()[1:] for line in fh if line.startswith("Uid:"))
            with open("/proc/%s/cmdline" % name, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, StopIteration):
            continue  # gone meanwhile
        if str(uid) in (uids[0], uids[2]):
            found[int(name)] = cmd or "[%s]" % name
    return found


def signal_all_as(uid, gid, sig):
    """kill(-1, sig) from a child that is uid and nothing else.

    The kernel then signals exactly the processes whose real or saved uid is uid, in one step,
    however fast they fork: never root's or another user's (a setuid program the agent started
    counts as the agent's).
    """
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, sig)
        except ProcessLookupError:
            pass  # nothing left to signal
        except OSError:
            os._exit(1)
        os._exit(0)
    _pid, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def stop_agent(name, grace):
    """End every process of agent name; returns (lines to print, ok)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return ["%s: no such user" % name], False
    uid, gid = entry.pw_uid, entry.pw_gid
    if uid == 0:
        return ["%s: refusing to stop root's processes" % name], False
    before = processes_of(uid, gid)
    if not before:
        return ["%s: no processes running" % name], True
    # Its systemd --user first, so the manager stops its services in order and starts nothing new.
    subprocess.run(["systemctl", "stop", "--no-block", "user@%d.service" % uid], capture_output=True, check=False)
    signal_all_as(uid, gid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while processes_of(uid, gid) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = processes_of(uid, gid)
    if killed:
        signal_all_as(uid, gid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while processes_of(uid, gid) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = processes_of(uid, gid)
    lines = ["%s: ended %d process%s" % (name, len(before), "" if len(before) == 1 else "es")]
    for pid, cmd in sorted(before.items()):
        how = "still running" if pid in left else "KILL" if pid in killed else "TERM"
        lines.append("  %7d  %-13s %s" % (pid, how, cmd[:200]))
    for pid, cmd in sorted(left.items()):
        if pid not in before:
            lines.append("  %7d  %-13s %s" % (pid, "still running", cmd[:200]))
    if left:
        lines[0] = "%s: %d process%s still running after SIGKILL" % (name, len(left), "" if len(left) == 1 else "es")
    return lines, not left


def stop(agents, grace):
    if not os.path.isdir("/proc/self"):
        print("agent-sandbox stop: Linux only for now; on macOS run `sudo pkill -TERM -u NAME`, then -KILL",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("agent-sandbox stop: run it as root (sudo agent-sandbox stop)", file=sys.stderr)
        return 2
    ok = True
    for name in agents:
        lines, done = stop_agent(name, grace)
        print("\n".join(lines))
        ok = ok and done
    return 0 if ok else 1


# --------------------------------------------------------------------------
# The doctor: runs probes as the agent and judges them.
# --------------------------------------------------------------------------

def listening_tcp_ports():
    """TCP ports in LISTEN state on this host (IPv4 and IPv6), from /proc."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return sorted(ports)


def git_folders(share, max_depth=6, max_folders=20000):
    """The .git folders and bare repositories below the share (links are not followed)."""
    found, seen = [], 0
    base = share.rstrip("/").count("/")
    for root, dirs, files in os.walk(share):
        seen += 1
        if seen > max_folders:
            break
        if ".git" in dirs:
            found.append(os.path.join(root, ".git"))
            dirs.remove(".git")
        if "HEAD" in files and "objects" in dirs and "refs" in dirs:
            found.append(root)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d != "node_modules"] if root.count("/") - base < max_depth else []
    return found


def git_control_paths(gitdir):
    """What in a .git folder decides what git runs and where it connects."""
    paths = [gitdir] + [os.path.join(gitdir, n) for n in ("config", "hooks", "info", "modules", "worktrees")]
    hooks = os.path.join(gitdir, "hooks")
    try:
        paths += [os.path.join(hooks, n) for n in os.listdir(hooks) if not n.endswith(".sample")]
    except OSError:
        pass
    return paths


def grp_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner_name(path):
    try:
        return pwd.getpwuid(os.lstat(path).st_uid).pw_name
    except (KeyError, OSError):
        return "?"


def covers(entry, share):
    """Whether a safe.directory entry lets git trust a repository in the share."""
    entry = entry.rstrip("/")
    if entry in ("*", share) or entry.startswith(share + "/"):
        return True
    return entry.endswith("/*") and (share + "/").startswith(entry[:-1])


def at_once(tasks, deadline):
    """Call every task at once, each in a thread of its own, and return their outcomes in the
    tasks' order: ("done", value), ("raised", exception), or ("late", None) for a task still running
    after deadline seconds. A late task's thread is a daemon: it cannot keep the doctor from exiting."""
    outcomes = [("late", None)] * len(tasks)

    def call(index, task):
        try:
            outcomes[index] = ("done", task())
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported as that task's FAIL
            outcomes[index] = ("raised", exc)

    threads = [threading.Thread(target=call, args=(i, task), daemon=True) for i, task in enumerate(tasks)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return list(outcomes)


class ProbeSession:
    """One process as the agent that runs every probe of a report, `agent-sandbox probe serve` started
    through agent-run like any session of the agent (sudo, PAM, the start guard, its login shell): one
    session start for the whole report instead of one per probe. ask() may be called from many threads."""

    def __init__(self, cmd, agent):
        self.agent = agent
        self.lock = threading.Lock()
        self.waiting = {}  # id: [event, result]
        self.last_id = 0
        self.said = []  # what is not an answer: the start guard's reason (PAM, on stdout), sudo's errors
        self.gone = None  # the result every probe gets once the process has ended
        self.said_on_stderr = []
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                         stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            self.proc = None
            self.gone = {"outcome": "error", "detail": "probe did not run as %s: %s" % (agent, exc)}
            return
        self.errors = threading.Thread(target=self._read_errors, daemon=True)
        self.errors.start()
        threading.Thread(target=self._read_answers, daemon=True).start()

    def _read_errors(self):
        for line in iter(self.proc.stderr.readline, ""):
            if line.strip():
                self.said_on_stderr.append(line.strip())

    def _read_answers(self):
        for line in iter(self.proc.stdout.readline, ""):
            try:
                msg = json.loads(line) if line.lstrip().startswith("{") else None
            except ValueError:
                msg = None
            if isinstance(msg, dict) and "id" in msg and "result" in msg:
                with self.lock:
                    slot = self.waiting.pop(msg["id"], None)
                if slot:
                    slot[1] = msg["result"]
                    slot[0].set()
            elif line.strip():
                self.said.append(line.strip())
        rc = self.proc.wait()
        self.errors.join(5)
        # sudo shows PAM's messages (the start guard's reason) on stdout and its own on stderr.
        said = " ".join(self.said + self.said_on_stderr)
        with self.lock:
            self.gone = {"outcome": "error", "detail": "probe did not run as %s (rc %d): %s" % (self.agent, rc, said[:400])}
            waiting, self.waiting = list(self.waiting.values()), {}
        for slot in waiting:
            slot[1] = self.gone
            slot[0].set()

    def ask(self, argv, deadline):
        slot = [threading.Event(), None]
        with self.lock:
            if self.gone:
                return self.gone
            self.last_id += 1
            ident = self.last_id
            self.waiting[ident] = slot
            try:
                self.proc.stdin.write(json.dumps([ident] + [str(a) for a in argv]) + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the process has ended (or is ending): its reader answers every waiting probe
        if not slot[0].wait(deadline):
            with self.lock:
                self.waiting.pop(ident, None)
            return {"outcome": "error", "detail": "probe as %s did not answer in %g s" % (self.agent, deadline)}
        return slot[1]

    def close(self, grace=5):
        """No more probes: the process ends once the running ones have answered, or is ended after grace s."""
        if self.proc is None:
            return
        with self.lock:
            self.gone = self.gone or {"outcome": "error", "detail": "the report was finished before this probe ran"}
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Doctor:
    """The checks of one agent. Each check is a method that probes as the agent and records what it
    found with record() (and notes in self.notes); run() calls them at once, each in a thread with
    results and notes of its own, then puts them together in the order the checks are listed."""

    def __init__(self, cfg, agent, host_checks=True):
        self.cfg = cfg
        self.agent = agent
        self.host_checks = host_checks
        self._results = []
        self._notes = []
        self._step = threading.local()
        self._session, self._session_lock, self._closed = None, threading.Lock(), False
        self.timeout = float(cfg.get("timeout", 3))
        # A probe's own limit (an HTTP probe waits up to 3 timeouts), then a check's: its probes run
        # at once, so a check that is still running after that is stuck, and is reported as such.
        self.probe_deadline = self.timeout * 3 + 30
        self.check_deadline = self.probe_deadline + 15
        self.self_path = os.path.realpath(__file__)
        # --quick: only what holds at once after a run (on WSL, not the drives: they need `wsl --shutdown`).
        self.quick = False

    @property
    def results(self):
        """The results of the check running in this thread (inside run()), else all of them."""
        return getattr(self._step, "results", self._results)

    @property
    def notes(self):
        return getattr(self._step, "notes", self._notes)

    def as_agent(self, *probe):
        """Run one probe as the agent (in this doctor's probe session, started at the first probe)."""
        with self._session_lock:
            if self._closed:
                return {"outcome": "error", "detail": "the report was finished before this probe ran"}
            if self._session is None:
                self._session = ProbeSession([self.cfg.get("agent_run", "agent-run"), "--user", self.agent,
                                              sys.executable, self.self_path, "probe", "serve"], self.agent)
        return self._session.ask(probe, self.probe_deadline)

    def close(self):
        """End the probe session, if a probe started one. A check still running (stuck) starts no new one."""
        with self._session_lock:
            session, self._closed = self._session, True
        if session:
            session.close()

    def as_agent_all(self, *probes):
        """Run the probes (each a tuple of as_agent's arguments) at once; their results in the same order."""
        outcomes = at_once([functools.partial(self.as_agent, *probe) for probe in probes], self.probe_deadline + 5)
        return [value if how == "done" else {"outcome": "error", "detail": "probe %s %s" % (
            probe[0], "failed: %s" % value if how == "raised" else "did not finish")}
            for probe, (how, value) in zip(probes, outcomes)]

    def record(self, ok, name, tried, happened, status=None):
        """One result: PASS or FAIL as ok says, or the status given (SKIP: nothing there to check)."""
        self.results.append({"agent": self.agent, "check": name, "status": status or ("PASS" if ok else "FAIL"),
                             "tried": tried, "happened": happened})

    # Network ------------------------------------------------------------
    def direct_egress(self):
        # The firewall drops what the agent sends: a TCP connect waits out the timeout (the drop in
        # the output hook is not reported to TCP), so every probe starts at once.
        targets, resolvers = self.cfg.get("direct_targets", []), self.cfg.get("dns_servers", [])
        probes = []
        for target in targets:
            probes += [("tcp", target["host"], target.get("port", 443), self.timeout), self.udp_probe(target),
                       ("ping", target["host"], self.timeout)]
        for resolver in resolvers:
            probes += [("udp", resolver, 53, self.timeout), ("tcp", resolver, 53, self.timeout)]
        answers = iter(self.as_agent_all(*probes))
        for target in targets:
            host, port = target["host"], target.get("port", 443)
            fam = "IPv6" if ":" in host else "IPv4"
            res = next(answers)
            self.record(res["outcome"] in ("denied", "timeout"), "direct %s TCP blocked" % fam,
                        "connect to %s port %s" % (host, port), res["detail"])
            self.judge_udp(target, next(answers))
            res = next(answers)
            self.record(res["outcome"] not in ("answered", "error"), "direct %s ICMP blocked" % fam,
                        "ping %s" % host, res["detail"])
        for resolver in resolvers:
            res = next(answers)
            self.record(res["outcome"] == "denied", "DNS query blocked",
                        "DNS query to %s port 53" % resolver, res["detail"])
            res = next(answers)
            self.record(res["outcome"] in ("denied", "timeout"), "DNS over TCP blocked",
                        "TCP connect to %s port 53" % resolver, res["detail"])

    def udp_probe(self, target):
        return ("udp", target["host"], target.get("udp_port", 53), self.timeout)

    def judge_udp(self, target, res):
        host, port = target["host"], target.get("udp_port", 53)
        self.record(res["outcome"] == "denied", "direct %s UDP blocked" % ("IPv6" if ":" in host else "IPv4"),
                    "UDP datagram to %s port %s" % (host, port), res["detail"])

    def direct_udp(self):
        # The firewall refuses a datagram at once (EPERM): a confinement check with no wait.
        targets = self.cfg.get("direct_targets", [])
        for target, res in zip(targets, self.as_agent_all(*[self.udp_probe(t) for t in targets])):
            self.judge_udp(target, res)

    def loopback(self):
        proxy = int(self.cfg["proxy_port"])
        ports = self.cfg.get("loopback_ports", "auto")
        if ports == "auto":
            ports = listening_tcp_ports()
        tried = [(host, port) for port in ports if int(port) != proxy for host in ("127.0.0.1", "::1")]
        answers = self.as_agent_all(*[("tcp", host, port, self.timeout) for host, port in tried]
                                    + [self.proxy_probe()])
        for (host, port), res in zip(tried, answers):
            self.record(res["outcome"] in ("denied", "timeout"), "loopback service blocked",
                        "connect to %s port %s" % (host, port), res["detail"])
        self.judge_proxy(answers[-1])

    def proxy_probe(self):
        return ("tcp", self.cfg.get("proxy_host", "127.0.0.1"), int(self.cfg["proxy_port"]), self.timeout)

    def judge_proxy(self, res):
        self.record(res["outcome"] == "connected", "proxy reachable",
                    "connect to the proxy on port %d" % int(self.cfg["proxy_port"]), res["detail"])

    def proxy_reachable(self):
        self.judge_proxy(self.as_agent(*self.proxy_probe()))

    def proxy_policy(self):
        allowed, blocked, leak = self.cfg.get("allowed_url"), self.cfg.get("blocked_url"), self.cfg.get("leak_probe")
        leak = leak if leak and leak.get("url") else None
        probes = ([("http", allowed, "{}", self.timeout * 3)] if allowed else []) \
            + ([("http", blocked, "{}", self.timeout * 3)] if blocked else []) \
            + ([("http", leak["url"], json.dumps({leak["header"]: leak["placeholder"]}), self.timeout * 3)]
               if leak else [])
        answers = iter(self.as_agent_all(*probes))
        if allowed:
            res = next(answers)
            self.record(res["outcome"] == "status" and 200 <= res["status"] < 400 and not res["block"],
                        "allowed host reachable through the proxy", "GET " + allowed, res["detail"])
        if blocked:
            res = next(answers)
            self.record(res.get("status") == 403 and res.get("block", "").startswith("policy"),
                        "blocked host gets the policy 403", "GET " + blocked, res["detail"])
        if leak:
            res = next(answers)
            self.record(res.get("status") == 403, "placeholder sent to a wrong host refused",
                        "GET %s with the placeholder in %s" % (leak["url"], leak["header"]), res["detail"])

    def toolchains(self):
        """Each client the agent may run makes one HTTPS request to the allowed URL, as the agent: a
        client that is not installed is a SKIP, one that refuses the proxy's certificate a FAIL naming the
        variable that fixes it. They run at once; each within a limit below the probe's own."""
        url = self.cfg.get("allowed_url") or ""
        if not url.startswith("https://"):
            return
        limit = self.probe_deadline - 5
        names = list(TOOLCHAINS)
        answers = self.as_agent_all(*[("toolchain", name, url, self.timeout * 3, limit) for name in names])
        for name, res in zip(names, answers):
            status, happened = judge_toolchain(name, res, self.cfg.get("ca_bundle") or CA_BUNDLE)
            self.record(status == "PASS", "%s trusts the proxy CA" % name,
                        "GET %s with %s, as the agent" % (url, name), happened, status=status)

    # Host and files -----------------------------------------------------
    def files(self):
        paths = list(self.cfg.get("unreadable_paths", []))
        unit = self.cfg.get("proxy_unit")
        if unit:
            pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                                 capture_output=True, text=True, check=False).stdout.strip()
            if pid and pid != "0":
                paths.append("/proc/%s/environ" % pid)
        for path, res in zip(paths, self.as_agent_all(*[("read", path) for path in paths])):
            ok, detail = res["outcome"] == "denied", res["detail"]
            if path.startswith("/proc/") and res["outcome"] == "missing":
                # /proc with hidepid (sandbox_user_hide_processes): the process is not even visible.
                ok, detail = True, "not visible to the agent (/proc hides other users' processes)"
            self.record(ok, "protected file unreadable", "read " + path, detail)

    def identity(self):
        res = self.as_agent("identity")
        if res["outcome"] != "identity":
            self.record(False, "agent identity", "run id as the agent", res["detail"])
            return
        bad = sorted(set(res["groups"]) & PRIVILEGED_GROUPS)
        self.record(not bad, "no privileged groups", "list the agent's groups",
                    "groups: " + ", ".join(res["groups"]))
        self.record(res["sudo_rc"] != 0, "no sudo", "sudo -n true as the agent",
                    "exit %d: %s" % (res["sudo_rc"], res["sudo_err"] or "-"))

    def processes(self):
        """A note, not a check: whether the agent has processes running now (before the probes start)."""
        try:
            entry = pwd.getpwnam(self.agent)
            running = processes_of(entry.pw_uid, entry.pw_gid)
        except (KeyError, OSError):
            return
        if running:
            shown = ", ".join("%d %s" % (pid, cmd[:60]) for pid, cmd in sorted(running.items())[:5])
            self.notes.append("[%s] %d process%s running (%s%s); `agent-sandbox stop --agent %s` ends them" % (
                self.agent, len(running), "" if len(running) == 1 else "es", shown,
                ", ..." if len(running) > 5 else "", self.agent))
        else:
            self.notes.append("[%s] no processes running" % self.agent)

    # Fail closed (Linux) -----------------------------------------------
    def start_guard(self):
        guard = self.cfg.get("start_guard")
        if not guard:
            return
        for path in guard["pam_files"]:
            try:
                with open(path, encoding="utf-8") as fh:
                    lines = [ln.split("#", 1)[0] for ln in fh]
                wired = any("pam_exec.so" in ln and guard["script"] in ln for ln in lines)
                happened = "runs %s" % guard["script"] if wired else "no pam_exec line for %s" % guard["script"]
            except OSError as exc:
                wired, happened = False, "cannot read it: %s" % (exc.strerror or exc)
            self.record(wired, "start guard in PAM", "read " + path, happened)
        # The guard moves every session of the agent into its slice: a probe started through
        # agent-run (sudo) that runs there shows that the guard ran, and let it start.
        res = self.as_agent("cgroup")
        if res["outcome"] != "cgroup":
            self.record(False, "agent starts in its slice", "start a probe through agent-run", res["detail"])
            return
        slice_name = "user-%d.slice" % res["uid"]
        inside = "/%s/" % slice_name in res["path"]
        self.record(inside, "agent starts in its slice", "start a probe through agent-run", res["detail"])
        limits = self.cfg.get("limits")
        if limits:
            self.limits(slice_name, limits)

    def limits(self, slice_name, expected):
        props = ["MemoryMax", "TasksMax", "CPUWeight", "IOWeight"]
        out = subprocess.run(["systemctl", "show", slice_name] + ["--property=" + p for p in props],
                             capture_output=True, text=True, check=False).stdout
        shown = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        wrong = []
        for prop in props:
            want, got = str(expected.get(prop, "")), shown.get(prop, "")
            if prop in ("CPUWeight", "IOWeight"):
                ok = got == want
            else:  # bytes and percentages come back resolved; only "unlimited" is known exactly
                ok = (got == "infinity") == (want == "infinity") and got not in ("", "[not set]")
            if not ok:
                wrong.append("%s=%s (want %s)" % (prop, got or "-", want))
        self.record(not wrong, "agent's resource limits set", "systemctl show " + slice_name,
                    "; ".join(wrong) or " ".join("%s=%s" % (p, shown.get(p, "-")) for p in props))

    def atomic_reload(self):
        unit = self.cfg.get("atomic_reload")
        if not unit:
            return
        props = ["ExecStart", "ExecReload", "ExecStop"]
        out = subprocess.run(["systemctl", "show", unit] + ["--property=" + p for p in props],
                             capture_output=True, text=True, check=False).stdout
        shown = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        # Each command must load the agents' table in the same transaction as the host's rules.
        bad = [p for p in props if shown.get(p) and "/agent-sandbox/nftables-" not in shown[p]]
        self.record(not bad, "firewall reloads keep the agents' table", "systemctl show " + unit,
                    "%s without the agents' table" % ", ".join(bad) if bad else "start, reload and stop load it")

    # Shared workspace: what the agent writes must not act as the admin ---------
    def kernel_links(self):
        ws = self.cfg.get("workspace") or {}
        wanted = ws.get("sysctls") or {}
        if not wanted:
            return
        low = []
        for name, want in sorted(wanted.items()):
            try:
                with open("/proc/sys/" + name.replace(".", "/"), encoding="utf-8") as fh:
                    got = int(fh.read().strip())
            except (OSError, ValueError):
                got = None
            if got is None or got < int(want):
                low.append("%s=%s (want %s)" % (name, "?" if got is None else got, want))
        happened = "; ".join(low) or ", ".join("%s=%s" % kv for kv in sorted(wanted.items()))
        if low and not ws.get("sysctls_enforced", True):
            # The kernel's settings are not this host's to change (a container): say so, do not fail.
            self.notes.append("the running kernel does not protect links in /tmp (%s); this host does not own its"
                              " kernel settings (shared_workspace_sysctl_apply: false)" % happened)
            return
        self.record(not low, "kernel protects links in /tmp", "read /proc/sys/fs/protected_*", happened)

    def admin_git(self):
        share = (self.cfg.get("workspace") or {}).get("path")
        if not share or not os.path.isdir(share):
            return
        admin = owner_name(share)
        try:
            home = pwd.getpwnam(admin).pw_dir
        except KeyError:
            return

        # Read as the admin (the doctor runs as root or as the admin), from /, outside any repository.
        if os.geteuid() == pwd.getpwnam(admin).pw_uid:
            prefix = ["git", "config"]
        elif os.geteuid() == 0:
            prefix = ["runuser", "-u", admin, "--", "env", "HOME=" + home, "git", "config"]
        else:
            self.notes.append("the admin's git settings were not checked: run the doctor as %s or root" % admin)
            return

        def git_config(*args):
            proc = subprocess.run(prefix + list(args), capture_output=True, text=True, check=False, cwd="/")
            if proc.returncode not in (0, 1):  # 1: the key is not set
                return None, (proc.stderr.strip() or "git config exited %d" % proc.returncode)[:200]
            return [line for line in proc.stdout.splitlines() if line], ""

        entries, error = git_config("--get-all", "safe.directory")
        trusted = [e for e in entries or [] if covers(e, share)]
        self.record(entries is not None and not trusted, "admin's git refuses the agents' repositories",
                    "git config --get-all safe.directory as " + admin,
                    error or ("trusts %s: remove it (git config --global --unset-all safe.directory VALUE)"
                              % ", ".join(trusted) if trusted else "no entry covers " + share))
        values, error = git_config("--get", "safe.bareRepository")
        bare = "".join(values or []).strip()
        self.record(bare == "explicit", "admin's git ignores planted bare repositories",
                    "git config --get safe.bareRepository as " + admin, error or bare or "not set (git uses `all`)")

    def nofollow_view(self):
        view = (self.cfg.get("workspace") or {}).get("nofollow_view")
        if not view:
            return
        options = None
        try:
            with open("/proc/self/mountinfo", encoding="utf-8") as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) > 5 and fields[4] == view:
                        options = fields[5]  # the last mount on that point wins
        except OSError:
            pass
        ok = options is not None and "nosymfollow" in options.split(",")
        self.record(ok, "admin's view of the share follows no link", "find %s in /proc/self/mountinfo" % view,
                    "mounted with %s" % options if options else "not mounted (systemctl status %s)"
                    % ("%s.mount" % view.strip("/").replace("-", "\\x2d").replace("/", "-")))

    def go_betweens(self):
        """Services that act on any local user's request with their own network access: not confined by
        the agents' firewall rules, so they are listed for the admin to judge (notes, not checks)."""
        if os.path.exists("/usr/sbin/sendmail"):
            self.notes.append("a mail transfer agent is installed (/usr/sbin/sendmail): mail the agent submits is sent"
                              " by the MTA's own user, whom the firewall does not confine; keep it local-only or remove it")
        if os.path.exists("/run/avahi-daemon/socket"):
            self.notes.append("avahi-daemon answers every user's .local lookups with multicast DNS on the local network"
                              " (/run/avahi-daemon/socket): names the agent looks up reach the LAN; stop it if unused")

    def repositories(self):
        share = (self.cfg.get("workspace") or {}).get("path")
        if not share or not os.path.isdir(share):
            return
        # Only repositories someone else owns matter: in its own, the agent runs its own code.
        others = [g for g in git_folders(share) if owner_name(g) != self.agent]
        paths = [p for g in others for p in git_control_paths(g)]
        res = self.as_agent("writable", json.dumps(paths)) if paths else {"outcome": "writable", "paths": []}
        if res["outcome"] != "writable":
            self.record(False, "only its owner writes each repository's .git", "probe the share's .git folders",
                        res["detail"])
            return
        open_repos = sorted({g for g in others for p in res["paths"] if p == g or p.startswith(g + "/")})
        self.record(not open_repos, "only its owner writes each repository's .git",
                    "write to the .git of %d repositories of other users in %s" % (len(others), share),
                    "writable: %s; fix: sudo agent-sandbox adopt PATH (docs/roles/shared_workspace.md)"
                    % ", ".join(open_repos[:10]) if open_repos else "none writable")

    # Nix --------------------------------------------------------------
    def nix_builds(self):
        """Where Nix's build users exist, the firewall confines their group as it confines the agent.

        Builds run as the nixbld users for whoever submits them, the agent included: an unconfined
        build is the agent's way past its own rules (site.yml confines them with agent_sandbox_nix_enabled).
        """
        if not sys.platform.startswith("linux"):
            return  # pf does not confine groups yet (docs/roles/nix_tools.md)
        group = self.cfg.get("nix_build_group", "nixbld")
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return
        tried = "nft list chain inet agent_sandbox output"
        listed, rules, said = nft_list("chain", "inet", "agent_sandbox", "output")
        if not listed:
            self.record(False, "Nix builds confined", tried, "cannot read the rules (run as root): " + said[:200])
            return
        confined = ("meta skgid %d jump " % gid) in rules
        self.record(confined, "Nix builds confined", tried,
                    "group %s (gid %d) goes to its own proxy listener or nowhere" % (group, gid) if confined
                    else "group %s (gid %d) is not in the rules: a build the agent submits reaches the network"
                         " directly (set agent_sandbox_nix_enabled: true and run site.yml)" % (group, gid))

    def runtime_answers(self):
        """Learning mode opens every name to the agent: while it is on, the sandbox is not what the inventory says."""
        path = self.cfg.get("control_file") or CONTROL_FILE
        state = control_state(path, time.time())
        port = int(self.cfg["proxy_port"])
        if state["problem"]:
            self.record(False, "control file valid", "read %s" % path, state["problem"])
            return
        until = state["learn"].get(port)
        self.record(until is None, "learning mode off", "read %s" % path,
                    "learning mode on until %s UTC: every name on ports 80 and 443 is open to this agent"
                    " (sudo agent-sandbox learn ... ends it with Ctrl-C; the proxy ends it then by itself)"
                    % time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(until)) if until is not None
                    else "off (no learning run for this agent)")
        if port in state["ask"]:
            self.notes.append("ask mode is on for %s: a request to a host with no rule waits up to %d s for"
                              " `sudo agent-sandbox allow` (agent-sandbox pending lists them)"
                              % (self.agent, state["ask"][port]))
        if state["always"].get(port):
            self.notes.append("%s has run-time approvals kept until revoked: %s (add them to the inventory"
                              " or `sudo agent-sandbox revoke HOST --agent %s`)"
                              % (self.agent, ", ".join(state["always"][port]), self.agent))

    # WSL2 (docs/wsl.md) -----------------------------------------------
    def as_admin(self, *probe_argv):
        """A control: the probe as the admin (through runuser when the doctor runs as root)."""
        admin = (self.cfg.get("wsl") or {}).get("admin", "")
        argv = [str(a) for a in probe_argv]
        try:
            uid = pwd.getpwnam(admin).pw_uid
        except KeyError:
            return {"outcome": "error", "detail": "no admin %r to run the control as" % admin}
        if os.geteuid() == uid:
            return probe(argv)
        if os.geteuid() != 0:
            return {"outcome": "error", "detail": "the control runs as %s: run the doctor as root or %s" % (admin, admin)}
        try:
            proc = subprocess.run(["runuser", "-u", admin, "--", sys.executable, self.self_path, "probe"] + argv,
                                  capture_output=True, text=True, check=False, timeout=self.probe_deadline, cwd="/")
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, IndexError, ValueError) as exc:
            return {"outcome": "error", "detail": "control as %s: %s" % (admin, exc)}

    def wsl(self):
        """As the agent, beside the admin: no interop socket, no Windows drive, no Windows program."""
        wsl = self.cfg.get("wsl")
        if not wsl:
            return
        admin_only = wsl.get("interop", "admin-only") == "admin-only"
        sockets = interop_sockets()
        if sockets is None:
            self.notes.append("WSL's interop sockets were not checked: run the doctor as root")
            sockets = []
        newest = sockets[0] if sockets else ""
        root = wsl.get("drives_root", "/mnt/")
        excluded = set(wsl.get("drives_excluded") or [])
        try:
            drives = sorted(d for d in os.listdir(root) if len(d) == 1 and d.isalpha() and d not in excluded
                            and os.path.isdir(os.path.join(root, d)))
        except OSError:
            drives = []
        targets = [] if self.quick else [
            os.path.join(root, d, "Users") if os.path.isdir(os.path.join(root, d, "Users")) else os.path.join(root, d)
            for d in drives]
        program, workdir, copy = wsl.get("windows_program", ""), None, ""
        if program and os.path.isfile(program):
            # Root copies it where both can run it: the drives themselves are closed to the agent, and
            # /tmp is often mounted noexec.
            workdir = tempfile.mkdtemp(prefix="agent-sandbox-wsl-", dir="/var/tmp")
            os.chmod(workdir, 0o755)
            copy = os.path.join(workdir, os.path.basename(program))
            shutil.copyfile(program, copy)
            os.chmod(copy, 0o755)
        try:
            # The controls first: a socket the admin reaches (a closed session may leave a dead one
            # behind), which the agent's Windows program is then pointed at too.
            control = {}
            for sock in sockets[:5] if admin_only else []:
                control = self.as_admin("unix", sock, self.timeout)
                if control["outcome"] == "connected":
                    newest = sock
                    break
            run = ("exec", copy, wsl.get("interpreter", "/init"), newest, self.timeout * 3) if workdir else None
            agent = self.as_agent_all(*([("unix", s, self.timeout) for s in sockets[:5]]
                                        + [("read", t) for t in targets] + ([run] if run else [])))
            refused = [res for res in agent[:len(sockets[:5])] if res["outcome"] != "denied"]
            if sockets:
                self.record(not refused and (not admin_only or control.get("outcome") == "connected"),
                            "WSL interop socket closed to the agent",
                            "connect to %d interop socket(s) in %s as the agent%s" % (
                                len(sockets[:5]), WSL_INTEROP_DIR, ", and as the admin" if admin_only else ""),
                            "agent: %s%s" % ("; ".join(r["detail"] for r in refused) if refused
                                             else "denied (%s)" % agent[0]["detail"],
                                             "; admin: " + control["detail"] if admin_only else ""))
            else:
                self.notes.append("no WSL interop socket in %s (interop off, or no session open)" % WSL_INTEROP_DIR)
            agent = agent[len(sockets[:5]):]
            for target, res in zip(targets, agent):
                control = self.as_admin("read", target)
                self.record(res["outcome"] == "denied" and control["outcome"] == "readable",
                            "Windows drive closed to the agent", "list %s as the agent and as the admin" % target,
                            "agent: %s; admin: %s" % (res["detail"], control["detail"]))
            if run:
                res = agent[len(targets)]
                control = self.as_admin(*run) if admin_only else None
                self.record(res["outcome"] in ("failed", "denied") and (control is None or control["outcome"] == "ran"),
                            "Windows programs do not start for the agent",
                            "run %s (a copy of %s) as the agent%s" % (copy, program, ", and as the admin" if control else ""),
                            "agent: %s%s" % (res["detail"], "; admin: " + control["detail"] if control else ""))
            else:
                self.notes.append("no Windows program at %s: the doctor did not start one (selftest_wsl_settings."
                                  "windows_program)" % (program or "-"))
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    def wsl_host(self):
        """WSL's side of it, read as root: the interop folder, the live drvfs options, the drives left out."""
        wsl = self.cfg.get("wsl")
        if not wsl:
            return
        try:
            with open(wsl.get("version_file", "/proc/version"), encoding="utf-8") as fh:
                version = fh.readline().strip()
        except OSError as exc:
            version = "version unknown (%s)" % exc
        self.notes.append("WSL detected: %s" % version[:120])
        try:
            st = os.stat(WSL_INTEROP_DIR)
            closed = st.st_uid == 0 and not st.st_mode & 0o007
            happened = "owner %s, group %s, mode %04o" % (st.st_uid, grp_name(st.st_gid), st.st_mode & 0o7777)
        except FileNotFoundError:
            closed, happened = True, "no such folder (interop off)"
        except OSError as exc:
            closed, happened = False, str(exc)
        self.record(closed, "WSL interop folder closed to others", "stat " + WSL_INTEROP_DIR,
                    happened if closed else happened + ": sudo systemd-tmpfiles --create (or rerun site.yml)")
        if self.quick:
            return
        root = wsl.get("drives_root", "/mnt/")
        try:
            with open("/proc/self/mountinfo", encoding="utf-8") as fh:
                mounts = drvfs_mounts(fh.read(), root)
        except OSError:
            mounts = {}
        try:
            uid = pwd.getpwnam(wsl.get("admin", "")).pw_uid
        except KeyError:
            uid = -1
        for point, options in sorted(mounts.items()):
            wrong = drvfs_openings(options, uid)
            self.record(not wrong, "Windows drive mounted for the admin alone", "read the options of " + point,
                        "; ".join(wrong) + ": run `wsl --shutdown` in Windows so that /etc/wsl.conf applies"
                        if wrong else "uid=%d, others masked" % uid)
        if not mounts:
            self.notes.append("no drvfs mount below %s: the drives' options were not read" % root)
        for drive in sorted(wsl.get("drives_excluded") or []):
            point = os.path.join(root, drive)
            mounted = point in mounts or os.path.ismount(point)
            self.record(not mounted, "left-out Windows drive not mounted", "look for a mount on " + point,
                        "mounted: run `wsl --shutdown` in Windows" if mounted else "not mounted")

    def units(self):
        for unit in self.cfg.get("units", []):
            enabled, active = systemctl("is-enabled", unit), systemctl("is-active", unit)
            self.record(enabled == "enabled" and active == "active", "unit enabled and active",
                        "systemctl is-enabled/is-active " + unit,
                        "%s, %s" % (enabled or "no answer", active or "no answer"))

    def pf_confines(self):
        """macOS: pf enabled and host_firewall's anchor holding rules for this agent's uid. Anyone with
        root can switch pf off (`pfctl -d`); the LaunchDaemon puts it back at its next run."""
        if sys.platform != "darwin":
            return
        if os.geteuid() != 0:
            self.notes.append("[%s] whether pf confines the agent needs root: sudo agent-sandbox doctor" % self.agent)
            return
        try:
            uid = pwd.getpwnam(self.agent).pw_uid
        except KeyError:
            self.record(False, "pf confines the agent", "look up " + self.agent, "no such user")
            return
        ok, happened = pf_confinement(uid)
        self.record(bool(ok), "pf confines the agent", "pfctl -s info; pfctl -a %s -s rules" % PF_ANCHOR, happened)

    def checks(self, quick=False):
        """The checks, in the order the report lists them."""
        # Checks of the host rather than of one agent run once, with the first agent.
        host = (self.kernel_links, self.admin_git, self.nofollow_view, self.go_betweens, self.wsl_host) \
            if self.host_checks else ()
        if quick:
            # What a working install must show at once, with no probe that waits for a timeout
            # to pass: the units, the start guard, limits and reload path, direct UDP refused, the proxy listener, and through it the allowed
            # path, the blocked host's 403 and the leak probe's refusal; the Nix build users' rules.
            return (self.units, self.pf_confines, self.start_guard, self.atomic_reload, self.direct_udp,
                    self.proxy_reachable, self.proxy_policy, self.nix_builds, self.repositories, self.wsl) + host
        return (self.identity, self.pf_confines, self.direct_egress, self.loopback, self.proxy_policy, self.toolchains,
                self.files, self.units, self.start_guard, self.atomic_reload, self.nix_builds, self.repositories,
                self.wsl, self.runtime_answers) + host

    def run(self, quick=False, only=None):
        self.quick = quick
        steps = [step for step in self.checks(quick) if not only or step.__name__ in only]
        # What the agent runs now (a note), before any probe of this report runs as the agent too.
        self.processes()
        try:
            outcomes = at_once([functools.partial(self.isolated, step) for step in steps], self.check_deadline)
        finally:
            self.close()
        for step, (how, value) in zip(steps, outcomes):
            results, notes = value if how == "done" else ([], [])
            if how == "late":
                results = [{"agent": self.agent, "check": step.__name__, "status": "FAIL",
                            "tried": "run the %s checks" % step.__name__,
                            "happened": "did not finish in %g s: a probe or command is stuck" % self.check_deadline}]
            self._results.extend(results)
            self._notes.extend(notes)
        return self._results

    def isolated(self, step):
        """Call step with results and notes of its own (this thread's); a check that raises is a FAIL."""
        self._step.results, self._step.notes = [], []
        try:
            step()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # the report goes on without it
            self.record(False, step.__name__, "run the %s checks" % step.__name__,
                        "stopped with %s: %s" % (type(exc).__name__, exc))
        return self._step.results, self._step.notes


# --------------------------------------------------------------------------
# WSL2: the interop sockets and the drvfs mounts, read as root (docs/wsl.md).
# --------------------------------------------------------------------------

WSL_INTEROP_DIR = "/run/WSL"  # WSL's init: one socket per session, <pid>_interop, mode 0777
DRVFS_TYPES = ("9p", "drvfs", "virtiofs")


def interop_sockets(folder=WSL_INTEROP_DIR):
    """WSL's interop sockets in folder, newest first; None when the folder cannot be read (not root)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError:
        return None
    paths = [os.path.join(folder, n) for n in names if n.endswith("_interop")]
    return sorted(paths, key=lambda p: os.lstat(p).st_mtime, reverse=True)


def drvfs_mounts(mountinfo, root):
    """{mount point: [option, ...]} of the Windows drives mounted below root, from the text of
    /proc/self/mountinfo. drvfs over 9p carries its own options inside aname, separated by `;`
    (`aname=drvfs;path=C:\\;uid=1000;gid=1000;umask=077;symlinkroot=/mnt/`); the last mount on a point wins."""
    found = {}
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        head, tail = head.split(), tail.split()
        if not sep or len(head) < 6 or len(tail) < 3:
            continue
        point = head[4].replace("\\040", " ")
        fstype, source = tail[0], tail[1]
        if fstype not in DRVFS_TYPES or not point.startswith(root):
            continue
        options = [o for opt in (head[5] + "," + tail[2]).split(",") for o in opt.split(";") if o]
        if fstype == "9p" and "aname=drvfs" not in options:
            continue
        if fstype == "virtiofs" and not source.lower().startswith("drvfs"):
            continue
        found[point] = options
    return found


def drvfs_openings(options, uid):
    """What in a drvfs mount's options lets a user other than uid in; empty when nothing does.
    Files get umask|fmask, folders umask|dmask; group and others must both be masked."""
    values = dict(o.split("=", 1) for o in options if "=" in o)
    wrong = []
    if values.get("uid") != str(uid):
        wrong.append("uid=%s (want %d)" % (values.get("uid", "-"), uid))

    def mask(name):
        try:
            return int(values.get(name, "0"), 8)
        except ValueError:
            return 0
    for kind, extra in (("files", "fmask"), ("folders", "dmask")):
        if (mask("umask") | mask(extra)) & 0o077 != 0o077:
            wrong.append("%s open to others (umask=%s %s=%s; want umask=077)" % (
                kind, values.get("umask", "-"), extra, values.get(extra, "-")))
    return wrong


def nft_list(*what):
    """(listed, rules, what went wrong) of `nft list WHAT...`; nft needs root to read the rules."""
    try:
        proc = subprocess.run(["nft", "list"] + list(what), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "", str(exc)
    return proc.returncode == 0, proc.stdout, proc.stderr.strip() or "rc %d" % proc.returncode


def systemctl(verb, unit):
    """What `systemctl is-active UNIT` (or is-enabled) prints, empty where systemctl does not run."""
    try:
        return subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, check=False,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def last_log_line(unit):
    """The unit's last journal line (Linux), or an empty string where there is no journal."""
    try:
        proc = subprocess.run(["journalctl", "-u", unit, "-n", "1", "--no-pager", "-o", "cat"],
                              capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


# --------------------------------------------------------------------------
# agent-sandbox status: one screen for the admin, no root needed (what needs it says so).
# --------------------------------------------------------------------------

POLICY = "/etc/agent-sandbox/proxy/policy.json"
PF_ANCHOR = "com.apple/000.agent_sandbox"  # host_firewall's anchor on macOS
LAUNCHD_PROXY = "system/org.agent-sandbox.proxy"  # mitm_proxy's LaunchDaemon on macOS
LAUNCHD_PF = "org.agent-sandbox.pf"  # host_firewall's LaunchDaemon on macOS: loads the anchor, puts pf back
NEEDS_ROOT = "unknown (needs root: sudo agent-sandbox status)"
CONTROL_FILE = "/etc/agent-sandbox/control.json"


def control_state(path, now):
    """What the admin's control file (agent-sandbox ask/allow/learn) has in force now, by listener port:
    {"ask": {port: timeout}, "learn": {port: until}, "always": {port: [host]}, "approved": n, "problem": text}."""
    state = {"ask": {}, "learn": {}, "always": {}, "approved": 0, "problem": None}
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        for port, value in (doc.get("ask") or {}).items():
            state["ask"][int(port)] = int(value["timeout"])
        for port, value in (doc.get("learn") or {}).items():
            if float(value["until"]) > now:
                state["learn"][int(port)] = float(value["until"])
        for entry in doc.get("approved") or []:
            if entry.get("until") is None:
                state["always"].setdefault(int(entry["listener"]), []).append(str(entry["host"]))
            if entry.get("until") is None or float(entry["until"]) > now:
                state["approved"] += 1
    except FileNotFoundError:
        pass
    except PermissionError as exc:
        state["problem"] = "cannot read it (%s)" % exc.strerror
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        state["problem"] = "not a valid control file (%s: %s): the proxy ignores it" % (type(exc).__name__, exc)
    return state


def sibling(name):
    """A module the selftest role installs next to this file (agent_sandbox_audit.py), loaded from there:
    only `log` and `status` need it, so the doctor and its probes run without it."""
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def owner_and_mode(path):
    """'root:agent-proxy 0640' for a file whose content the caller may not read."""
    try:
        st = os.stat(path)
    except OSError:
        return "not readable by this user"
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return "%s:%s %04o" % (owner, group, st.st_mode & 0o7777)


def rule_counts(path):
    """(rules of a listener port, "") from the proxy's policy, or (None, why it cannot tell)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        default = len(doc.get("rules") or [])
        own = {int(port): len(profile.get("rules") or []) for port, profile in (doc.get("listeners") or {}).items()}
    except FileNotFoundError:
        return None, "no policy file (%s)" % path
    except PermissionError:
        # The proxy's user is agent-proxy on Linux and _agent-proxy on macOS: say what the file is.
        return None, "not readable (%s is %s: sudo agent-sandbox status)" % (path, owner_and_mode(path))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        return None, "not readable (%s: %s)" % (path, getattr(exc, "strerror", None) or exc)
    # A listener's own profile replaces the shared rules there (docs/proxy-policy.md).
    return (lambda port: own.get(port, default)), ""


def pfctl(*args):
    """(exit status, stdout, stderr) of pfctl (macOS; root only)."""
    path = shutil.which("pfctl", path=os.environ.get("PATH", "") + os.pathsep + "/sbin") or "/sbin/pfctl"
    try:
        proc = subprocess.run([path] + list(args), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr.strip()


def pf_confinement(uid=None):
    """(True, False or None for unknown, what was seen): pf enabled, and the anchor holding rules (for uid)."""
    rc, out, err = pfctl("-s", "info")
    if rc != 0:
        return None, "unknown (pfctl -s info: %s)" % (err[-200:] or "rc %s" % rc)
    if not any(line.startswith("Status: Enabled") for line in out.splitlines()):
        return False, ("pf is disabled (someone ran pfctl -d?): the agents are not confined until the LaunchDaemon"
                       " %s puts it back (sudo launchctl kickstart -k system/%s)" % (LAUNCHD_PF, LAUNCHD_PF))
    rc, out, err = pfctl("-a", PF_ANCHOR, "-s", "rules")
    rules = [" ".join(line.split()) for line in out.splitlines() if line.strip()] if rc == 0 else []
    if not rules:
        return False, "pf is enabled, but the anchor %s is empty" % PF_ANCHOR
    if uid is None:
        return True, "pf enabled, anchor %s loaded (%d rules)" % (PF_ANCHOR, len(rules))
    own = [rule for rule in rules if rule.endswith(" user = %d" % uid) or " user = %d " % uid in rule]
    if not any(rule.startswith("block") for rule in own):
        return False, "pf is enabled, but the anchor %s has no block rule for uid %d" % (PF_ANCHOR, uid)
    return True, "pf enabled, anchor %s has %d rules for uid %d" % (PF_ANCHOR, len(own), uid)


def firewall_state():
    """(loaded: True, False or None for unknown, what was seen). Reading the rules needs root."""
    if os.geteuid() != 0:
        return None, NEEDS_ROOT
    if sys.platform == "darwin":
        loaded, seen = pf_confinement()
        return loaded, ("yes (%s)" % seen) if loaded else seen if loaded is None else "no: " + seen
    listed, _rules, said = nft_list("table", "inet", "agent_sandbox")
    if listed:
        return True, "yes (nft table inet agent_sandbox)"
    if "No such file or directory" in said:
        return False, "no: table inet agent_sandbox is not loaded (sudo systemctl restart agent-sandbox-firewall)"
    return None, "unknown (nft: %s)" % said[:200]


def proxy_state(cfg):
    """(up: True, False or None for unknown, what was seen): systemd's word, or launchd's on macOS."""
    if sys.platform == "darwin":
        try:
            proc = subprocess.run(["launchctl", "print", LAUNCHD_PROXY], capture_output=True, text=True,
                                  check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, "unknown (launchctl: %s)" % exc
        if proc.returncode != 0:
            return False, "no (launchctl print %s: %s)" % (LAUNCHD_PROXY, proc.stderr.strip()[:200] or "not loaded")
        up = "state = running" in proc.stdout
        return up, "%s (%s)" % ("yes" if up else "no", LAUNCHD_PROXY)
    unit = cfg.get("proxy_unit") or "agent-sandbox-proxy.service"
    state = systemctl("is-active", unit)
    if not state:
        return None, "unknown (systemctl is-active %s did not answer)" % unit
    return state == "active", "%s (%s: %s)" % ("yes" if state == "active" else "no", unit, state)


def status(cfg, as_json):
    """`agent-sandbox status`: the agents, the firewall, the proxy, recent refusals, on one screen."""
    audit = sibling("agent_sandbox_audit")
    rules, rules_note = rule_counts(cfg.get("policy_file") or POLICY)
    try:
        blocked, total, reading = audit.blocked_recently(cfg, 3600)
        blocked_note = "; ".join("not read: " + entry for entry in reading.unreadable)
    except audit.LogError as exc:
        blocked, total, blocked_note = {}, None, str(exc)
    agents = []
    listeners = {int(a["proxy_port"]): a["name"] for a in cfg.get("agents", [])}
    # Listeners doctor.json does not name (a service listener such as nix-builds) that refused something.
    for name in blocked:
        if name not in listeners.values() and name.split()[-1].isdigit():
            listeners[int(name.split()[-1])] = name
    for port, name in listeners.items():
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            uid = None
        agents.append({"name": name, "uid": uid, "listener": port, "rules": rules(port) if rules else None,
                       "rules_note": rules_note, "blocked_last_hour": blocked.get(name, 0) if total is not None
                       else None})
    loaded, firewall = firewall_state()
    up, proxy = proxy_state(cfg)
    control = control_state(cfg.get("control_file") or CONTROL_FILE, time.time())

    def by_name(table, shown):
        return ", ".join("%s %s" % (listeners.get(port, "listener %d" % port), shown(value))
                         for port, value in sorted(table.items())) or "off"

    ask = control["problem"] or by_name(control["ask"], lambda timeout: "(holds %d s)" % timeout)
    learn = control["problem"] or by_name(control["learn"], lambda until: "(until %s UTC)" % time.strftime(
        "%H:%M:%S", time.gmtime(until)))
    report = {"agents": agents, "firewall": {"loaded": loaded, "detail": firewall},
              "proxy": {"up": up, "detail": proxy}, "blocked_last_hour": {"count": total, "detail": blocked_note},
              "ask": {"state": ask, "listeners": control["ask"], "approvals": control["approved"]},
              "learn": {"state": learn, "listeners": control["learn"]}}
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [["AGENT", "UID", "LISTENER", "RULES", "BLOCKED (1H)"]] + [[
        audit.printable(a["name"]), "-" if a["uid"] is None else str(a["uid"]), str(a["listener"]),
        "not readable" if a["rules"] is None and rules_note.startswith("not") else
        "-" if a["rules"] is None else str(a["rules"]),
        "?" if a["blocked_last_hour"] is None else str(a["blocked_last_hour"])] for a in agents]
    lines = audit.table(rows) + [""] + audit.table([
        ["firewall loaded", firewall],
        ["proxy up", proxy],
        ["blocked, last hour", "unknown (%s)" % blocked_note if total is None else
         "%d%s%s" % (total, " (agent-sandbox log --blocked --since 1h)" if total else "",
                     "; " + blocked_note if blocked_note else "")],
        ["ask mode", ask + ("; %d run-time approval%s (agent-sandbox pending)" % (
            control["approved"], "" if control["approved"] == 1 else "s") if control["approved"] else "")],
        ["learn mode", learn]])
    lines = [line[2:] for line in lines]
    if rules is None:
        lines.append("rules: " + rules_note)
    print("\n".join(lines))
    return 0


def read_settings(path, command):
    """doctor.json, or None after saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        print("agent-sandbox %s: cannot read the settings %s (%s)" % (command, path, exc), file=sys.stderr)
        return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "probe":
        return run_probe(argv[1:])
    parser = argparse.ArgumentParser(prog="agent-sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="check every promise that can be checked on this host")
    doc.add_argument("--json", action="store_true", help="print the results as JSON")
    doc.add_argument("--config", default=CONFIG)
    doc.add_argument("--quick", action="store_true",
                     help="only the checks that pass at once: units, direct UDP, the proxy and the paths through it (site.yml runs this)")
    doc.add_argument("--only", action="append", metavar="CHECK",
                     help="only this group of checks (may be given more than once), e.g. wsl and wsl_host")
    adopt = sub.add_parser("adopt", help="give a repository in the shared workspace one owner, who alone"
                           " writes its .git (run as root)")
    adopt.add_argument("path")
    adopt.add_argument("--owner", help="the admin or an agent (default: the .git folder's owner now)")
    adopt.add_argument("--check", action="store_true", help="only say what would change")
    stp = sub.add_parser("stop", help="end every process of the agents, or of one (run as root)")
    stp.add_argument("--agent", action="append", metavar="NAME",
                     help="only this agent (may be given more than once); default: every agent in the settings")
    stp.add_argument("--grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL (default 3)")
    stp.add_argument("--config", default=CONFIG)
    log = sub.add_parser("log", help="sum up the proxy's audit log per agent and host, or --follow it"
                         " (for members of the audit group, no sudo)")
    log.add_argument("--blocked", action="store_true", help="only blocked requests")
    log.add_argument("--agent", metavar="NAME", help="only this agent (or listener port)")
    log.add_argument("--since", metavar="AGE", help="only the last AGE: 45s, 30m, 1h, 2d")
    log.add_argument("--follow", action="store_true", help="print each request as it is written, until Ctrl-C")
    log.add_argument("--json", action="store_true", help="the summary as JSON; with --follow, one object a line")
    log.add_argument("--config", default=CONFIG)
    sts = sub.add_parser("status", help="agents, listeners and rules, firewall, proxy, recent blocks on one screen")
    sts.add_argument("--json", action="store_true", help="print it as JSON")
    sts.add_argument("--config", default=CONFIG)
    try:
        answers = sibling("agent_sandbox_ask")
    except OSError:   # an older install without it: the other commands still work
        answers = None
    else:
        answers.add_parsers(sub)
    args = parser.parse_args(argv)
    if answers is not None and args.command in answers.COMMANDS:
        cfg = read_settings(args.config, args.command)
        return 2 if cfg is None else answers.run(args, cfg)
    if args.command in ("log", "status"):
        cfg = read_settings(args.config, args.command)
        if cfg is None:
            return 2
        if args.command == "status":
            return status(cfg, args.json)
        return sibling("agent_sandbox_audit").run(args, cfg)
    if args.command == "adopt":
        script = "/usr/local/sbin/agent-sandbox-adopt"
        if not os.path.exists(script):
            print("agent-sandbox adopt: %s is missing (the shared_workspace role installs it, on Linux)" % script,
                  file=sys.stderr)
            return 2
        os.execv(script, [script, args.path] + (["--owner", args.owner] if args.owner else [])
                 + (["--check"] if args.check else []))
    if args.command == "stop":
        agents = args.agent
        if not agents:
            try:
                with open(args.config, encoding="utf-8") as fh:
                    agents = [agent["name"] for agent in json.load(fh)["agents"]]
            except (OSError, ValueError, KeyError) as exc:
                print("agent-sandbox stop: cannot read the agents from %s (%s); name one with --agent" % (
                    args.config, exc), file=sys.stderr)
                return 2
        return stop(agents, args.grace)
    with open(args.config, encoding="utf-8") as fh:
        cfg = json.load(fh)
    results, host_notes = [], []
    # Every agent at once; the report lists them in the settings' order.
    doctors = [Doctor(dict(cfg, **agent), agent["name"], host_checks=index == 0)
               for index, agent in enumerate(cfg["agents"])]
    runs = at_once([functools.partial(doctor.run, quick=args.quick, only=args.only) for doctor in doctors],
                   max([doctor.check_deadline + 30 for doctor in doctors] or [0]))
    for doctor, (how, value) in zip(doctors, runs):
        results.extend(value if how == "done" else [{
            "agent": doctor.agent, "check": "doctor", "status": "FAIL", "tried": "run the checks",
            "happened": "stopped with %s: %s" % (type(value).__name__, value) if how == "raised" else "did not finish"}])
        host_notes.extend(doctor.notes)
    failed = [r for r in results if r["status"] == "FAIL"]
    skipped = [r for r in results if r["status"] == "SKIP"]
    passed = len(results) - len(failed) - len(skipped)
    unit = cfg.get("proxy_unit") or ""
    log = last_log_line(unit) if failed and unit else ""
    # Not checks: what the admin chose and should keep in mind (the wildcards opted into with
    # trust_every_owner_below reach names anyone can own).
    notes = ["%s is allowed with trust_every_owner_below: anyone who gets a name under it can receive data"
             " from the agent" % host for host in cfg.get("opted_in_wildcards", [])] + host_notes
    if args.json:
        print(json.dumps({"results": results, "passed": passed, "failed": len(failed), "skipped": len(skipped),
                          "proxy_unit": unit, "proxy_log": log, "notes": notes}, indent=2))
    else:
        for r in results:
            print("%s  [%s] %s: tried %s -> %s" % (
                r["status"], r["agent"], r["check"], r["tried"], r["happened"]))
        for note in notes:
            print("NOTE  " + note)
        skips = ", %d skipped (not installed)" % len(skipped) if skipped else ""
        print("\n%d checks, %d passed, %d failed%s" % (len(results), passed, len(failed), skips))
        if failed:
            if log:
                print("last log line of %s: %s" % (unit, log))
            print("What to do: docs/recovery.md in the agent-sandbox collection.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
