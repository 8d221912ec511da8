# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the agent-sandbox policy addon costs on top of mitmproxy. Not a test: it prints figures.

Runs a local HTTPS server (Python http.server, TLS, HTTP/1.1 keep-alive, no Nagle) with a test CA
made here, then measures keep-alive clients (CONNECT through the proxy) for: direct, plain
mitmdump, and mitmdump with the addon at 10, 1,000 and 10,000 rules (plus a few secrets, so the
placeholder scan and response masking run on every request, and the audit log on). See README.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import platform
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The folder that holds the agent_sandbox_proxy package, as the role installs it.
PACKAGE_PARENT = REPO / "roles" / "mitm_proxy" / "files"
TARGET = "localhost"

# The test CA and the HTTPS server are the live proxy tests' own (tests/unit/proxy/tls_server.py).
sys.path.insert(0, str(REPO / "tests" / "unit" / "proxy"))
from tls_server import https_server, make_pki  # noqa: E402  pylint: disable=wrong-import-position
# The package is imported from the role (pure modules here; the addon, which needs mitmproxy, where it is used).
sys.path.insert(0, str(PACKAGE_PARENT))
from agent_sandbox_proxy.hosts import classify_host  # noqa: E402  pylint: disable=wrong-import-position
from agent_sandbox_proxy.policy import parse_policy  # noqa: E402  pylint: disable=wrong-import-position


# ------------------------------------------------------------------ the HTTPS server (own process)

def serve(certfile, keyfile, body_bytes):
    from http.server import BaseHTTPRequestHandler  # pylint: disable=import-outside-toplevel

    body = b"x" * body_bytes

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):  # pylint: disable=invalid-name
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # pylint: disable=arguments-differ
            pass

    server = https_server(Handler, certfile, keyfile)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ------------------------------------------------------------------ processes

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited early with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d did not open" % port)


def mitmdump_binary():
    candidate = pathlib.Path(sys.executable).with_name("mitmdump")
    return str(candidate) if candidate.exists() else shutil.which("mitmdump")


def start_mitmdump(work, ca, addon_files=None, options=()):
    """mitmdump on a free port of 127.0.0.1, with the addon when addon_files is given, and any more
    `options` ("name=value") set. Returns (process, port) once the port accepts connections."""
    port = free_port()
    # With the addon: its --mitmdump launcher, as the mitm_proxy role runs it (the same mitmdump
    # master, with the addon added to it instead of loaded with -s).
    cmd = [sys.executable, "-P", "-m", "agent_sandbox_proxy", "--mitmdump"] if addon_files else [mitmdump_binary()]
    cmd += ["--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--set", "confdir=%s" % (work / "mitmproxy"), "--set", "ssl_verify_upstream_trusted_ca=%s" % ca,
            "--set", "http3=false", "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    for option, path in (addon_files or {}).items():
        cmd += ["--set", "%s=%s" % (option, path)]
    for option in options:
        cmd += ["--set", option]
    log = open(work / ("mitmdump-%d.log" % port), "wb")  # pylint: disable=consider-using-with
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)  # pylint: disable=consider-using-with
    try:
        wait_listening(port, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc, port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ files for the addon

def policy_with(n_rules, rng, port=443):
    rules = [{"host": TARGET, "ports": [port]}]
    tlds = ["com", "org", "net", "io", "dev", "test"]
    while len(rules) < n_rules:
        i = len(rules)
        host = "h%d-%x.%s" % (i, rng.getrandbits(24), rng.choice(tlds))
        if i % 4 == 0:
            rules.append({"host": "*." + host})
        elif i % 4 == 1:
            rules.append({"host": host, "methods": ["GET", "HEAD"], "paths": ["/api/", "/v%d" % (i % 9)]})
        else:
            rules.append(host)
    return {"version": 1, "rules": rules}


SECRETS = {"version": 1, "secrets": [
    {"name": "s%d" % i, "placeholder": "AGENT_SANDBOX_PLACEHOLDER_bench_%d_5be1" % i,
     "value": "bench-secret-value-%d-0123456789abcdef" % i, "hosts": ["api%d.example.com" % i],
     "header": "Authorization: Bearer {secret}"} for i in range(3)]}


def addon_files(work, n_rules, server_port):
    rng = random.Random(n_rules)
    policy = work / ("policy-%d.json" % n_rules)
    policy.write_text(json.dumps(policy_with(n_rules, rng, server_port)))
    secrets = work / "secrets.json"
    secrets.write_text(json.dumps(SECRETS))
    os.chmod(secrets, 0o600)
    return {"agent_sandbox_policy": policy, "agent_sandbox_secrets": secrets,
            "agent_sandbox_audit": work / ("audit-%d.jsonl" % n_rules)}


# ------------------------------------------------------------------ the client

def cpu_seconds(pid):
    """CPU time (user + system) a process has used so far, from /proc; None elsewhere."""
    try:
        fields = pathlib.Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server_port, cafile, proxy_port, connections, duration, warmup, proxy_pid=None):
    """Keep-alive clients, one connection each.

    Returns (requests/s, [latencies in s], proxy CPU seconds per request or None)."""
    context = ssl.create_default_context(cafile=str(cafile))
    latencies = [[] for slot in range(connections)]
    errors = []
    barrier = threading.Barrier(connections + 1)
    go = threading.Event()
    window = {}

    def worker(slot):
        try:
            if proxy_port:
                conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=context, timeout=30)
                conn.set_tunnel(TARGET, server_port)
            else:
                conn = http.client.HTTPSConnection(TARGET, server_port, context=context, timeout=30)
            for dummy in range(warmup):
                conn.request("GET", "/api/item?id=1")
                conn.getresponse().read()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(repr(exc))
            barrier.abort()
            return
        barrier.wait()
        go.wait()
        mine = latencies[slot]
        end = window["end"]
        clock = time.perf_counter
        while True:
            start = clock()
            if start >= end:
                break
            conn.request("GET", "/api/item?id=1")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append("status %d" % resp.status)
                break
            mine.append(clock() - start)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()   # every connection is open and warm
    except threading.BrokenBarrierError:
        raise RuntimeError("client setup failed: %s" % errors) from None
    cpu_before = cpu_seconds(proxy_pid) if proxy_pid else None
    begin = time.perf_counter()
    window["end"] = begin + duration
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    cpu_after = cpu_seconds(proxy_pid) if proxy_pid else None
    if errors:
        raise RuntimeError("client errors: %s" % errors[:3])
    flat = [x for per in latencies for x in per]
    cpu = (cpu_after - cpu_before) / len(flat) if cpu_before is not None and cpu_after is not None and flat else None
    return len(flat) / elapsed, flat, cpu


def percentile(sorted_values, pct):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(pct / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


# ------------------------------------------------------------------ the addon alone

def hook_figures(rule_counts, work, batch=2000, tries=5):
    """CPU time of the addon's own hooks for one allowed request (the same policy, secrets and audit log
    as the proxied runs), driven with mitmproxy's test flows: no network, no other process involved.
    Best of `tries` batches."""
    from mitmproxy import connection, http  # pylint: disable=import-outside-toplevel
    from mitmproxy.test import taddons, tflow  # pylint: disable=import-outside-toplevel
    from agent_sandbox_proxy.addon import AgentSandboxPolicy  # pylint: disable=import-outside-toplevel

    def flow():
        client = tflow.tclient_conn()
        client.sockname, client.tls, client.sni = ("127.0.0.1", 8080), True, TARGET
        client.state = connection.ConnectionState.OPEN
        req = http.Request(TARGET, 443, b"GET", b"https", b"", b"/api/item?id=1", b"HTTP/1.1",
                           http.Headers(host=TARGET, accept="*/*"), b"", None, 0, 0)
        return tflow.tflow(client_conn=client, req=req)

    rows = []
    for n in rule_counts:
        files = addon_files(work, n, 443)
        addon = AgentSandboxPolicy()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, **{k: str(v) for k, v in files.items()})
            best = None
            for dummy in range(tries):
                flows = [flow() for i in range(batch)]
                responses = [http.Response.make(200, b"x" * 1024) for i in range(batch)]
                start = time.process_time()
                for one, response in zip(flows, responses):
                    addon.requestheaders(one)
                    addon.request(one)
                    one.response = response
                    addon.responseheaders(one)
                    addon.response(one)
                took = (time.process_time() - start) / batch
                best = took if best is None else min(best, took)
            if any(done.response.status_code != 200 for done in flows):
                raise RuntimeError("the addon refused the benchmark request")
        addon.done()
        rows.append((n, best))
    return rows


# ------------------------------------------------------------------ the matcher alone

def matcher_figures(rule_counts):
    rows = []
    for n in rule_counts:
        doc = policy_with(n, random.Random(n))
        start = time.perf_counter()
        policy = parse_policy(doc)
        build = time.perf_counter() - start
        profile = policy.default
        hosts = [TARGET, "a.b.c.h4-1.com", "deep.sub.domain.unknown.example"]
        keys = [classify_host(h) for h in hosts]
        rounds = 20000
        start = time.perf_counter()
        for dummy in range(rounds):
            for kind, key in keys:
                profile.decide(kind, key, 443, "GET", "/api/item?id=1")
        per = (time.perf_counter() - start) / (rounds * len(keys))
        rows.append((n, build, per))
    return rows


# ------------------------------------------------------------------ main

def machine():
    cpu = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = ""
    try:
        for line in pathlib.Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    from mitmproxy import version  # pylint: disable=import-outside-toplevel
    return "%d cores (%s), %s, %s, Python %s, mitmproxy %s" % (
        os.cpu_count(), cpu, distro or platform.platform(), platform.machine(), platform.python_version(), version.VERSION)


def run_concurrently(args, server_port, proxy_ca, proxies, results, round_no):
    """One window in which every proxy is driven at once by its own client process."""
    clients = {}
    for name, (proc, port) in proxies.items():
        clients[name] = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, __file__, "--duration", str(args.duration), "--warmup", str(args.warmup),
             "--client", str(server_port), str(proxy_ca), str(port), str(proc.pid), str(args.connections)],
            stdout=subprocess.PIPE, text=True)
    for name, client in clients.items():
        out, dummy = client.communicate()
        if client.returncode:
            raise RuntimeError("%s: client failed" % name)
        got = json.loads(out)
        results[name]["rps"].append(got["rps"])
        results[name]["lat"].extend(got["lat"])
        results[name]["cpu"].append(got["cpu"])
        results[name]["count"] += len(got["lat"]) + args.warmup * args.connections
        print("  round %2d  %-20s %8.0f req/s  %.3f ms proxy CPU/request" % (
            round_no + 1, name, got["rps"], got["cpu"] * 1000), flush=True)


def paired(results, name, key, base="mitmdump"):
    """Median over rounds of (this configuration / plain mitmdump in the same round) - 1."""
    pairs = [a / b - 1 for a, b in zip(results[name][key], results[base][key]) if a is not None and b]
    return statistics.median(pairs) if pairs else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per window (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive client connections (default 4)")
    parser.add_argument("--repeat", type=int, default=10, help="rounds over all configurations (default 10)")
    parser.add_argument("--warmup", type=int, default=20, help="requests per connection before each window")
    parser.add_argument("--body-bytes", type=int, default=1024, help="response body size (default 1024)")
    parser.add_argument("--rules", default="10,1000,10000", help="rule counts for the addon runs")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    parser.add_argument("--concurrent", action="store_true",
                        help="measure the proxies at the same time, each with its own client process (steadier "
                             "ratios on a busy machine; no direct run)")
    parser.add_argument("--serve", nargs=3, metavar=("CERT", "KEY", "BODY"), help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=5, metavar=("SERVER_PORT", "CA", "PROXY_PORT", "PID", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    if args.client:
        server_port, cafile, proxy_port, pid, connections = args.client
        rps, lat, cpu = measure(int(server_port), cafile, int(proxy_port), int(connections), args.duration,
                                args.warmup, int(pid))
        print(json.dumps({"rps": rps, "lat": lat, "cpu": cpu}))
        return 0

    rule_counts = [int(x) for x in args.rules.split(",") if x]
    print("machine: %s" % machine())
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())
    if os.getloadavg()[0] > 0.5:
        print("WARNING: the machine is busy; figures will be noisy and slower than on a quiet machine")
    print("load: %d keep-alive connections, %d rounds of one %.0f s window per configuration%s, %d-byte responses, "
          "GET over CONNECT" % (args.connections, args.repeat, args.duration,
                                " (all proxies at once, one client process each)" if args.concurrent else "",
                                args.body_bytes))
    configs = [] if args.concurrent else [("direct", None)]
    configs += [("mitmdump", False)] + [("addon, %d rules" % n, n) for n in rule_counts]
    results = {name: {"rps": [], "lat": [], "cpu": [], "count": 0} for name, what in configs}
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        work = pathlib.Path(tmp)
        pki = make_pki(work)
        server = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, __file__, "--serve", str(pki["server.pem"]), str(pki["server.key"]), str(args.body_bytes)],
            stdout=subprocess.PIPE, text=True)
        proxies = {}
        try:
            server_port = int(server.stdout.readline())
            # The first start creates mitmproxy's CA in the shared confdir; then every proxy runs at
            # once and the rounds take turns, so that each round compares them under the same load.
            stop(start_mitmdump(work, pki["ca.pem"])[0])
            proxy_ca = work / "mitmproxy" / "mitmproxy-ca-cert.pem"
            files = {}
            for name, what in configs:
                if what is not None:
                    files[name] = addon_files(work, what, server_port) if what else None
                    proxies[name] = start_mitmdump(work, pki["ca.pem"], files[name])
            for round_no in range(args.repeat):
                if args.concurrent:
                    run_concurrently(args, server_port, proxy_ca, proxies, results, round_no)
                    continue
                # Direct first, then the proxies in a fresh random order each round: a fixed rotation
                # would always put the same configuration right after the direct run.
                order = [config for config in configs if config[1] is not None]
                random.Random(round_no).shuffle(order)
                for name, what in [config for config in configs if config[1] is None] + order:
                    if what is None:
                        rps, lat, cpu = measure(server_port, pki["ca.pem"], None, args.connections, args.duration,
                                                args.warmup)
                    else:
                        proc, port = proxies[name]
                        rps, lat, cpu = measure(server_port, proxy_ca, port, args.connections, args.duration,
                                                args.warmup, proc.pid)
                    if what is None:
                        time.sleep(1)   # let the server's threads settle before the proxies' turns
                    results[name]["rps"].append(rps)
                    results[name]["lat"].extend(lat)
                    results[name]["cpu"].append(cpu)
                    results[name]["count"] += len(lat) + args.warmup * args.connections
                    print("  round %2d  %-20s %8.0f req/s  %s" % (
                        round_no + 1, name, rps, "" if cpu is None else "%.3f ms proxy CPU/request" % (cpu * 1000)), flush=True)
            for name, paths in files.items():
                if paths:
                    lines = paths["agent_sandbox_audit"].read_text().count("\n")
                    if lines < results[name]["count"]:
                        raise RuntimeError("%s: %d audit lines for %d requests" % (name, lines, results[name]["count"]))
        finally:
            for proc, port in proxies.values():
                stop(proc)
            server.terminate()
            server.wait()

    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print()
    print("| configuration | requests/s | p50 latency | p99 latency | throughput vs plain mitmdump "
          "| proxy CPU per request | CPU vs plain mitmdump |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, data in results.items():
        rps = statistics.median(data["rps"])
        lat = sorted(data["lat"])
        p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        cpus = [c for c in data["cpu"] if c is not None]
        cpu = statistics.median(cpus) if cpus else None
        versus = paired(results, name, "rps") if name not in ("direct", "mitmdump") else None
        cpu_versus = paired(results, name, "cpu") if name not in ("direct", "mitmdump") else None
        summary[name] = {"rps": data["rps"], "p50_ms": p50, "p99_ms": p99, "cpu_s_per_request": data["cpu"]}
        print("| %s | %.0f | %.2f ms | %.2f ms | %s | %s | %s |" % (
            name, rps, p50, p99, "" if versus is None else "%+.1f%%" % (versus * 100),
            "" if cpu is None else "%.3f ms" % (cpu * 1000), "" if cpu_versus is None else "%+.1f%%" % (cpu_versus * 100)))
    print()
    print("requests/s and CPU: medians over the rounds; \"vs plain mitmdump\": median of the per-round ratios.")
    print()
    base_cpus = [c for c in results["mitmdump"]["cpu"] if c is not None]
    base_cpu = statistics.median(base_cpus) if base_cpus else None
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        hooks = dict(hook_figures(rule_counts, pathlib.Path(tmp)))
    print("| rules | policy build | one decision (matcher alone) | addon hooks per request (CPU) | share of plain mitmdump's CPU per request |")
    print("|---:|---:|---:|---:|---:|")
    for n, build, per in matcher_figures(rule_counts):
        share = "" if not base_cpu else "%.1f%%" % (hooks[n] / base_cpu * 100)
        print("| %d | %.1f ms | %.2f us | %.0f us | %s |" % (n, build * 1000, per * 1e6, hooks[n] * 1e6, share))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"machine": machine(), "results": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
