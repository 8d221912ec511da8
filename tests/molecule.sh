#!/usr/bin/env bash
# make molecule: every scenario given as an argument, MOLECULE_JOBS of them at a time (default 2).
# Each scenario's containers carry its own name, and each runs with a HOME of its own, so that
# two Molecule runs never install the collection into the same cache at once. A scenario's
# output goes to its log; a failed scenario prints its last lines, no new one starts, and the
# run fails once the running ones have finished.
set -euo pipefail
jobs=${MOLECULE_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "MOLECULE_JOBS must be a whole number of at least 1, not '$jobs'" >&2; exit 2; }
logs=$(mktemp -d "${TMPDIR:-/tmp}/agent-sandbox-molecule.XXXXXX")
echo "== molecule: $# scenarios, $jobs at a time; logs in $logs"

scenario() {
  local name=$1 start
  start=$(date +%s)
  mkdir -p "$logs/home-$name"
  if HOME="$logs/home-$name" molecule test -s "$name" >"$logs/$name.log" 2>&1; then
    echo "== scenario $name took $(( $(date +%s) - start )) s"
  else
    echo "== scenario $name FAILED after $(( $(date +%s) - start )) s; the end of $logs/$name.log:"
    tail -n 200 "$logs/$name.log"
    return 1
  fi
}

failed=0
running=0
for name in "$@"; do
  if (( running >= jobs )); then
    wait -n || failed=1
    running=$(( running - 1 ))
  fi
  (( failed )) && break
  scenario "$name" &
  running=$(( running + 1 ))
done
while (( running > 0 )); do
  wait -n || failed=1
  running=$(( running - 1 ))
done
if (( failed )); then
  echo "molecule: a scenario failed (see above)"
  exit 1
fi
