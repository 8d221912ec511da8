# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long `agent-sandbox doctor` takes on a live container, old version against new. Not a test:
it prints figures (see README.md; figures of record in docs/benchmarks.md).

    python benchmarks/doctor/run.py CONTAINER [--rounds 5] [--old REF] [--new PATH] [--as admin]

Copies timed.py, the doctor file at git REF (old) and the working tree's (new) into the container,
then runs each version's `doctor --json` in turn, every round in the other order, as the admin
(through runuser, as the Molecule verifiers do) or as root. Prints the median wall time and the
median seconds of each check per version and their ratio new/old.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCTOR = "roles/selftest/files/agent_sandbox_doctor.py"
DEST = "/usr/local/lib/agent-sandbox-bench"


def put(container, path, data, mode):
    subprocess.run(["docker", "exec", "-i", container, "sh", "-c",
                    'mkdir -p -m 0755 "$(dirname "$1")" && cat > "$1" && chmod %s "$1"' % mode, "put", path],
                   input=data, check=True)


def run_once(container, version, user, extra):
    cmd = ["docker", "exec", container]
    if user != "root":
        cmd += ["runuser", "-u", user, "--"]
    cmd += ["python3", "%s/timed.py" % DEST, "%s/%s/agent_sandbox_doctor.py" % (DEST, version)] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        sys.exit("%s doctor did not report (rc %d): %s" % (version, proc.returncode, (proc.stdout + proc.stderr)[-2000:]))


def ratio(new, old):
    return "%.2f" % (new / old) if old else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("container")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", default="main", help="git revision of the old doctor (default main)")
    parser.add_argument("--new", default=str(REPO / DOCTOR), help="the new doctor file (default the working tree's)")
    parser.add_argument("--as", dest="user", default="admin", help="run the doctor as this user (default admin; root: no runuser)")
    parser.add_argument("--quick", action="store_true", help="time `doctor --quick` instead")
    args = parser.parse_args()

    old = subprocess.run(["git", "show", "%s:%s" % (args.old, DOCTOR)], cwd=REPO, capture_output=True, check=True).stdout
    put(args.container, DEST + "/timed.py", (HERE / "timed.py").read_bytes(), "0644")
    put(args.container, DEST + "/old/agent_sandbox_doctor.py", old, "0644")
    put(args.container, DEST + "/new/agent_sandbox_doctor.py", pathlib.Path(args.new).read_bytes(), "0644")
    extra = ["--quick"] if args.quick else []

    runs = {"old": [], "new": []}
    for n in range(args.rounds):
        for version in (("old", "new") if n % 2 == 0 else ("new", "old")):
            res = run_once(args.container, version, args.user, extra)
            runs[version].append(res)
            print("round %d %s: %.2f s, rc %d, %d passed, %d failed%s" % (
                n + 1, version, res["wall"], res["rc"], res["passed"], res["failed"],
                "".join("\n    FAIL [%s] %s: %s" % (f["agent"], f["check"], f["happened"]) for f in res["failures"])),
                flush=True)

    def median(version, key):
        values = [sum(c["seconds"] for c in r["checks"] if (c["agent"], c["check"]) == key) for r in runs[version]]
        return statistics.median(values)

    keys = []
    for check in (c for res in runs["old"] + runs["new"] for c in res["checks"]):
        if (check["agent"], check["check"]) not in keys:
            keys.append((check["agent"], check["check"]))
    print("\n%d rounds on %s as %s%s; median seconds (per check: its own time; the new doctor runs them at once)"
          % (args.rounds, args.container, args.user, " (--quick)" if args.quick else ""))
    print("%-34s %8s %8s %9s" % ("check", "old", "new", "new/old"))
    for key in keys:
        o, n = median("old", key), median("new", key)
        print("%-34s %8.2f %8.2f %9s" % ("[%s] %s" % key, o, n, ratio(n, o)))
    o = statistics.median(r["wall"] for r in runs["old"])
    n = statistics.median(r["wall"] for r in runs["new"])
    print("%-34s %8.2f %8.2f %9s" % ("doctor, wall time", o, n, ratio(n, o)))
    print("%-34s %8s %8s" % ("wall time, min-max", "%.1f-%.1f" % (min(r["wall"] for r in runs["old"]), max(r["wall"] for r in runs["old"])),
                             "%.1f-%.1f" % (min(r["wall"] for r in runs["new"]), max(r["wall"] for r in runs["new"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
