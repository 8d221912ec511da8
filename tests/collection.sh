#!/usr/bin/env bash
# Build the collection tarball, install it into a temporary collections path
# and use it from there: what users get is what we test, not the checkout.
#   - ansible-doc renders every module of ours
#   - ansible-doc -t role shows each role's argument spec
#   - ansible-playbook --syntax-check agent_sandbox.native.site passes
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/agent-sandbox-collection.XXXXXX)
trap 'rm -rf "$work"' EXIT

ansible-galaxy collection build --output-path "$work/dist" "$repo" >/dev/null
tarball=$(ls "$work"/dist/agent_sandbox-native-*.tar.gz)
tar -tzf "$tarball" >"$work/listing"
files=$(grep -vc '/$' "$work/listing")
echo "collection: $(basename "$tarball"): $(du -k "$tarball" | cut -f1) KiB, $files files"

# Nothing from the developer's tree may ship.
if grep -E '^(\.venv|\.collections|\.cache|\.ansible|\.config|\.ci|\.github|tests/output)(/|$)|(^|/)(__pycache__|\.pytest_cache|\.git)(/|$)' "$work/listing"; then
  echo "collection: the tarball carries development files (see above); fix build_ignore in galaxy.yml" >&2
  exit 1
fi

# Dependencies are the collections the `ansible` package bundles: found in the
# venv's site-packages, so --no-deps keeps Galaxy (unreachable) out of it.
cd "$work"
printf '[defaults]\n' >"$work/ansible.cfg"
export ANSIBLE_CONFIG="$work/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$work/collections"
ansible-galaxy collection install --no-deps -p "$work/collections" "$tarball" >/dev/null

modules=$(sed -n 's|^plugins/modules/\([a-z_]*\)\.py$|\1|p' "$work/listing" | sort)
for m in $modules; do
  ansible-doc "agent_sandbox.native.$m" >"$work/doc-$m.txt" 2>&1 || { cat "$work/doc-$m.txt"; echo "collection: ansible-doc $m failed" >&2; exit 1; }
  grep -q "EXAMPLES" "$work/doc-$m.txt" || { echo "collection: ansible-doc $m has no examples" >&2; exit 1; }
done
roles=$(sed -n 's|^roles/\([a-z_]*\)/meta/argument_specs.yml$|\1|p' "$work/listing" | sort)
for r in $roles; do
  ansible-doc -t role "agent_sandbox.native.$r" >"$work/role-$r.txt" 2>&1 || { cat "$work/role-$r.txt"; echo "collection: ansible-doc -t role $r failed" >&2; exit 1; }
done
if grep -qx 'playbooks/site.yml' "$work/listing"; then
  ansible-playbook -i localhost, --syntax-check agent_sandbox.native.site >/dev/null
  echo "collection: agent_sandbox.native.site passes --syntax-check"
fi
echo "collection: ansible-doc renders $(echo $modules | wc -w) modules and $(echo $roles | wc -w) roles from the installed tarball"
