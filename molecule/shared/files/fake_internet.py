#!/usr/bin/env python
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake internet for the mitm_proxy scenario: HTTPS (and HTTP) servers on loopback addresses.

allowed.test     a page, a smart-HTTP git repository (git http-backend), a PyPI simple index and,
                 under /stream/, endpoints that check the proxy streams bodies (see Handler.stream)
blocked.test     a page nobody behind the proxy should see
api.secret.test  echoes the request headers back, and records them in a root-only log so the
                 verifier can see which credential really arrived; /stream/reflect echoes the
                 credential in a streamed body, cut in two across chunks

Usage: fake_internet.py CONFIG.json (sites, cert, key, root, log).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    site = ""
    config = {}

    def log_message(self, fmt, *args):  # stderr goes to the journal
        sys.stderr.write("%s %s\n" % (self.site, fmt % args))

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body, ctype="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, body):
        record = {"site": self.site, "method": self.command, "path": self.path,
                  "headers": dict(self.headers.items()), "body": body.decode("utf-8", "replace")}
        with open(self.config["log"], "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.handle_any()

    do_POST = do_HEAD = do_PUT = do_GET

    def handle_any(self):
        if self.site in ("allowed.test", "api.secret.test") and self.path.startswith("/stream/"):
            return self.stream()
        body = self._body()
        self._record(body)
        if self.site == "api.secret.test":
            echo = {"path": self.path, "headers": dict(self.headers.items())}
            return self._send(200, json.dumps(echo).encode(), "application/json")
        if self.site == "blocked.test":
            return self._send(200, b"blocked.test: you should never see this\n")
        path = self.path.split("?", 1)[0]
        if path.startswith("/git/"):
            return self.git(body)
        if path.startswith("/simple/") or path.startswith("/packages/"):
            return self.static(path)
        return self._send(200, b"hello from allowed.test\n")

    def static(self, path):
        root = os.path.realpath(self.config["root"])
        target = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        if not target.startswith(root + os.sep) or not os.path.isfile(target):
            return self._send(404, b"not found\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if target.endswith(".html") else "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(target)))
        self.end_headers()
        if self.command != "HEAD":
            with open(target, "rb") as handle:
                shutil.copyfileobj(handle, self.wfile, 1 << 20)
        return None

    # ---- /stream/: bodies the proxy must pass on as they come, never whole

    # How long a stream endpoint waits for the client (an acknowledgement, the next upload
    # chunk) before it gives up and says so in its log: a buffering proxy makes the tests
    # fail after this long instead of hanging.
    PATIENCE = 15

    def stream(self):
        """GET  /stream/sse?id=ID&n=N[&framing=close]    lockstep server-sent events
        GET  /stream/bytes?id=ID&size=N[&framing=...]  N bytes of noise
        POST /stream/upload?id=ID[&progress=1][&early=1]  a body (chunked or Content-Length), taken as it comes
        ID names the run: its record in streams.jsonl, its acknowledgement file, its upload file.
        framing: length (a Content-Length), chunked, or close (the end of the body is the end of
        the connection)."""
        path, _sep, query = self.path.partition("?")
        args = dict(item.partition("=")[::2] for item in query.split("&") if item)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.get("id", "")):
            return self._send(400, b"id must be 1-64 letters, digits, _ or -\n")
        self._record(b"")
        handlers = {"/stream/sse": self.sse, "/stream/bytes": self.noise, "/stream/upload": self.upload}
        if self.site == "api.secret.test":
            handlers = {"/stream/reflect": self.reflect}
        handler = handlers.get(path)
        if handler is None:
            return self._send(404, b"not found\n")
        return handler(args)

    def _stream_log(self, record):
        with open(os.path.join(os.path.dirname(self.config["log"]), "streams.jsonl"), "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def _start_body(self, ctype, framing, length=None):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        if framing == "length":
            self.send_header("Content-Length", str(length))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _write(self, framing, data):
        if framing == "chunked":
            data = b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"
        if data:
            self.wfile.write(data)
        elif framing == "close" and isinstance(self.connection, ssl.SSLSocket):
            # The end of the body is the end of the connection: say so in TLS (close_notify),
            # as a server must for its clients to tell the end from a cut.
            try:
                self.connection.settimeout(2)
                self.connection.unwrap()
            except (OSError, ValueError):
                pass

    def sse(self, args):
        """Event k+1 is sent only once the client has written k (or more) to /tmp/sse-ack-ID.
        A proxy that holds the stream back until it ends never lets the client see event 1, so
        the server gives up after PATIENCE (or wait) seconds, ends the stream and logs how far it got."""
        ident, count = args["id"], int(args.get("n", "5"))
        patience = min(float(args.get("wait", self.PATIENCE)), self.PATIENCE)
        framing = "close" if args.get("framing") == "close" else "chunked"
        ack_file = "/tmp/sse-ack-%s" % ident
        self._start_body("text/event-stream", framing)
        acked, gave_up = 0, False
        for k in range(1, count + 1):
            self._write(framing, b"id: %d\ndata: event %d\n\n" % (k, k))
            deadline = time.monotonic() + patience
            while acked < k:
                try:
                    with open(ack_file, encoding="ascii") as handle:
                        acked = int(handle.read().strip() or 0)
                except (OSError, ValueError):
                    pass
                if acked < k:
                    if time.monotonic() > deadline:
                        gave_up = True
                        break
                    time.sleep(0.01)
            if gave_up:
                break
        self._write(framing, b"event: end\ndata: acked %d\n\n" % acked)
        self._write(framing, b"")
        self._stream_log({"kind": "sse", "id": ident, "events": count, "acked": acked, "gave_up": gave_up})
        return None

    def noise(self, args):
        """size bytes that do not compress; their sha256 goes to the log once they are all sent."""
        ident, size = args["id"], int(args["size"])
        framing = args.get("framing", "length")
        block = bytearray(os.urandom(1 << 20))
        digest, sent, index = hashlib.sha256(), 0, 0
        self._start_body("application/octet-stream", framing, size)
        try:
            while sent < size:
                block[:8] = index.to_bytes(8, "big")
                piece = bytes(block[:min(len(block), size - sent)])
                self._write(framing, piece)
                digest.update(piece)
                sent += len(piece)
                index += 1
            self._write(framing, b"")
            end = "complete"
        except OSError as exc:
            end = type(exc).__name__
        self._stream_log({"kind": "bytes", "id": ident, "bytes": sent, "sha256": digest.hexdigest(), "end": end})
        return None

    def reflect(self, args):
        """(api.secret.test) The x-api-key header that arrived, in a chunked body: BEGIN, its first
        half, then a pause, then its second half and END, in two chunks, gzip-compressed with
        encoding=gzip (each chunk a flushed part of one gzip stream). A proxy that masks each
        chunk on its own lets the credential through."""
        value = self.headers.get("x-api-key", "").encode()
        half = len(value) // 2
        parts = [b"BEGIN " + value[:half], value[half:] + b" END\n"]
        gzip = args.get("encoding") == "gzip"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        if gzip:
            self.send_header("Content-Encoding", "gzip")
            packer = zlib.compressobj(wbits=31)
            parts = [packer.compress(parts[0]) + packer.flush(zlib.Z_SYNC_FLUSH), packer.compress(parts[1]) + packer.flush()]
        self.end_headers()
        self._write("chunked", parts[0])
        time.sleep(0.3)
        self._write("chunked", parts[1])
        self._write("chunked", b"")
        self._stream_log({"kind": "reflect", "id": args["id"], "reflected": bool(value)})
        return None

    def upload(self, args):
        """Take the body as it arrives: every piece is appended to uploads/ID.bin at once, so the
        test sees exactly what reached the upstream, complete or not. The answer comes only after
        the whole body: a refusal by the proxy mid-body is never pre-empted by this server.
        progress=1: the count of bytes received so far is also kept in /tmp/upload-progress-ID, for
        anyone to read (a client can wait for its first part to arrive before it sends the next).
        early=1: answer at once, before the body, then read the body all the same (as a server that
        refuses or accepts an upload on its headers may)."""
        ident = args["id"]
        progress = "/tmp/upload-progress-%s" % ident if args.get("progress") == "1" else None
        folder = os.path.join(os.path.dirname(self.config["log"]), "uploads")
        os.makedirs(folder, exist_ok=True)
        digest, received, end = hashlib.sha256(), 0, "complete"
        self.connection.settimeout(self.PATIENCE)
        early = args.get("early") == "1"
        if early:
            self._send(200, json.dumps({"kind": "upload", "id": ident, "early": True}).encode(), "application/json")
        with open(os.path.join(folder, ident + ".bin"), "wb", buffering=0) as sink:

            def take(count):
                nonlocal received
                while count:
                    piece = self.rfile.read1(min(count, 1 << 16))
                    if not piece:
                        raise EOFError
                    sink.write(piece)
                    digest.update(piece)
                    received += len(piece)
                    count -= len(piece)
                    if progress:
                        with open(progress + ".new", "w", encoding="ascii") as note:
                            os.fchmod(note.fileno(), 0o644)
                            note.write(str(received))
                        os.replace(progress + ".new", progress)

            try:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        line = self.rfile.readline(100)
                        if not line:
                            raise EOFError
                        size = int(line.split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline(100)
                            break
                        take(size)
                        end_of_chunk = self.rfile.readline(3)
                        if not end_of_chunk:
                            raise EOFError
                        if end_of_chunk not in (b"\r\n", b"\n"):
                            raise ValueError("bad chunk end")
                else:
                    take(int(self.headers.get("Content-Length") or 0))
            except EOFError:
                end = "eof"
            except TimeoutError:
                end = "timeout"
            except (OSError, ValueError) as exc:
                end = type(exc).__name__
        record = {"kind": "upload", "id": ident, "bytes": received, "sha256": digest.hexdigest(), "end": end}
        self._stream_log(record)
        if end != "complete" or early:
            self.close_connection = end != "complete"
            return None
        return self._send(200, json.dumps(record).encode(), "application/json")

    def git(self, body):
        path, _sep, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=os.path.join(self.config["root"], "git"),
                   GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path[len("/git"):], QUERY_STRING=query,
                   REQUEST_METHOD=self.command, CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_ADDR=self.client_address[0])
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                             check=False).stdout
        head, sep, data = out.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _sep, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None


def serve(config, site, address, port, tls):
    handler = type("SiteHandler", (Handler,), {"site": site, "config": config})
    server = ThreadingHTTPServer((address, port), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config["cert"], config["key"])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    for site, address in config["sites"].items():
        serve(config, site, address, 443, True)
        serve(config, site, address, 80, False)
    threading.Event().wait()


if __name__ == "__main__":
    main()
