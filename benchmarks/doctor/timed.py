# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one doctor file (`agent-sandbox doctor --json`) and time it and each of its checks.

Copied into the container by run.py and run there as the admin (or root):
    python3 timed.py /path/to/agent_sandbox_doctor.py [doctor options]
Prints one JSON object: wall seconds, the doctor's exit code, passed/failed counts, and per
check method (outermost call per thread, per agent) its seconds. Wraps the Doctor class's
methods without changing the file, so any version of the doctor can be timed the same way.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import sys
import threading
import time

# Plumbing, not checks: not timed on their own.
NOT_CHECKS = {"as_agent", "as_agent_all", "record", "run", "isolated", "close", "checks"}


def load(path):
    spec = importlib.util.spec_from_file_location("agent_sandbox_doctor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    module = load(sys.argv[1])
    times, lock, depth = [], threading.Lock(), threading.local()

    def timed(name, method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            outer = not getattr(depth, "n", 0)
            depth.n = getattr(depth, "n", 0) + 1
            start = time.monotonic()
            try:
                return method(self, *args, **kwargs)
            finally:
                depth.n -= 1
                if outer:
                    with lock:
                        times.append({"agent": self.agent, "check": name, "seconds": time.monotonic() - start})
        return wrapper

    for name, method in list(vars(module.Doctor).items()):
        if callable(method) and not name.startswith("_") and name not in NOT_CHECKS:
            setattr(module.Doctor, name, timed(name, method))
    out = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out):
        rc = module.main(["doctor", "--json"] + sys.argv[2:])
    wall = time.monotonic() - start
    report = json.loads(out.getvalue())
    print(json.dumps({"wall": wall, "rc": rc, "passed": report["passed"], "failed": report["failed"],
                      "failures": [r for r in report["results"] if r["status"] != "PASS"], "checks": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
