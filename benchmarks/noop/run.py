# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a `site.yml` rerun that changes nothing takes, one checkout against another. Not a test:
it prints figures (see README.md; figures of record in docs/benchmarks.md).

    python benchmarks/noop/run.py OLD_CHECKOUT OLD_CONTAINER NEW_CHECKOUT NEW_CONTAINER [--rounds 3]

Each checkout reruns its own site.yml (through its tests/demo inventory) on the container it set up,
in turn, every round in the other order. Prints each run's wall time, tasks and changes, then the
median wall time of each and the ratio new/old.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time


def rerun(checkout, container):
    env = dict(os.environ, ANSIBLE_CONFIG=str(pathlib.Path(checkout) / "ansible.cfg"), ANSIBLE_PIPELINING="True")
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", "tests/demo/inventory", "-e", "ansible_host=%s" % container, "site.yml"],
                          cwd=checkout, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", proc.stdout)
    if proc.returncode != 0 or not recap:
        sys.exit("%s on %s failed (rc %d): %s" % (checkout, container, proc.returncode, proc.stdout[-3000:]))
    return {"seconds": seconds, "tasks": len(re.findall(r"^TASK \[", proc.stdout, re.M)),
            "ok": int(recap.group(1)), "changed": int(recap.group(2)), "skipped": int(recap.group(5))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("old_checkout")
    parser.add_argument("old_container")
    parser.add_argument("new_checkout")
    parser.add_argument("new_container")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"old": (args.old_checkout, args.old_container), "new": (args.new_checkout, args.new_container)}
    times = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for name in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
            result = rerun(*sides[name])
            times[name].append(result["seconds"])
            print("round %d %s: %.1f s, %d task headers, ok=%d changed=%d skipped=%d" % (
                round_ + 1, name, result["seconds"], result["tasks"], result["ok"], result["changed"], result["skipped"]),
                flush=True)
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print("median: old %.1f s, new %.1f s, new/old %.2f" % (old, new, new / old))


if __name__ == "__main__":
    main()
