# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping a body in flight, which mitmproxy's addon API cannot do.

A streamed body goes through a callable (streams.py) that may find a placeholder in the middle of
an upload. From there mitmproxy offers no way out: the callable can only return bytes, and at the
end of the body mitmproxy would still finish the request upstream. So three states of mitmproxy's
HttpStream are wrapped here, once, when the addon loads:

- a streamed request whose RequestBody has a refusal: the upstream connection (or HTTP/2 stream)
  is reset, so the upstream never sees a complete request, and the agent gets the policy's 403
  (or, if the upstream had already begun its answer, a cut-off response). The rest of the upload
  is read and dropped;
- a streamed response whose ResponseBody has a refusal (it cannot be decoded, so it cannot be
  checked): both sides are cut off;
- a request the policy refused before its body came: mitmproxy would gather the whole body before
  answering; the body is read and dropped instead, so an upload to a refused host cannot fill memory.

And one thing mitmproxy gets wrong once bodies stream: an HTTP/2 request without a Content-Length
(`curl -T -` over HTTP/2) that goes on to an HTTP/1 upstream is sent with no framing at all; it is
given `Transfer-Encoding: chunked` on its way into mitmproxy's HTTP/1 client.

Everything else goes to mitmproxy's own code unchanged. If mitmproxy's layer does not have the
shape this was written for (it was read in 11.0 and 12.2), install() returns False and the addon
falls back to buffering the request bodies it must check, the old and safe behaviour.
"""
from __future__ import annotations

import logging

from .streams import RequestBody, ResponseBody

LOG = logging.getLogger(__name__)

_NEEDED = ("state_stream_request_body", "state_stream_response_body", "state_consume_request_body",
           "state_wait_for_response_headers", "send_response", "flow_done", "state_done", "state_errored")

_installed = []


def _codes(mhttp):
    """(client error, server error) codes for protocol errors: ints in mitmproxy 11, ErrorCode in 12."""
    error_code = getattr(mhttp, "ErrorCode", None)
    if error_code is None:
        return 400, 502
    return error_code.GENERIC_CLIENT_ERROR, error_code.GENERIC_SERVER_ERROR


def install(refusal_response):
    """Wrap mitmproxy's HttpStream states. refusal_response(flow, names) -> the 403 for a leak.
    Returns True when the wrappers are in place."""
    if _installed:
        _installed[0]["refusal_response"] = refusal_response
        return True
    try:
        from mitmproxy import flow as mflow  # pylint: disable=import-outside-toplevel
        from mitmproxy.proxy.layers import http as mhttp  # pylint: disable=import-outside-toplevel
    except ImportError:
        return False
    cls = getattr(mhttp, "HttpStream", None)
    names = ("SendHttp", "RequestData", "RequestEndOfMessage", "RequestProtocolError",
             "ResponseProtocolError", "HttpErrorHook", "RequestHeaders", "Http1Client")
    if cls is None or not all(hasattr(cls, n) for n in _NEEDED) or not all(hasattr(mhttp, n) for n in names):
        LOG.error("agent-sandbox: this mitmproxy's HTTP layer is not the one this addon knows; "
                  "request bodies that must be checked for placeholders are buffered, not streamed")
        return False
    client_error, server_error = _codes(mhttp)
    state = {"refusal_response": refusal_response}
    original_request = cls.state_stream_request_body
    original_response = cls.state_stream_response_body
    original_consume = cls.state_consume_request_body

    def refuse_request(self, body):
        flow = self.flow
        message = "agent-sandbox policy: request refused (secret placeholder in the body)"
        # Reset the upstream connection (HTTP/1) or stream (HTTP/2): no complete request reaches it.
        yield mhttp.SendHttp(mhttp.RequestProtocolError(self.stream_id, message, client_error), self.context.server)
        if self.server_state == self.state_wait_for_response_headers:
            flow.response = state["refusal_response"](flow, body.refusal)
            yield from self.send_response()
        else:
            # The upstream had begun its answer: it cannot become a 403 any more, so it is cut off.
            flow.error = mflow.Error(message)
            yield mhttp.HttpErrorHook(flow)
            yield mhttp.SendHttp(mhttp.ResponseProtocolError(self.stream_id, message, server_error), self.context.client)
            self.server_state = self.state_errored
            self.client_state = self.state_errored

    def state_stream_request_body(self, event):
        # Kept on the layer: the flow's attribute may be changed by any addon, this may not.
        body = getattr(self, "_agent_sandbox_body", None)
        if body is None and isinstance(self.flow.request.stream, RequestBody):
            body = self._agent_sandbox_body = self.flow.request.stream
        if body is None:
            yield from original_request(self, event)
            return
        if body.refusal is None:
            if type(event) is mhttp.RequestData:  # pylint: disable=unidiomatic-typecheck
                # What mitmproxy's own state does with a chunk, with the look at the result in between.
                chunks = body(event.data)
                if body.refusal is None:
                    for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
                        yield mhttp.SendHttp(mhttp.RequestData(self.stream_id, chunk), self.context.server)
                    return
            else:
                if isinstance(event, mhttp.RequestEndOfMessage):
                    # The held-back end and the trailers, before mitmproxy ends the request upstream.
                    for chunk in body.finish(self.flow.request.trailers):
                        yield mhttp.SendHttp(mhttp.RequestData(self.stream_id, chunk), self.context.server)
                if body.refusal is None:
                    yield from original_request(self, event)
                    return
        if not body.acted:
            body.acted = True
            yield from refuse_request(self, body)
        if isinstance(event, mhttp.RequestEndOfMessage) and self.client_state != self.state_errored:
            self.client_state = self.state_done
            if self.server_state == self.state_done:
                yield from self.flow_done()

    def state_stream_response_body(self, event):
        body = self.flow.response.stream if self.flow.response else None
        if not isinstance(body, ResponseBody) or body.acted:
            yield from original_response(self, event)
            return
        yield from original_response(self, event)
        if body.refusal is not None and not body.acted and self.server_state != self.state_errored:
            body.acted = True
            message = "agent-sandbox policy: response cut off: %s" % body.refusal
            self.flow.error = mflow.Error(message)
            yield mhttp.HttpErrorHook(self.flow)
            yield mhttp.SendHttp(mhttp.RequestProtocolError(self.stream_id, message, client_error), self.context.server)
            yield mhttp.SendHttp(mhttp.ResponseProtocolError(self.stream_id, message, server_error), self.context.client)
            self.server_state = self.state_errored
            self.client_state = self.state_errored

    def state_consume_request_body(self, event):
        # A plain function, not a generator: on the common path it hands back mitmproxy's own.
        if type(event) is mhttp.RequestData and self.flow.response is not None:  # pylint: disable=unidiomatic-typecheck
            meta = self.flow.metadata.get("agent_sandbox")
            if meta is not None and meta.get("decision") == "block":
                # Refused already: nothing of this body will ever be sent, so none of it is kept.
                scan = meta.get("scan")
                if scan is not None:
                    scan(event.data)
                meta["request_bytes"] = meta.get("request_bytes", 0) + len(event.data)
                return iter(())
        return original_consume(self, event)

    original_send = mhttp.Http1Client.send

    def send(self, event):
        if type(event) is mhttp.RequestHeaders and not event.end_stream:  # pylint: disable=unidiomatic-typecheck
            request = event.request
            if ((request.is_http2 or request.is_http3) and "content-length" not in request.headers
                    and "transfer-encoding" not in request.headers):
                request.headers["transfer-encoding"] = "chunked"
        return original_send(self, event)

    send.__name__, send.__qualname__, send.__wrapped__ = "send", "Http1Client.send", original_send
    mhttp.Http1Client.send = send

    for name, wrapper, original in (("state_stream_request_body", state_stream_request_body, original_request),
                                    ("state_stream_response_body", state_stream_response_body, original_response),
                                    ("state_consume_request_body", state_consume_request_body, original_consume)):
        wrapper.__name__ = name
        wrapper.__qualname__ = "HttpStream." + name
        wrapper.__wrapped__ = original
        setattr(cls, name, wrapper)
    _installed.append(state)
    return True
