#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the collection laid out as
# ansible_collections/agent_sandbox/native, which ansible-test requires.
#
# ansible-test bootstraps pip in its virtual environments with a get-pip script
# it downloads from a host we cannot reach; we put an offline stand-in in its
# cache that uses the interpreter's own ensurepip and then pip (given the host
# CA bundle) for the requested pip version.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv"
py=python3.11

cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
standin=$(cat <<'PY'
# Offline stand-in for ansible-test's get-pip bootstrap (agent-sandbox tests/sanity.sh).
import os, subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
bundle = "/etc/ssl/certs/ca-certificates.crt"
env = dict(os.environ)
if os.path.exists(bundle):
    env.setdefault("PIP_CERT", bundle)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env))
PY
)
# The pip version ansible-test bootstraps is the default in get_venv_packages().
ver=$(grep -A8 "def get_venv_packages" "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py \
  | sed -n "s/.*pip='\([0-9.]*\)'.*/\1/p" | head -n 1)
[ -n "$ver" ] || { echo "sanity: cannot tell which pip ansible-test bootstraps" >&2; exit 1; }
printf '%s\n' "$standin" >"$cache/get_pip_${ver//./_}.py"

work=$(mktemp -d /tmp/agent-sandbox-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/agent_sandbox/native"
mkdir -p "$dest"
# Copy what git tracks plus new, not-ignored files (skipping ones deleted in the
# working tree): what a clone of the next commit has.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard --deduplicate) | \
  (cd "$repo" && python3 -c 'import os, sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.lexists(p)))' | \
    xargs -0 cp -P --parents -t "$dest")
cd "$dest"
git init -q . && git add -A >/dev/null
PATH="$venv/bin:$PATH" ansible-test sanity --venv --python "${py#python}" --color no "$@"
