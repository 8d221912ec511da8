#!/usr/bin/env python
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake internet for the mitm_proxy scenario: HTTPS (and HTTP) servers on loopback addresses.

allowed.test     a page, a smart-HTTP git repository (git http-backend) and a PyPI simple index
blocked.test     a page nobody behind the proxy should see
api.secret.test  echoes the request headers back, and records them in a root-only log so the
                 verifier can see which credential really arrived

Usage: fake_internet.py CONFIG.json (sites, cert, key, root, log).
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
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
        with open(target, "rb") as handle:
            data = handle.read()
        ctype = "text/html" if target.endswith(".html") else "application/octet-stream"
        return self._send(200, data, ctype)

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
