# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bodies in flight: every body is passed on chunk by chunk, never held whole.

mitmproxy calls a flow's ``stream`` callable with each chunk as it arrives (and with b"" at the end)
and sends on what it returns. The callables here:

- count the bytes, for the audit log;
- RequestBody: find a secret placeholder in a request body, even one cut in two by the chunking,
  and then pass on nothing more (guard.py stops the request and answers the agent);
- ResponseBody: replace real secret values by their masks (as many asterisks, so a Content-Length
  stays true), across chunk boundaries, after decoding gzip, deflate, br or zstd on the fly (the
  body then goes on uncompressed, without its Content-Length).

Only the end of the data that could still turn into a placeholder or a secret value is held back
(at most one placeholder or value long, less one byte). A server-sent event ends in a newline,
which is in no placeholder or value, so it goes out whole and at once.

Nothing to send is returned as [] (no chunks), never as b"": mitmproxy would send an empty chunk,
and an empty chunk of a chunked HTTP/1.1 body is its end.

Pure Python (no mitmproxy), tested on its own.
"""
from __future__ import annotations

import re
import zlib

try:
    import brotli
except ImportError:  # pragma: no cover - mitmproxy depends on it
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - mitmproxy depends on it
    zstandard = None

# The most output one zlib call may make: a small compressed chunk cannot become a huge one in memory.
_PIECE = 1 << 20


def prefixes(literals):
    """What Window needs, made once per secrets file: (every proper start of every literal, the
    length of the longest less one, a regex of their first bytes)."""
    firsts = sorted({lit[0] for lit in literals})
    return (frozenset(lit[:i] for lit in literals for i in range(1, len(lit))),
            max((len(lit) for lit in literals), default=1) - 1,
            re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in firsts) + b"]") if firsts else None)


class Window:
    """Finds literals (a compiled alternation of them) in a stream of chunks cut anywhere."""

    __slots__ = ("regex", "prefixes", "keep", "first", "tail")

    def __init__(self, regex, starts):
        self.regex = regex
        self.prefixes, self.keep, self.first = starts
        self.tail = b""

    def held(self, data):
        """Length of the longest end of data that is the start of a literal (to wait for more data)."""
        if self.first is None:
            return 0
        end = len(data)
        # Only where a literal's first byte is can one of them start (leftmost is longest).
        for match in self.first.finditer(data, max(end - self.keep, 0)):
            if data[match.start():] in self.prefixes:
                return end - match.start()
        return 0

    def feed(self, chunk, last=False):
        """(data ready to go on, matches found in it). The rest waits in self.tail for the next chunk."""
        data = self.tail + chunk if self.tail else chunk
        cut = len(data) if last else len(data) - self.held(data)
        # One regex over the chunk: a pre-test with `in` per literal looked cheaper but is up to 15
        # times slower on some bodies (a long run of one byte).
        matches = []
        for match in self.regex.finditer(data):
            if match.start() >= cut:
                break
            matches.append(match)
        if matches:
            cut = max(cut, matches[-1].end())
        self.tail = data[cut:]
        return data[:cut], matches


class Counter:
    """Passes every chunk on as it is; counts the bytes into meta[key]."""

    __slots__ = ("meta", "key")

    def __init__(self, meta, key):
        self.meta = meta
        self.key = key
        meta[key] = 0

    def __call__(self, chunk):
        self.meta[self.key] += len(chunk)
        return chunk


class RequestBody:
    """A request body on its way upstream: nothing from the chunk that completes a placeholder on.

    ``refusal`` becomes the set of secret names found; guard.py then stops the request. A body in
    a content encoding is also decoded (only to look: the encoded bytes are what goes on).
    """

    def __init__(self, secrets, meta, encoding=None):
        self.secrets = secrets
        self.meta = meta
        meta["request_bytes"] = 0
        self.raw = Window(secrets.placeholder_re, secrets.placeholder_starts)
        self.decoder = make_decoder(encoding) if encoding else None
        self.decoded = Window(secrets.placeholder_re, secrets.placeholder_starts) if self.decoder else None
        self.refusal = None
        self.acted = False
        self.finished = False

    def _found(self, matches):
        if matches:
            names = {self.secrets.by_placeholder[m.group(0)].name for m in matches}
            self.refusal = (self.refusal or set()) | names

    def __call__(self, chunk):
        if self.finished or self.refusal is not None:
            return []
        if not chunk:
            return self.finish()
        try:
            return self._pass(chunk) or []
        except Exception as exc:  # pylint: disable=broad-except
            self.refusal = (self.refusal or set()) | {"(internal error: %s)" % type(exc).__name__}
            return []

    def _pass(self, chunk):
        ready, matches = self.raw.feed(chunk)
        self._found(matches)
        if self.decoder is not None:
            self._look_decoded(chunk, last=False)
        if self.refusal is not None:
            return []
        self.meta["request_bytes"] += len(ready)
        return ready

    def _look_decoded(self, chunk, last):
        try:
            pieces = self.decoder.decode(chunk) if chunk else self.decoder.flush()
        except Exception:  # pylint: disable=broad-except
            # Undecodable: what the encoding hides cannot be checked, so it does not go on.
            self.refusal = (self.refusal or set()) | {"(undecodable body)"}
            return
        for piece in pieces:
            self._found(self.decoded.feed(piece)[1])
        if last:
            self._found(self.decoded.feed(b"", last=True)[1])

    def finish(self, trailers=None):
        """The end of the body: look at what was held back and at the trailers; return what is left to send."""
        if self.finished or self.refusal is not None:
            return []
        self.finished = True
        ready, matches = self.raw.feed(b"", last=True)
        self._found(matches)
        if self.decoder is not None:
            self._look_decoded(b"", last=True)
        if trailers:
            for name, value in trailers.fields:
                self._found(list(self.secrets.placeholder_re.finditer(name + b":" + value)))
        if self.refusal is not None:
            return []
        self.meta["request_bytes"] += len(ready)
        return [ready] if ready else []


class ResponseBody:
    """A response body on its way to the agent: real secret values replaced by their masks.

    With a decoder the body is decoded on the fly and goes on uncompressed (the addon removes the
    Content-Encoding header). ``refusal`` is set when the body cannot be decoded; guard.py then
    cuts the response off rather than let unchecked bytes through.
    """

    def __init__(self, secrets, meta, decoder=None):
        self.secrets = secrets
        self.meta = meta
        meta["bytes"] = 0
        self.window = Window(secrets.value_re, secrets.value_starts)
        self.decoder = decoder
        self.refusal = None
        self.acted = False

    def __call__(self, chunk):
        self.meta["bytes"] += len(chunk)
        if self.refusal is not None:
            return []
        try:
            return self._pass(chunk) or []
        except Exception as exc:  # pylint: disable=broad-except
            # Not one byte goes on unchecked (the type only: a message could quote the body).
            self.refusal = "internal error while checking the body (%s)" % type(exc).__name__
            return []

    def _pass(self, chunk):
        last = not chunk
        if self.decoder is None:
            pieces = [chunk]
        else:
            try:
                pieces = self.decoder.flush() if last else self.decoder.decode(chunk)
            except Exception:  # pylint: disable=broad-except
                self.refusal = "the %s body cannot be decoded, so it cannot be checked for secrets" % self.decoder.name
                return []
        out = []
        for piece in pieces:
            out.append(self._mask(piece, False))
        if last:
            out.append(self._mask(b"", True))
        return b"".join(out)

    def _mask(self, piece, last):
        ready, matches = self.window.feed(piece, last)
        if not matches:
            return ready
        out, pos = [], 0
        by_value = self.secrets.by_value
        for match in matches:
            out.append(ready[pos:match.start()])
            out.append(by_value[match.group(0)].mask)
            pos = match.end()
        out.append(ready[pos:])
        names = self.meta.setdefault("masked_names", [])
        for match in matches:
            name = by_value[match.group(0)].name
            if name not in names:
                names.append(name)
        self.meta["masked"] = True
        return b"".join(out)


# ---- decoders: decode(chunk) -> list of bytes, flush() -> list of bytes

class _Zlib:
    def __init__(self, name, wbits):
        self.name = name
        self.wbits = wbits
        self.obj = None

    def decode(self, chunk):
        if self.obj is None:
            wbits = self.wbits
            if wbits is None:   # deflate: RFC 9110 says zlib format, some servers send raw deflate
                wbits = zlib.MAX_WBITS if len(chunk) >= 2 and (chunk[0] & 0x0F) == 8 \
                    and ((chunk[0] << 8) | chunk[1]) % 31 == 0 else -zlib.MAX_WBITS
            self.obj = zlib.decompressobj(wbits)
        pieces = []
        data = chunk
        while data:
            piece = self.obj.decompress(data, _PIECE)
            if piece:
                pieces.append(piece)
            data = self.obj.unconsumed_tail
            if self.obj.eof:
                break
        return pieces

    def flush(self):
        if self.obj is None:
            return []
        rest = self.obj.flush()
        return [rest] if rest else []


class _Brotli:
    name = "br"

    def __init__(self):
        self.obj = brotli.Decompressor()

    def decode(self, chunk):
        piece = self.obj.process(chunk)
        return [piece] if piece else []

    def flush(self):
        return []


class _Zstd:
    name = "zstd"

    def __init__(self):
        self.obj = zstandard.ZstdDecompressor().decompressobj()

    def decode(self, chunk):
        piece = self.obj.decompress(chunk)
        return [piece] if piece else []

    def flush(self):
        return []


def make_decoder(encoding):
    """A streaming decoder for one Content-Encoding, or None when there is none for it."""
    name = (encoding or "").strip().lower()
    if name in ("gzip", "x-gzip"):
        return _Zlib(name, 16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _Zlib(name, None)
    if name == "br" and brotli is not None:
        return _Brotli()
    if name == "zstd" and zstandard is not None:
        return _Zstd()
    return None
