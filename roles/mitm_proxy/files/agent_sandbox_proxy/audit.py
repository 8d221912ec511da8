# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JSON-lines audit log: one line per CONNECT, request or refused connection."""
from __future__ import annotations

import json
import logging
import os
import stat
import time

LOG = logging.getLogger(__name__)


class AuditLog:
    """JSON lines, mode 0640, renamed to FILE.1 (FILE.1 to FILE.2, ...) when over max_bytes."""

    def __init__(self):
        self.path = None
        self.fd = None
        self.ino = None
        self.size = 0
        self.max_bytes = 50 * 1024 * 1024
        self.backups = 5
        self._last_error = 0.0

    def open(self, path, max_bytes, backups):
        self.close()
        self.path, self.max_bytes, self.backups = path or None, max_bytes, max(1, backups)
        if self.path:
            self._open()

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) != 0o640 and st.st_uid == os.geteuid():
                os.fchmod(fd, 0o640)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.ino, self.size = fd, st.st_ino, st.st_size

    @property
    def broken(self):
        return self.path is not None and self.fd is None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None

    def reopen_if_moved(self):
        """Follow an outside rotation (file renamed or removed); retry a failed open."""
        if not self.path:
            return
        try:
            moved = os.stat(self.path).st_ino != self.ino
        except OSError:
            moved = True
        if moved or self.fd is None:
            try:
                self.close()
                self._open()
            except OSError as exc:
                self._complain("cannot open audit log %s: %s" % (self.path, exc.strerror or exc))

    def write(self, record):
        if not self.path:
            return
        line = (_ENCODE(record) + "\n").encode("utf-8")
        try:
            if self.fd is None:
                self._open()
            if self.size and self.size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self.fd, line)
            self.size += len(line)
        except OSError as exc:
            self._complain("cannot write audit log %s: %s" % (self.path, exc.strerror or exc))

    def _rotate(self):
        self.close()
        for i in range(self.backups - 1, 0, -1):
            older = "%s.%d" % (self.path, i)
            if os.path.exists(older):
                os.replace(older, "%s.%d" % (self.path, i + 1))
        os.replace(self.path, self.path + ".1")
        self._open()

    def _complain(self, message):
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            LOG.error("agent-sandbox: %s", message)


_SECOND = [None, ""]


def timestamp():
    """UTC time with milliseconds, e.g. 2026-05-02T10:31:07.412Z (the seconds part is cached)."""
    now = time.time()
    second = int(now)
    if _SECOND[0] != second:
        _SECOND[0], _SECOND[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return "%s.%03dZ" % (_SECOND[1], int((now - second) * 1000))


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
