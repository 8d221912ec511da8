# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether bodies stream through the agent-sandbox proxy. Not a test: it prints figures.

For direct (no proxy), plain mitmdump (stream_large_bodies=1) and mitmdump with the addon (as the
role runs it): the time to the first and last event of a server-sent event stream, the throughput
of a large download and of a large upload (chunked and with Content-Length), and the proxy's
peak resident memory. Reuses the test CA and TLS server of tests/unit/proxy/tls_server.py and the
mitmdump starter, addon files and machine line of benchmarks/proxy_overhead/run.py. See README.md.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.util
import json
import os
import pathlib
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]

# The proxy benchmark's helpers (its file is also called run.py, so it is loaded by path, under
# another name). Loading it puts tests/unit/proxy, with the test CA and HTTPS server, on sys.path.
_SPEC = importlib.util.spec_from_file_location("proxy_overhead_run", REPO / "benchmarks" / "proxy_overhead" / "run.py")
overhead = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(overhead)
from tls_server import https_server, make_pki  # noqa: E402  pylint: disable=wrong-import-position

TARGET = overhead.TARGET
BLOCK = 256 * 1024          # the server's writes and the client's reads and writes
MIB = 1024 * 1024
RSS_TARGET = 150 * 1000 * 1000
CONFIGS = ("direct", "mitmdump", "addon")
# For the protection checks: a real secret value and a placeholder of the addon's secrets file, each
# in the middle of 1 MiB of padding (so that any streaming threshold is crossed before them).
SECRET = overhead.SECRETS["secrets"][0]
PAD = b"p" * (512 * 1024)
# The numeric options: flag, default (its type is the option's), meaning.
NUMBERS = (("--rounds", 3, "rounds over all configurations"), ("--download-mib", 1024, "download size in MiB"),
           ("--upload-mib", 200, "upload size in MiB"), ("--sse-events", 10, "events in the event stream"),
           ("--sse-delay", 0.2, "seconds between events"))
UPLOADS = (("upload_length", "Content-Length"), ("upload_chunked", "chunked"))


# ------------------------------------------------------------------ the HTTPS server (own process)

def body_block(seed):
    """BLOCK pseudo-random bytes, the same on every run: large downloads are mostly compressed
    (archives, wheels, images), and a body of one repeated byte is a best or worst case for the
    substring searches the addon runs on every chunk, depending on the byte."""
    return random.Random(seed).randbytes(BLOCK)


def read_body(handler, buf):
    """Read and discard the request body (Content-Length or chunked); return its length."""
    rfile, view, total = handler.rfile, memoryview(buf), 0

    def discard(left):
        while left:
            got = rfile.readinto(view[:min(left, len(view))])
            if not got:
                raise ConnectionError("the body ended early")
            left -= got
        return left

    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        while True:
            size = int(rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while rfile.readline(1024).strip():   # trailers, up to the blank line
                    pass
                return total
            discard(size)
            total += size
            rfile.readline(1024)   # the CRLF after the chunk
    length = int(handler.headers.get("Content-Length", "0"))
    discard(length)
    return length


def serve(certfile, keyfile):
    from http.server import BaseHTTPRequestHandler  # pylint: disable=import-outside-toplevel

    block = body_block(0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"     # keep-alive
        disable_nagle_algorithm = True    # TCP_NODELAY: no delayed-ACK stalls on small writes

        def reply(self, body, content_type="text/plain"):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # pylint: disable=invalid-name
            path, dummy, query = self.path.partition("?")
            params = dict(urllib.parse.parse_qsl(query))
            if path == "/sse":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(int(params["events"])):
                    if i:
                        time.sleep(float(params["delay"]))
                    event = b"id: %d\ndata: event %d\n\n" % (i, i)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/download":
                size = int(params["bytes"])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                whole, rest = divmod(size, BLOCK)
                for dummy in range(whole):
                    self.wfile.write(block)
                self.wfile.write(block[:rest])
            elif path == "/secret":
                self.secret(params["framing"], params["encoding"])
            else:
                self.reply(b"ok\n")

        def secret(self, framing, encoding):
            """A body with a secret's real value in it; chunked, in two chunks split inside the value."""
            body = PAD + SECRET["value"].encode() + PAD
            self.send_response(200)
            if encoding == "gzip":
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            if framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                cut = len(PAD) + 10 if encoding == "identity" else len(body) // 2
                for piece in (body[:cut], body[cut:]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def do_PUT(self):  # pylint: disable=invalid-name
            try:
                count = read_body(self, bytearray(BLOCK))
            except (ConnectionError, ValueError):   # the proxy cut the upload short (a refused one)
                self.close_connection = True
                return
            self.reply(b"%d" % count)

        def log_message(self, *args):  # pylint: disable=arguments-differ
            pass

    server = https_server(Handler, certfile, keyfile)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ------------------------------------------------------------------ the proxy's memory

def status_bytes(pid, field):
    """A line of /proc/PID/status (VmRSS: resident now; VmHWM: the peak over the process's life), in
    bytes; None for no process (the direct runs) or where there is no such file."""
    if pid is None:
        return None
    try:
        for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class ProxyCPU:
    """Appends to `into` the CPU time (user + system) the proxy spends in the `with` block, per GiB
    of `mib` MiB moved: steadier than throughput on a busy machine. Nothing for the direct runs."""

    def __init__(self, pid, mib, into):
        self.pid, self.mib, self.into, self.start = pid, mib, into, None

    def __enter__(self):
        self.start = overhead.cpu_seconds(self.pid) if self.pid else None
        return self

    def __exit__(self, *exc):
        end = overhead.cpu_seconds(self.pid) if self.pid else None
        self.into.append(None if self.start is None or end is None else (end - self.start) * 1024 / self.mib)


# ------------------------------------------------------------------ the client

class Client:
    """One kind of connection to the server: direct, or CONNECT through a proxy, TLS either way."""

    def __init__(self, server_port, cafile, proxy_port=None, timeout=120):
        self.server_port, self.proxy_port, self.timeout = server_port, proxy_port, timeout
        self.context = ssl.create_default_context(cafile=str(cafile))

    def connect(self):
        """An open keep-alive connection that has had one request answered, so that the timed
        request that follows finds the tunnel, both TLS sessions and the upstream connection up."""
        if self.proxy_port:
            conn = http.client.HTTPSConnection("127.0.0.1", self.proxy_port, context=self.context, timeout=self.timeout)
            conn.set_tunnel(TARGET, self.server_port)
        else:
            conn = http.client.HTTPSConnection(TARGET, self.server_port, context=self.context, timeout=self.timeout)
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError("warm-up request: status %d" % resp.status)
        return conn

    def sse(self, events, delay):
        """(seconds to the first complete event, seconds to the last), from sending the request."""
        conn = self.connect()
        start = time.perf_counter()
        conn.request("GET", "/sse?events=%d&delay=%s" % (events, delay), headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("event stream: status %d" % resp.status)
        data, first, last = b"", None, None
        while last is None:
            piece = resp.read1(65536)
            if not piece:
                break
            data += piece
            seen = data.count(b"\n\n")
            if seen and first is None:
                first = time.perf_counter() - start
            if seen >= events:
                last = time.perf_counter() - start
        resp.read()
        conn.close()
        if last is None:
            raise RuntimeError("event stream: %d of %d events" % (data.count(b"\n\n"), events))
        return first, last

    def download(self, size):
        """MiB/s of a `size`-byte GET, read in BLOCK-sized reads and thrown away."""
        conn = self.connect()
        buf = bytearray(BLOCK)
        start = time.perf_counter()
        conn.request("GET", "/download?bytes=%d" % size, headers={"Accept-Encoding": "identity"})
        resp = conn.getresponse()
        got = 0
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - start
        conn.close()
        if resp.status != 200 or got != size:
            raise RuntimeError("download: status %d, %d of %d bytes" % (resp.status, got, size))
        return size / MIB / elapsed

    def put(self, blocks, size, chunked):
        """(status, answer, seconds from the request to the answer) of a PUT of `blocks` (`size` bytes)."""
        conn = self.connect()
        headers = {"Content-Type": "application/octet-stream"}
        if not chunked:
            headers["Content-Length"] = str(size)
        start = time.perf_counter()
        conn.request("PUT", "/upload", body=blocks, headers=headers, encode_chunked=chunked)
        resp = conn.getresponse()
        answer = resp.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return resp.status, answer, elapsed

    def upload(self, size, chunked):
        """MiB/s of a `size`-byte PUT, sent in BLOCK-sized writes, to the server's answer."""
        block = body_block(1)
        whole, rest = divmod(size, BLOCK)
        status, answer, elapsed = self.put((block[:rest] if i == whole else block for i in range(whole + bool(rest))),
                                           size, chunked)
        if status != 200 or answer != b"%d" % size:
            raise RuntimeError("upload: status %d, the server counted %r of %d bytes" % (status, answer[:40], size))
        return size / MIB / elapsed

    def fetch(self, path):
        """(status, body decoded, whether the connection still serves a request after it) of a GET."""
        conn = self.connect()
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            conn.request("GET", "/ping")
            intact = conn.getresponse().read() == b"ok\n"
        except (OSError, http.client.HTTPException):
            intact = False
        conn.close()
        return resp.status, body, intact


def protections(client):
    """What one proxy does with a secret's value in a response, and with a placeholder in a request
    body bound for a host the secret is not for: {case: (the addon's promise kept, what happened)}.
    A masked response must also keep its length where its Content-Length is already sent: a short
    or long body breaks the padding or the next request on the connection."""
    value, placeholder = SECRET["value"].encode(), SECRET["placeholder"].encode()
    found = {}
    for framing in ("length", "chunked"):
        for encoding in ("identity", "gzip"):
            case = "response with a secret's value, %s, %s" % ("Content-Length" if framing == "length" else framing, encoding)
            try:
                status, body, intact = client.fetch("/secret?framing=%s&encoding=%s" % (framing, encoding))
            except (OSError, http.client.HTTPException, EOFError, gzip.BadGzipFile) as exc:
                found[case] = (False, "error: %s" % exc.__class__.__name__)
                continue
            # Masked: the value is gone, something stands in its place, the padding around it is whole.
            if value in body:
                what = "value passes"
            elif body.startswith(PAD) and body.endswith(PAD) and len(body) > 2 * len(PAD):
                what = "masked"
            else:
                what = "body damaged (%d bytes)" % len(body)
            if status != 200:
                what += ", status %d" % status
            if not intact:
                what += ", the connection is broken after it"
            found[case] = (what == "masked", what)
    for chunked in (False, True):
        case = "request body with a placeholder, %s" % ("chunked" if chunked else "Content-Length")
        try:
            status, answer, dummy = client.put([PAD, placeholder + PAD], 2 * len(PAD) + len(placeholder), chunked)
        except (OSError, http.client.HTTPException) as exc:
            found[case] = (True, "refused (%s)" % exc.__class__.__name__)
            continue
        passed = status == 200 and answer == b"%d" % (2 * len(PAD) + len(placeholder))
        found[case] = (not passed, "passes" if passed else "refused (%d)" % status)
    return found


# ------------------------------------------------------------------ the proxies

def role_options():
    """The role's fixed mitmdump options (vars/main.yml, the ones without a template), so that the
    addon runs here as the role runs it (whatever the role sets about streaming included)."""
    import yaml  # pylint: disable=import-outside-toplevel

    doc = yaml.safe_load((REPO / "roles" / "mitm_proxy" / "vars" / "main.yml").read_text())
    # mitmdump refuses an option set twice; start_mitmdump sets these itself, to the same values.
    own = ("confdir", "ssl_verify_upstream_trusted_ca", "http3", "flow_detail", "termlog_verbosity")
    return [option for option in doc["__mitm_proxy_options"]
            if "{{" not in option and option.split("=", 1)[0] not in own]


def start_proxies(work, ca, files, addon_options):
    return {"mitmdump": overhead.start_mitmdump(work, ca, options=["stream_large_bodies=1"]),
            "addon": overhead.start_mitmdump(work, ca, files, options=addon_options)}


# ------------------------------------------------------------------ main

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(results, name, key):
    """Median over rounds of this configuration / plain mitmdump in the same round."""
    change = overhead.paired(results, name, key)
    return None if change is None else change + 1


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "ms":
        return "%.0f ms" % (value * 1000) if value >= 1 else "%.1f ms" % (value * 1000)
    if unit == "s/GiB":
        return "%.2f s/GiB" % value
    if unit == "MB":
        return "%.0f MB" % (value / 1e6)
    return "%.0f MiB/s" % value


def report(results, args):
    """The table: one line a measure, the three configurations side by side, the targets."""
    first_delta = median([a - d for a, d in zip(results["addon"]["sse_first"], results["direct"]["sse_first"])])
    rows = [
        ("first SSE event", "sse_first", "ms", None),
        ("last SSE event", "sse_last", "ms", None),
        ("download (%d MiB)" % args.download_mib, "download", "MiB/s", "ratio"),
        ("upload, Content-Length (%d MiB)" % args.upload_mib, "upload_length", "MiB/s", "ratio"),
        ("upload, chunked (%d MiB)" % args.upload_mib, "upload_chunked", "MiB/s", "ratio"),
        ("proxy CPU per GiB, download", "cpu_download", "s/GiB", None),
        ("proxy CPU per GiB, upload, Content-Length", "cpu_upload_length", "s/GiB", None),
        ("proxy CPU per GiB, upload, chunked", "cpu_upload_chunked", "s/GiB", None),
        ("proxy RSS at start", "rss_start", "MB", None),
        ("proxy peak RSS, SSE + download (VmHWM)", "rss_download", "MB", "rss"),
        ("proxy peak RSS, uploads (VmHWM)", "rss_upload", "MB", "rss"),
    ]
    print("| measure | direct | mitmdump | addon | direct / mitmdump | addon / mitmdump | target for the addon | met |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    verdicts = {}
    for label, key, unit, target in rows:
        cells = [fmt(median(results[name][key]), unit) for name in CONFIGS]
        ratios = ["" if unit not in ("MiB/s", "s/GiB") or ratio(results, name, key) is None else "%.0f%%" % (ratio(results, name, key) * 100)
                  for name in ("direct", "addon")]
        goal, met = "", ""
        if key == "sse_first":
            goal = "within 50 ms of direct (addon - direct: %s)" % fmt(first_delta, "ms")
            met = first_delta is not None and first_delta <= 0.050
        elif target == "ratio":
            goal, met = ">= 90% of mitmdump", (ratio(results, "addon", key) or 0) >= 0.90
        elif target == "rss":
            peak = median(results["addon"][key])
            goal, met = "< 150 MB", peak is not None and peak < RSS_TARGET
        if goal:
            verdicts[key] = bool(met)
        print("| %s | %s | %s | %s | %s | %s |" % (label, " | ".join(cells), ratios[0], ratios[1], goal,
                                                   "" if not goal else ("yes" if met else "NO")))
    return verdicts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, meaning in NUMBERS:
        parser.add_argument(flag, type=type(default), default=default, help="%s (default %s)" % (meaning, default))
    parser.add_argument("--quick", action="store_true", help="smoke test: 64 MiB down, 32 MiB up, 2 rounds")
    parser.add_argument("--addon-set", action="append", default=[], metavar="OPTION=VALUE",
                        help="one more mitmdump option for the addon's proxy (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    parser.add_argument("--serve", nargs=2, metavar=("CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    if args.quick:
        args.download_mib, args.upload_mib, args.rounds = 64, 32, 2
    addon_options = role_options() + args.addon_set

    load_start = os.getloadavg()
    print("machine: %s" % overhead.machine())
    print("load average at the start: %.2f %.2f %.2f" % load_start)
    if load_start[0] > 0.5:
        print("WARNING: the machine is busy; figures will be noisy and slower than on a quiet machine")
    print("%d rounds of: fresh proxies, %d events %.0f ms apart and a %d MiB download; fresh proxies, a %d MiB upload "
          "with Content-Length and one chunked; the configurations take turns, in an order rotated each round"
          % (args.rounds, args.sse_events, args.sse_delay * 1000, args.download_mib, args.upload_mib))
    print("plain mitmdump: stream_large_bodies=1; the addon: its --mitmdump launcher with %s" % " ".join(addon_options))

    results = {name: {key: [] for key in ("sse_first", "sse_last", "download", "upload_length", "upload_chunked",
                                          "rss_start", "rss_download", "rss_upload", "cpu_download",
                                          "cpu_upload_length", "cpu_upload_chunked")}
               for name in CONFIGS}
    requests = 0
    with tempfile.TemporaryDirectory(prefix="streaming-bench-") as tmp:
        work = pathlib.Path(tmp)
        pki = make_pki(work)
        server = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, __file__, "--serve", str(pki["server.pem"]), str(pki["server.key"])],
            stdout=subprocess.PIPE, text=True)
        proxies = {}
        try:
            server_port = int(server.stdout.readline())
            # The first start creates mitmproxy's CA in the shared confdir.
            overhead.stop(overhead.start_mitmdump(work, pki["ca.pem"])[0])
            proxy_ca = work / "mitmproxy" / "mitmproxy-ca-cert.pem"
            # The policy allows the server; the secrets are for other hosts, so masking runs on every response.
            files = overhead.addon_files(work, 1, server_port)
            for round_no in range(args.rounds):
                order = CONFIGS[round_no % 3:] + CONFIGS[:round_no % 3]
                # Fresh proxies for the downloads and again for the uploads: VmHWM is a process's peak
                # over its life, so each phase's figure is its own.
                for phase in ("download", "upload"):
                    proxies = start_proxies(work, pki["ca.pem"], files, addon_options)
                    clients = {"direct": (Client(server_port, pki["ca.pem"]), None)}
                    clients.update({name: (Client(server_port, proxy_ca, port), proc.pid)
                                    for name, (proc, port) in proxies.items()})
                    if phase == "download":
                        for name in order:
                            results[name]["rss_start"].append(status_bytes(clients[name][1], "VmRSS"))
                        for name in order:
                            first, last = clients[name][0].sse(args.sse_events, args.sse_delay)
                            results[name]["sse_first"].append(first)
                            results[name]["sse_last"].append(last)
                        for name in order:
                            with ProxyCPU(clients[name][1], args.download_mib, results[name]["cpu_download"]):
                                results[name]["download"].append(clients[name][0].download(args.download_mib * MIB))
                    else:
                        for key, how in UPLOADS:
                            for name in order:
                                with ProxyCPU(clients[name][1], args.upload_mib, results[name]["cpu_" + key]):
                                    results[name][key].append(clients[name][0].upload(args.upload_mib * MIB,
                                                                                      how == "chunked"))
                    for name in order:
                        results[name]["rss_" + phase].append(status_bytes(clients[name][1], "VmHWM"))
                    for proc_port in proxies.values():
                        overhead.stop(proc_port[0])
                    proxies = {}
                requests += 2 * (2 + len(UPLOADS))   # each measurement: a warm-up request and the timed one
                for name in order:
                    data = results[name]
                    print("  round %d  %-8s  first event %s, last %s; down %s; up %s (length), %s (chunked); "
                          "peak RSS %s down, %s up" % (
                              round_no + 1, name, fmt(data["sse_first"][-1], "ms"), fmt(data["sse_last"][-1], "ms"),
                              fmt(data["download"][-1], "MiB/s"), fmt(data["upload_length"][-1], "MiB/s"),
                              fmt(data["upload_chunked"][-1], "MiB/s"), fmt(data["rss_download"][-1], "MB"),
                              fmt(data["rss_upload"][-1], "MB")), flush=True)
            # Fast figures mean little if masking or the leak check were bypassed to get them.
            proxies = start_proxies(work, pki["ca.pem"], files, addon_options)
            checks = {name: protections(Client(server_port, proxy_ca, port, timeout=10))
                      for name, (proc, port) in proxies.items()}
            for proc_port in proxies.values():
                overhead.stop(proc_port[0])
            proxies = {}
            # The addon really was in the path: an audit line for every request it passed.
            lines = files["agent_sandbox_audit"].read_text().count("\n")
            if lines < requests:
                raise RuntimeError("addon: %d audit lines for %d requests" % (lines, requests))
        finally:
            for proc, port in proxies.values():
                overhead.stop(proc)
            server.terminate()
            server.wait()

    load_end = os.getloadavg()
    print()
    print("load average at the end: %.2f %.2f %.2f" % load_end)
    print()
    verdicts = report(results, args)
    print()
    print("Figures: medians over %d rounds; ratios: median of the per-round ratios; MiB/s from sending the request "
          "to the last byte (download) or the server's answer (upload); MB = 10^6 bytes." % args.rounds)
    print()
    print("| protection (1 MiB bodies, fresh proxies) | mitmdump (the control) | addon | kept by the addon |")
    print("|---|---|---|---|")
    for case, (kept, what) in checks["addon"].items():
        print("| %s | %s | %s | %s |" % (case, checks["mitmdump"][case][1], what, "yes" if kept else "NO"))
    verdicts["protections"] = all(kept for kept, what in checks["addon"].values())
    if any(kept for kept, what in checks["mitmdump"].values()):
        print("WARNING: plain mitmdump passed a protection check it cannot pass: the check is broken")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "machine": overhead.machine(), "load_start": load_start, "load_end": load_end,
            "options": {"rounds": args.rounds, "download_mib": args.download_mib, "upload_mib": args.upload_mib,
                        "sse_events": args.sse_events, "sse_delay": args.sse_delay, "addon_options": addon_options},
            "results": results, "protections": checks, "targets_met": verdicts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
