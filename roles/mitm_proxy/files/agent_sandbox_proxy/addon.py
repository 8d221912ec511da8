# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mitmproxy addon: every hook a flow passes through, and mitmdump with the addon built in."""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import os
import signal
import socket
import time
import traceback
from urllib.parse import unquote_to_bytes

from mitmproxy import ctx, http
from mitmproxy.proxy import commands as mcommands
from mitmproxy.proxy import layer as mlayer
from mitmproxy.proxy import layers as mlayers
from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode, UpstreamMode

from .audit import AuditLog, timestamp
from .control import ASK, ASKABLE_PORTS, LEARN, Control, approvable, load_control
from .hosts import IP, NAME, WILDCARD, classify_host, split_authority
from .messages import block_response, block_text, clip, text_safe
from .policy import DEFAULT_HINT, Decision, PolicyError, load_policy
from .secrets import SecretSet, load_secrets
from .streams import Counter, RequestBody, ResponseBody, make_decoder
from . import guard

LOG = logging.getLogger(__name__)

META = "agent_sandbox"
RELOAD_INTERVAL = 1.0
# A held request (ask mode) looks for the admin's answer this often.
ASK_POLL = 0.25
# Requests held at once per listener; past that, refused at once (an agent cannot queue up thousands).
ASK_MAX_PENDING = 32
# Decisions that did not come from the managed policy: the host is checked at connect time for an
# internal address, as a wildcard's is, and no secret is injected into its requests.
_LOOSE = (WILDCARD, ASK, LEARN)
# A body that announces a Content-Length up to this size is taken whole and checked whole (it is
# small, and this spares it a call per chunk); every other body is streamed.
WHOLE_UP_TO = 64 * 1024


def _small(message, found):
    """True for a body with a Content-Length of at most WHOLE_UP_TO (and no chunking), or none at all.
    found: _header_values of the message for at least content-length and transfer-encoding."""
    if b"transfer-encoding" in found:
        return False
    lengths = found.get(b"content-length")
    if not lengths:   # HTTP/1 without either header: no body (a request) or one until close (a response)
        return isinstance(message, http.Request) and not message.is_http2 and not message.is_http3
    return len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) <= WHOLE_UP_TO


def _address(text):
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip if mapped is None else mapped


def _is_local(address):
    """This machine, its link (cloud metadata services live at link-local 169.254.169.254) or no host at all:
    never reachable through a host opened at run time (ask, learn), whatever the admin answered."""
    ip = _address(address)
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved


def _is_internal(address):
    ip = _address(address)
    return ip.is_private or _is_local(address) or getattr(ip, "is_site_local", False)


def _header_values(fields, wanted):
    """Values (bytes) of the wanted lowercase header names, in one pass over the raw fields."""
    found = {}
    for name, value in fields:
        lname = name.lower()
        if lname in wanted:
            found.setdefault(lname, []).append(value)
    return found


_REQUEST_HEADERS = frozenset((b"host", b"upgrade", b"content-length", b"transfer-encoding", b"content-encoding"))
_RESPONSE_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"content-encoding"))


def _listener_of(client):
    sockname = getattr(client, "sockname", None)
    if sockname and len(sockname) > 1 and isinstance(sockname[1], int):
        return sockname[1]
    return 0


def _guard(hook):
    """Turn any exception in a hook into a refusal: mitmproxy would log it and let the flow pass."""
    if asyncio.iscoroutinefunction(hook):
        @functools.wraps(hook)
        async def async_wrapper(self, arg):
            try:
                return await hook(self, arg)
            except Exception as exc:  # pylint: disable=broad-except
                self.internal_error(hook.__name__, exc, arg)
            return None
        return async_wrapper

    @functools.wraps(hook)
    def wrapper(self, arg):
        try:
            return hook(self, arg)
        except Exception as exc:  # pylint: disable=broad-except
            self.internal_error(hook.__name__, exc, arg)
        return None
    return wrapper


class RefuseLayer(mlayer.Layer):
    """Stands in for a raw TCP/UDP/DNS/QUIC layer: closes the connection on its first event."""

    def __init__(self, context):
        super().__init__(context)
        self.closed = False

    def _handle_event(self, event):
        if self.closed:
            return
        self.closed = True
        yield mcommands.CloseConnection(self.context.client)
        if self.context.server.connected:
            yield mcommands.CloseConnection(self.context.server)


_REFUSED_LAYERS = (mlayers.TCPLayer, mlayers.UDPLayer, mlayers.DNSLayer, mlayers.ServerQuicLayer,
                   mlayers.ClientQuicLayer, mlayers.RawQuicLayer, mlayers.QuicStreamLayer)


class AgentSandboxPolicy:
    """The mitmproxy addon. State: the policy, the secrets, the audit log."""

    def __init__(self):
        self.policy = None
        self.secrets = SecretSet()
        self.audit = AuditLog()
        self.config_problem = None
        self.control = Control()
        self._pending = {}   # (listener, host key, port) -> the held request's entry in the pending file
        self._stamps = {"policy": None, "secrets": None, "control": None}
        self._next_check = 0.0
        self._host_cache = {}
        self._vetted = {}
        self._injected = {}   # flow id -> secrets swapped into its request, until it is sent
        self._hup_installed = False
        self.streaming = False  # True once guard.py can stop a request body in flight

    # ---- lifecycle

    def load(self, loader):
        self.streaming = guard.install(self._leak_response)
        loader.add_option("agent_sandbox_policy", str, "", "agent-sandbox: path of the policy file (JSON).")
        loader.add_option("agent_sandbox_secrets", str, "", "agent-sandbox: path of the secrets file (JSON).")
        loader.add_option("agent_sandbox_audit", str, "", "agent-sandbox: path of the JSON-lines audit log.")
        loader.add_option("agent_sandbox_audit_max_bytes", int, 50 * 1024 * 1024,
                          "agent-sandbox: rotate the audit log past this size.")
        loader.add_option("agent_sandbox_audit_backups", int, 5, "agent-sandbox: rotated audit logs kept.")
        loader.add_option("agent_sandbox_control", str, "",
                          "agent-sandbox: path of the admin's control file (ask, approvals, learning), read only.")
        loader.add_option("agent_sandbox_pending", str, "",
                          "agent-sandbox: path of the file listing requests held in ask mode (written).")

    def configure(self, updated):
        self.config_problem = self._check_options()
        if self.config_problem:
            LOG.error("agent-sandbox: refusing all traffic: %s", self.config_problem)
        if {"agent_sandbox_audit", "agent_sandbox_audit_max_bytes", "agent_sandbox_audit_backups"} & set(updated):
            try:
                self.audit.open(ctx.options.agent_sandbox_audit, ctx.options.agent_sandbox_audit_max_bytes,
                                ctx.options.agent_sandbox_audit_backups)
            except OSError as exc:
                LOG.error("agent-sandbox: cannot open audit log %s (%s): refusing all traffic until it can be written",
                          ctx.options.agent_sandbox_audit, exc.strerror or exc)
        if "agent_sandbox_policy" in updated:
            self.reload_policy(force=True)
        if "agent_sandbox_secrets" in updated:
            self.reload_secrets(force=True)
        if "agent_sandbox_control" in updated:
            self.reload_control(force=True)
        if "agent_sandbox_pending" in updated:
            self._write_pending()

    def running(self):
        if self._hup_installed or not hasattr(signal, "SIGHUP"):
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_sighup)
            self._hup_installed = True
        except (RuntimeError, NotImplementedError, ValueError):
            LOG.warning("agent-sandbox: cannot handle SIGHUP here; files are still reloaded when they change")
        LOG.info("agent-sandbox policy active: %s rules, %d secrets",
                 self.policy.rule_count if self.policy else "no valid", len(self.secrets.secrets))

    def done(self):
        if self._hup_installed:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except (RuntimeError, NotImplementedError, ValueError):
                pass
            self._hup_installed = False
        self.audit.close()

    def on_sighup(self):
        LOG.info("agent-sandbox: SIGHUP: reloading policy and secrets")
        self.reload_policy(force=True)
        self.reload_secrets(force=True)
        self.reload_control(force=True)
        self.audit.reopen_if_moved()

    def _check_options(self):
        opts = ctx.options
        for spec in opts.mode:
            try:
                mode = ProxyMode.parse(spec)
            except ValueError:
                return "mode %s cannot be parsed" % spec
            if not isinstance(mode, (RegularMode, UpstreamMode)):
                return "mode %s (only regular and upstream modes are supported)" % spec
        for name in ("ignore_hosts", "allow_hosts", "tcp_hosts", "udp_hosts"):
            if getattr(opts, name, None):
                return "%s is set, which would pass traffic around the policy" % name
        if opts.agent_sandbox_secrets and (getattr(opts, "flow_detail", 0) >= 2 or getattr(opts, "save_stream_file", None)):
            return "flow_detail >= 2 or save_stream_file would write injected secrets to a log or file"
        if getattr(opts, "store_streamed_bodies", False):
            return "store_streamed_bodies would keep every body whole in memory"
        return None

    # ---- reloading

    def tick(self):
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_INTERVAL
        self.reload_policy()
        self.reload_secrets()
        self.reload_control()
        self.audit.reopen_if_moved()

    def _changed(self, which, path, force):
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as exc:
            stamp = ("error", exc.errno)
        if stamp == self._stamps[which] and not force:
            return False
        self._stamps[which] = stamp
        return True

    def reload_policy(self, force=False):
        path = ctx.options.agent_sandbox_policy
        if not path:
            if self.policy is not None or force:
                LOG.error("agent-sandbox: option agent_sandbox_policy is not set: refusing every request")
            self.policy = None
            return
        if not self._changed("policy", path, force):
            return
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            LOG.error("agent-sandbox: policy %s refused: %s; %s", path, exc,
                      "the previous policy stays in force" if self.policy else "refusing every request")
            return
        self.policy = policy
        self._host_cache.clear()
        LOG.info("agent-sandbox: policy %s loaded: %d rules, %d listener profiles",
                 path, policy.rule_count, len(policy.listeners))

    def reload_secrets(self, force=False):
        path = ctx.options.agent_sandbox_secrets
        if not path:
            self.secrets = SecretSet()
            return
        if not self._changed("secrets", path, force):
            return
        try:
            secrets = load_secrets(path)
        except PolicyError as exc:
            LOG.error("agent-sandbox: secrets file %s refused: %s; the previous secrets stay in force", path, exc)
            return
        self.secrets = secrets
        LOG.info("agent-sandbox: secrets file %s loaded: %d secrets", path, len(secrets.secrets))

    def reload_control(self, force=False):
        path = ctx.options.agent_sandbox_control
        if not path:
            self.control = Control()
            return
        if not self._changed("control", path, force):
            return
        try:
            control = load_control(path)
        except PolicyError as exc:
            # Never the previous one: an approval the admin took back must not outlive a broken file.
            LOG.error("agent-sandbox: control file %s refused: %s; no approvals, ask or learning mode until it is fixed",
                      path, exc)
            self.control = Control()
            return
        self.control = control
        LOG.info("agent-sandbox: control file %s loaded: %d approvals, ask mode on %d listeners, learning on %d",
                 path, len(control.approved), len(control.ask), len(control.learn))

    # ---- ask mode

    def _decide(self, profile, listener, kind, key, port, method=None, path=None):
        """The policy's decision, then the admin's runtime answers (control.json) for a host with no rule."""
        decision = profile.decide(kind, key, port, method, path)
        if decision.allowed or decision.reason != "no-rule" or not self.control or port not in ASKABLE_PORTS:
            return decision
        if approvable(key, port):
            return decision
        now = time.time()
        ident = self.control.approval(listener, key, port, now)
        if ident is not None:
            return Decision(True, None, "approved %s" % ident, ASK)
        if self.control.learning(listener, now):
            return Decision(True, None, "learning", LEARN)
        if self.control.denial(listener, key, port, now) is not None:
            return Decision(False, "denied")
        return decision

    def _askable(self, decision, listener, kind, key, port):
        return (not decision.allowed and decision.reason == "no-rule" and kind == NAME
                and self.control.ask_timeout(listener) is not None and approvable(key, port) is None)

    async def _ask(self, listener, key, port, method, path):
        """Hold a request the policy would refuse until the admin answers (agent-sandbox allow/deny) or
        the listener's timeout passes. Requests for the same target share one entry."""
        target = (listener, key, port)
        entry = self._pending.get(target)
        if entry is None:
            if sum(1 for other in self._pending if other[0] == listener) >= ASK_MAX_PENDING:
                return Decision(False, "ask-busy")
            # The admin sees where the name leads before answering; this machine and its link are never asked for.
            addresses = await self._resolve(key, port)
            local = [address for address in addresses if _is_local(address)]
            if local:
                return Decision(False, "internal-address", detail=local[0])
            entry = self._pending.get(target)   # another request for it may have started holding meanwhile
        if entry is None:
            now = time.time()
            entry = self._pending[target] = {
                "id": os.urandom(4).hex(), "listener": listener, "host": key, "port": port, "method": method,
                "path": clip(path.split("?", 1)[0], 300) if path else None, "since": round(now, 3),
                "expires": round(now + self.control.ask_timeout(listener), 3),
                "addresses": sorted(set(addresses))[:4],
                "private": any(_is_internal(address) for address in addresses), "waiting": 0}
            LOG.info("agent-sandbox: holding a request to %s:%s (listener %s) for the admin: id %s",
                     key, port, listener, entry["id"])
            self._write_pending()
        entry["waiting"] += 1
        try:
            while True:
                self.reload_control()
                now = time.time()
                ident = self.control.approval(listener, key, port, now)
                if ident is not None:
                    return Decision(True, None, "approved %s" % ident, ASK)
                if self.control.denial(listener, key, port, now) is not None:
                    return Decision(False, "denied")
                if self.control.ask_timeout(listener) is None:   # ask mode switched off meanwhile
                    return Decision(False, "no-rule")
                if now >= entry["expires"]:
                    return Decision(False, "ask-timeout")
                await asyncio.sleep(min(ASK_POLL, max(entry["expires"] - now, 0.01)))
        finally:
            entry["waiting"] -= 1
            if entry["waiting"] <= 0 and self._pending.get(target) is entry:
                del self._pending[target]
                self._write_pending()

    def _write_pending(self):
        """The held requests, for `agent-sandbox pending` (0640, the audit group, like the audit log)."""
        path = ctx.options.agent_sandbox_pending
        if not path:
            return
        doc = {"version": 1, "pending": [{k: v for k, v in entry.items() if k != "waiting"}
                                         for entry in self._pending.values()]}
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(doc, handle)
            os.replace(tmp, path)
        except OSError as exc:
            LOG.error("agent-sandbox: cannot write %s (%s): `agent-sandbox pending` cannot see held requests",
                      path, exc.strerror or exc)

    # ---- helpers

    def classify(self, host):
        found = self._host_cache.get(host)
        if found is None:
            if len(self._host_cache) > 8192:
                self._host_cache.clear()
            found = self._host_cache[host] = classify_host(host)
        return found

    def _global_refusal(self):
        if self.config_problem:
            return Decision(False, "proxy-misconfigured", detail=self.config_problem)
        if self.policy is None:
            return Decision(False, "policy-unavailable")
        if self.audit.broken:
            return Decision(False, "audit-unavailable")
        return None

    def _hint(self):
        return self.policy.hint if self.policy else DEFAULT_HINT

    def _meta(self, flow, decision, profile):
        meta = {"decision": "allow" if decision.allowed else "block", "reason": decision.reason,
                "rule": decision.rule, "how": decision.how, "profile": profile, "leak": False,
                "secrets": [], "masked": False}
        flow.metadata[META] = meta
        return meta

    def _block(self, flow, meta, reason, detail=None):
        req = flow.request
        meta.update(decision="block", reason=reason)
        path = req.path.split("?", 1)[0] if req.method != "CONNECT" else None
        flow.response = block_response(reason, req.host, req.port, self._hint(), req.method, path, detail)
        if req.method == "CONNECT":
            flow.response.headers["Connection"] = "close"   # nothing more can happen on this connection
        req.stream = False

    def internal_error(self, hook, exc, arg):
        # The type and the frames only: an exception message could quote request data.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        LOG.error("agent-sandbox: internal error in %s (%s), refusing:\n%s", hook, type(exc).__name__, frames)
        flow = arg if isinstance(arg, http.HTTPFlow) else None
        if flow is None:
            if isinstance(arg, mlayer.NextLayer):
                arg.layer = RefuseLayer(arg.context)
            elif hasattr(getattr(arg, "server", None), "error"):
                arg.server.error = "agent-sandbox policy: internal error"
            elif getattr(arg, "killable", False):
                arg.kill()
            return
        meta = flow.metadata.setdefault(META, {"profile": None, "rule": None, "leak": False, "secrets": []})
        if hook in ("http_connect", "requestheaders", "request", "response", "responseheaders"):
            meta.update(decision="block", reason="internal-error")
            flow.response = block_response("internal-error", flow.request.host, flow.request.port, DEFAULT_HINT)
            flow.request.stream = False
            if hook == "response":   # the audit line would have been written by this hook
                try:
                    self._record(flow)
                except Exception:  # pylint: disable=broad-except
                    LOG.error("agent-sandbox: cannot write the audit line for a refused response")
        elif hook == "websocket_message" and flow.websocket and flow.websocket.messages:
            flow.websocket.messages[-1].drop()

    def _record(self, flow, status=None, error=None):
        req = flow.request
        meta = flow.metadata.get(META) or {}
        resp = flow.response
        record = {
            "time": timestamp(),
            "listener": _listener_of(flow.client_conn),
            "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
            "method": req.method,
            "scheme": req.scheme or None,
            "host": clip(req.host, 255),
            "port": req.port,
            "path": clip(req.path.split("?", 1)[0], 1024) if req.method != "CONNECT" else None,
            "decision": meta.get("decision", "block"),
            "reason": meta.get("reason"),
            "rule": meta.get("rule"),
            "profile": meta.get("profile"),
            "status": status if status is not None else (resp.status_code if resp else None),
            "bytes": len(resp.raw_content) if resp is not None and resp.raw_content is not None else meta.get("bytes"),
            "request_bytes": len(req.raw_content) if req.raw_content else meta.get("request_bytes", 0 if req.raw_content is not None else None),
            "leak": meta.get("leak", False),
            "secrets": meta.get("secrets", []),
            "masked": meta.get("masked", False),
        }
        if error:
            record["error"] = clip(error, 300)
        self.audit.write(record)

    def _record_connection(self, what, client, server_address, reason):
        host, port = (server_address or (None, None))[:2]
        self.audit.write({
            "time": timestamp(), "listener": _listener_of(client),
            "client": client.peername[0] if client.peername else None, "method": None, "scheme": what,
            "host": host, "port": port, "path": None, "decision": "block", "reason": reason, "rule": None,
            "profile": None, "status": None, "bytes": None, "request_bytes": None, "leak": False,
            "secrets": [], "masked": False,
        })

    async def _resolve(self, host, port):
        """The addresses host resolves to ([] if it does not resolve)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        return [info[4][0] for info in infos]

    async def _internal_address(self, host, port, how=WILDCARD):
        """The first address host resolves to that a host allowed this way must not reach, or None
        (also None if it does not resolve). A wildcard: no internal address at all. A host opened at
        run time: not this machine or its link (a private address is shown to the admin instead)."""
        inside = _is_internal if how == WILDCARD else _is_local
        return next((address for address in await self._resolve(host, port) if inside(address)), None)

    # ---- CONNECT

    @_guard
    async def http_connect(self, flow):
        self.tick()
        req = flow.request
        listener = _listener_of(flow.client_conn)
        decision = self._global_refusal()
        profile = None
        if decision is None:
            profile_obj = self.policy.profile_for(listener)
            profile = profile_obj.name
            kind, key = self.classify(req.host)
            decision = self._decide(profile_obj, listener, kind, key, req.port)
            if self._askable(decision, listener, kind, key, req.port) and not self._placeholders_in_connect(flow):
                decision = await self._ask(listener, key, req.port, "CONNECT", None)
        meta = self._meta(flow, decision, profile)
        if not decision.allowed:
            self._block(flow, meta, decision.reason, decision.detail)
        leaked = self._placeholders_in_connect(flow)
        if leaked:
            meta.update(leak=True, secrets=sorted(leaked))
            if decision.allowed:
                self._block(flow, meta, "leak", ", ".join(sorted(leaked)))
            return
        if decision.allowed and decision.how in _LOOSE and flow.server_conn.via is None:
            addresses = await self._resolve(req.host, req.port)
            inside = _is_internal if decision.how == WILDCARD else _is_local
            internal = next((address for address in addresses if inside(address)), None)
            if internal:
                self._block(flow, meta, "internal-address", internal)
                return
            private = next((address for address in addresses if _is_internal(address)), None)
            if private:   # a host opened at run time that leads into a private network: the log says so
                meta["rule"] = "%s (private address %s)" % (meta["rule"], private)
            if len(self._vetted) > 10000:
                self._vetted.clear()
            self._vetted.setdefault(flow.client_conn.id, set()).add((req.host, req.port))

    def _placeholders_in_connect(self, flow):
        pre = self.secrets.placeholder_re
        if pre is None:
            return set()
        names = set()
        blobs = [flow.request.data.authority or b"", flow.request.host.encode("utf-8", "surrogateescape")]
        blobs.extend(value for name, value in flow.request.headers.fields)
        for blob in blobs:
            for match in pre.finditer(blob):
                names.add(self.secrets.by_placeholder[match.group(0)].name)
        return names

    @_guard
    def http_connected(self, flow):
        self._record(flow)

    @_guard
    def http_connect_error(self, flow):
        self._record(flow)

    @_guard
    def tls_clienthello(self, data):
        # Never pass a tunnel through unexamined, whatever another addon decided.
        data.ignore_connection = False
        server = data.context.server.address
        sni = data.client_hello.sni
        if server and sni is not None and self.classify(sni) != self.classify(server[0]):
            # Do not let a foreign server name reach the upstream in an eager TLS handshake;
            # the first request in this tunnel is answered with a 403 (sni-mismatch).
            data.establish_server_tls_first = False

    @_guard
    async def server_connect(self, data):
        """Last check before any upstream connection: the host is allowed for this listener and,
        when only a wildcard allows it, does not resolve to an internal address."""
        server = data.server
        if server.via is not None or not server.address:
            return
        host, port = server.address[:2]
        vetted = self._vetted.get(data.client.id)
        if vetted and (host, port) in vetted:
            vetted.discard((host, port))
            return
        refusal = self._global_refusal()
        if refusal is not None:
            server.error = "agent-sandbox policy: " + block_text(refusal.reason, host, port, self._hint()).splitlines()[0]
            return
        kind, key = self.classify(host)
        listener = _listener_of(data.client)
        decision = self._decide(self.policy.profile_for(listener), listener, kind, key, port)
        if not decision.allowed:
            server.error = "agent-sandbox policy: " + block_text(decision.reason, host, port, self._hint()).splitlines()[0]
            return
        if decision.how in _LOOSE:
            internal = await self._internal_address(host, port, decision.how)
            if internal:
                server.error = "agent-sandbox policy: " + block_text(
                    "internal-address", host, port, self._hint(), detail=internal).splitlines()[0]

    def client_disconnected(self, client):
        self._vetted.pop(client.id, None)

    # ---- HTTP requests

    @_guard
    def requestheaders(self, flow):
        self.tick()
        req = flow.request
        listener = _listener_of(flow.client_conn)
        found = _header_values(req.headers.fields, _REQUEST_HEADERS)
        decision = self._global_refusal()
        profile = None
        if decision is None:
            profile_obj = self.policy.profile_for(listener)
            profile = profile_obj.name
            decision = self._decide_request(flow, profile_obj, listener, found)
            if decision.reason == "no-rule" and self.control and req.method != "CONNECT":
                kind, key = self.classify(req.host)
                if self._askable(decision, listener, kind, key, req.port) and not self._placeholder_in_head(flow):
                    return self._held_request(flow, profile, listener, key, found)
        return self._decided_request(flow, decision, profile, found)

    async def _held_request(self, flow, profile, listener, key, found):
        """requestheaders for a plain-HTTP request held in ask mode (mitmproxy awaits what a hook returns)."""
        try:
            req = flow.request
            decision = await self._ask(listener, key, req.port, req.method, req.path)
            if decision.allowed:
                decision = self._disagreement(flow, NAME, key, found.get(b"host", [])) or decision
            self._decided_request(flow, decision, profile, found)
        except Exception as exc:  # pylint: disable=broad-except
            self.internal_error("requestheaders", exc, flow)

    def _placeholder_in_head(self, flow):
        """True if a secret placeholder is anywhere in the request head: such a request is never held."""
        if not self.secrets:
            return False
        req = flow.request
        return self.secrets.placeholder_re.search(b"\n".join(
            [req.data.path, unquote_to_bytes(req.data.path), req.data.authority or b""]
            + [b"%s:%s" % field for field in req.headers.fields])) is not None

    def _decided_request(self, flow, decision, profile, found):
        req = flow.request
        meta = self._meta(flow, decision, profile)
        encoding = found.get(b"content-encoding", [b"identity"])[0].strip().lower().decode("latin-1")
        if encoding == "identity":
            encoding = None
        if not decision.allowed:
            self._block(flow, meta, decision.reason, decision.detail)
            if self.secrets:   # still worth knowing (and logging) if the refused request carries a placeholder
                leaked, swaps = self._scan_head(flow)
                if leaked:
                    self._leaked(flow, meta, leaked)
                meta["scan"] = RequestBody(self.secrets, {}, encoding)
            return
        small = _small(req, found)
        if not self.secrets:
            req.stream = False if small else Counter(meta, "request_bytes")
            return
        # The headers go upstream as soon as this hook returns, so they are checked and swapped here.
        leaked, swaps = self._scan_head(flow)
        if leaked:
            self._leaked(flow, meta, leaked)
            return
        if swaps:
            self._inject(flow, meta, swaps)
        if self.streaming and not small:
            req.stream = RequestBody(self.secrets, meta, encoding)
        else:
            # Small, or guard.py is not in place: the whole body is seen (in `request`) before it goes.
            req.stream = False

    def _decide_request(self, flow, profile, listener, headers):
        req = flow.request
        if req.is_http3:
            return Decision(False, "http3")
        if req.scheme not in ("http", "https"):
            return Decision(False, "scheme")
        for upgrade in headers.get(b"upgrade", ()):
            if upgrade.strip().lower() != b"websocket":
                return Decision(False, "upgrade", detail=upgrade.decode("latin-1"))
        kind, key = self.classify(req.host)
        decision = self._decide(profile, listener, kind, key, req.port, req.method.upper(), req.path)
        if not decision.allowed:
            return decision
        mismatch = self._disagreement(flow, kind, key, headers.get(b"host", []))
        return mismatch or decision

    def _disagreement(self, flow, kind, key, host_headers):
        """The CONNECT target (or absolute URL), TLS server name and Host/authority must agree."""
        req = flow.request
        if len(host_headers) > 1:
            return Decision(False, "host-mismatch", detail="(several Host headers)")
        names = [value.decode("utf-8", "surrogateescape") for value in host_headers]
        if req.authority:
            names.insert(0, req.authority)
        default_port = 443 if req.scheme == "https" else 80
        for value in names:
            host, port = split_authority(value)
            if port is None:
                port = default_port
            if port != req.port or self.classify(host) != (kind, key):
                return Decision(False, "host-mismatch", detail=value)
        client = flow.client_conn
        if client.tls:
            sni = client.sni
            if sni is None:
                if kind != IP:
                    return Decision(False, "sni-missing")
            elif self.classify(sni) != (kind, key):
                return Decision(False, "sni-mismatch", detail=sni)
        return None

    @_guard
    def request(self, flow):
        meta = flow.metadata.get(META)
        if meta is None:  # the addon was (re)loaded in the middle of this flow
            held = self.requestheaders(flow)
            if held is not None:   # would be held in ask mode: too late for that here
                held.close()
                self._decided_request(flow, Decision(False, "no-rule"), None, {})
            meta = flow.metadata[META]
        if not self.secrets:
            return
        req = flow.request
        scan = meta.pop("scan", None)
        if scan is not None:   # a refused request: its body was read and dropped, and looked at
            if req.raw_content:
                scan(req.raw_content)
            scan.finish(req.trailers)
            if scan.refusal:
                self._leaked(flow, meta, scan.refusal | set(meta.get("secrets") or ()))
            return
        if (isinstance(req.stream, RequestBody) and req.raw_content is None) or not (req.raw_content or req.trailers):
            return   # streamed (RequestBody checked every chunk and the trailers, guard.py acts on it), or no body
        # A body that was not streamed (none at all, or guard.py is not in place): check it whole,
        # before it goes.
        body = RequestBody(self.secrets, {}, req.headers.get("content-encoding"))
        if req.raw_content:
            body(req.raw_content)
        body.finish(req.trailers)
        if body.refusal:
            self._leaked(flow, meta, body.refusal)

    def _leaked(self, flow, meta, names):
        names = sorted(names)
        meta.update(leak=True, secrets=names)
        if meta["decision"] == "allow":
            self._restore(flow)
            self._block(flow, meta, "leak", ", ".join(names))
        LOG.warning("agent-sandbox: leak attempt: placeholder of %s sent to %s (listener %s)",
                    ", ".join(names), text_safe(flow.request.host), _listener_of(flow.client_conn))

    def _leak_response(self, flow, names):
        """The 403 for a placeholder found in a body in flight (called by guard.py)."""
        meta = flow.metadata.setdefault(META, {"decision": "allow", "profile": None, "rule": None})
        body = flow.request.stream
        self._leaked(flow, meta, names)
        resp = flow.response
        flow.response = None
        flow.request.stream = body
        resp.headers["Connection"] = "close"   # the rest of the upload is dropped; nothing follows on this connection
        return resp

    def _inject(self, flow, meta, swaps):
        fields = list(flow.request.headers.fields)
        for i, secret in swaps:
            fields[i] = (fields[i][0], secret.rendered)
        flow.request.headers.fields = tuple(fields)
        if len(self._injected) > 10000:
            self._injected.clear()
        self._injected[flow.id] = [secret for index, secret in swaps]
        meta.update(secrets=sorted({secret.name for index, secret in swaps}))

    def _scan_head(self, flow):
        """Find placeholders outside the body. Returns (names of leaked secrets, [(header index, secret)] to swap)."""
        secrets = self.secrets
        pre = secrets.placeholder_re
        req = flow.request
        leaked = set()
        # Fast path: one search over everything; the detailed walk below only runs on a hit.
        fields = req.headers.fields
        blob = b"\n".join([req.data.path, unquote_to_bytes(req.data.path), req.data.authority or b"",
                           req.host.encode("utf-8", "surrogateescape")] + [b"%s:%s" % field for field in fields])
        if pre.search(blob) is None:
            return leaked, []

        def scan(blob):
            for match in pre.finditer(blob):
                leaked.add(secrets.by_placeholder[match.group(0)].name)

        scan(req.data.path)
        scan(unquote_to_bytes(req.data.path))
        scan(req.data.authority or b"")
        scan(req.host.encode("utf-8", "surrogateescape"))
        allowed = None
        # A host the admin opened at run time (ask, learn) never gets a secret: only the inventory says where one goes.
        if req.scheme == "https" and (flow.metadata.get(META) or {}).get("how") not in (ASK, LEARN):
            kind, key = self.classify(req.host)
            allowed = {secret for secret, how in secrets.for_listener(_listener_of(flow.client_conn)).lookup(kind, key)}
        swaps = []
        for i, (name, value) in enumerate(fields):
            scan(name)
            found = {m.group(0) for m in pre.finditer(value)}
            if not found:
                continue
            secret = secrets.by_placeholder[found.pop()] if len(found) == 1 else None
            if secret is not None and allowed and secret in allowed and name.lower() == secret.header:
                swaps.append((i, secret))
            else:
                if secret is not None:
                    leaked.add(secret.name)
                for placeholder in found:
                    leaked.add(secrets.by_placeholder[placeholder].name)
        return leaked, swaps

    def _restore(self, flow):
        """Put placeholders back once the request is sent: no later hook, dump or log sees a secret.
        The secrets come from the swap itself, so a reload in between does not matter."""
        injected = self._injected.pop(flow.id, None)
        if not injected:
            return
        fields = []
        for name, value in flow.request.headers.fields:
            for secret in injected:
                value = value.replace(secret.value, secret.placeholder)
            fields.append((name, value))
        flow.request.headers.fields = tuple(fields)

    # ---- responses

    @_guard
    def responseheaders(self, flow):
        self._restore(flow)
        meta = flow.metadata.get(META)
        resp = flow.response
        if meta is None or meta.get("decision") != "allow":
            return   # our own refusal: nothing comes from upstream
        found = _header_values(resp.headers.fields, _RESPONSE_HEADERS)
        if _small(resp, found):
            resp.stream = False   # taken whole, checked whole in `response`
            return
        if not self.secrets:
            resp.stream = Counter(meta, "bytes")
            return
        # The headers go to the agent as soon as this hook returns.
        self._mask_headers(flow, meta)
        decoder = None
        encoding = found.get(b"content-encoding", [b"identity"])[0].strip().lower().decode("latin-1")
        if encoding not in ("", "identity") and flow.request.method != "HEAD" and resp.status_code not in (204, 304):
            decoder = make_decoder(encoding)
            if decoder is None:
                if meta.get("secrets"):
                    # A secret went out on this request and the answer is in an encoding that cannot be
                    # checked for it: refused (guard.py cuts the response off at its first byte).
                    body = ResponseBody(self.secrets, meta)
                    body.refusal = "content encoding %s cannot be checked for secrets" % text_safe(encoding)
                    resp.stream = body
                    return
                LOG.warning("agent-sandbox: response from %s in content encoding %s passed on as it is, "
                            "checked for secrets only as raw bytes", text_safe(flow.request.host), text_safe(encoding))
            else:
                # Decoded on the fly to be checked, and passed on decoded.
                del resp.headers["content-encoding"]
                resp.headers.pop("content-length", None)
                if flow.request.http_version == "HTTP/1.1":
                    if "chunked" not in resp.headers.get("transfer-encoding", "").lower():
                        resp.headers["transfer-encoding"] = "chunked"
                elif flow.request.http_version.startswith("HTTP/1"):
                    resp.headers["connection"] = "close"
        resp.stream = ResponseBody(self.secrets, meta, decoder)

    def _mask_headers(self, flow, meta):
        self._mask_fields(flow.response.headers, meta)

    def _mask_fields(self, headers, meta):
        """Mask real values in a header (or trailer) list, in place."""
        if not self.secrets.value_re.search(b"\n".join(value for name, value in headers.fields)):
            return
        fields = []
        names = meta.setdefault("masked_names", [])
        for name, value in headers.fields:
            value, found = self.secrets.mask(value)
            names.extend(sorted(found - set(names)))
            fields.append((name, value))
        headers.fields = tuple(fields)
        meta["masked"] = True

    @_guard
    def response(self, flow):
        self._restore(flow)
        meta = flow.metadata.setdefault(META, {})
        resp = flow.response
        if self.secrets and meta.get("decision") == "allow":
            self._mask_headers(flow, meta)
            if resp.trailers:   # trailers (gRPC's status, for one) go to the agent after this hook
                self._mask_fields(resp.trailers, meta)
            raw = resp.raw_content
            if raw:   # not streamed (a test, or an addon that set stream = False): masked whole
                if resp.headers.get("content-encoding", "identity").lower() != "identity":
                    content = resp.get_content(strict=False) or raw
                else:
                    content = raw
                if self.secrets.value_re.search(content):
                    masked, found = self.secrets.mask(content)
                    names = meta.setdefault("masked_names", [])
                    names.extend(sorted(found - set(names)))
                    meta["masked"] = True
                    resp.content = masked
            if meta.get("masked_names"):
                LOG.warning("agent-sandbox: masked %s in a response from %s", ", ".join(sorted(meta["masked_names"])),
                            text_safe(flow.request.host))
        self._record(flow)

    @_guard
    def error(self, flow):
        self._restore(flow)
        if flow.request is not None:
            self._record(flow, error=flow.error.msg if flow.error else None)

    # ---- WebSockets

    @_guard
    def websocket_start(self, flow):
        meta = flow.metadata.get(META) or {}
        if meta.get("decision") != "allow":
            LOG.warning("agent-sandbox: WebSocket to %s without an allowed handshake; dropping its messages",
                        text_safe(flow.request.host))

    @_guard
    def websocket_message(self, flow):
        meta = flow.metadata.get(META) or {}
        message = flow.websocket.messages[-1]
        if meta.get("decision") != "allow":
            message.drop()
            return
        if not self.secrets:
            return
        if message.from_client:
            names = {self.secrets.by_placeholder[m.group(0)].name for m in self.secrets.placeholder_re.finditer(message.content)}
            if names:
                message.drop()
                meta.update(leak=True, secrets=sorted(set(meta.get("secrets", [])) | names))
                LOG.warning("agent-sandbox: leak attempt: placeholder of %s in a WebSocket message to %s",
                            ", ".join(sorted(names)), text_safe(flow.request.host))
                self._record(flow, status=101, error="WebSocket message with a secret placeholder dropped")
        elif self.secrets.value_re.search(message.content):
            message.content, names = self.secrets.mask(message.content)
            meta["masked"] = True

    # ---- everything that is not HTTP

    @_guard
    def next_layer(self, nextlayer):
        if isinstance(nextlayer.layer, _REFUSED_LAYERS):
            kind = type(nextlayer.layer).__name__
            LOG.warning("agent-sandbox: refusing a %s connection to %s", kind, nextlayer.context.server.address)
            self._record_connection(kind, nextlayer.context.client, nextlayer.context.server.address, "not-http")
            nextlayer.layer = RefuseLayer(nextlayer.context)

    @_guard
    def tcp_start(self, flow):
        # Normally unreachable (next_layer refuses raw TCP). mitmproxy 11 does not stop a killed
        # TCP flow in transit, so the messages are also emptied below.
        self._record_connection("tcp", flow.client_conn, flow.server_conn.address, "not-http")
        flow.server_conn.error = "agent-sandbox policy: raw TCP is not allowed"
        if flow.killable:
            flow.kill()

    def tcp_message(self, flow):
        flow.messages[-1].content = b""

    @_guard
    def udp_start(self, flow):
        self._record_connection("udp", flow.client_conn, flow.server_conn.address, "not-http")
        flow.server_conn.error = "agent-sandbox policy: UDP is not allowed"
        if flow.killable:
            flow.kill()

    def udp_message(self, flow):
        flow.messages[-1].content = b""

    @_guard
    def dns_request(self, flow):
        self._record_connection("dns", flow.client_conn, flow.server_conn.address, "not-http")
        if flow.killable:
            flow.kill()


def run_mitmdump(argv):
    """mitmdump with the addon built into the master: if it cannot load, the proxy does not start."""
    from mitmproxy.tools import cmdline, dump, main  # pylint: disable=import-outside-toplevel

    class SandboxDumpMaster(dump.DumpMaster):
        def __init__(self, options, **kwargs):
            super().__init__(options, **kwargs)
            self.addons.add(AgentSandboxPolicy())

    main.run(SandboxDumpMaster, cmdline.mitmdump, argv)
    return 0
