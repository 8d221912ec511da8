#!/usr/bin/env bash
# make demo: the whole sandbox applied to a disposable Debian 12 container with
# systemd, through the real inventory mechanism (tests/demo/inventory), ending
# in the self-test report. `make demo-clean` removes the container.
# AGENT_SANDBOX_DEMO_NAME names the container (default agent-sandbox-demo), so that
# two demos can run side by side; `docker rm -f NAME` removes another name.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
name=${AGENT_SANDBOX_DEMO_NAME:-agent-sandbox-demo}
image=${MOLECULE_IMAGE_BOOKWORM:-agent-sandbox-molecule:bookworm}
cd "$repo"

if docker inspect "$name" >/dev/null 2>&1; then
  echo "demo: removing the previous demo container"
  docker rm -f "$name" >/dev/null
fi
echo "demo: starting $name from $image"
# The container is made exactly as the Molecule scenarios make theirs (molecule/shared/create.yml:
# systemd as PID 1 without --privileged, and empty package lists dated now, as on a freshly built
# image or a new cloud VM, whatever the image's age).
export ANSIBLE_CONFIG="$repo/ansible.cfg"
# The controller's own Python (.venv) talks to Docker, as under Molecule.
ansible-playbook -i localhost, -e "ansible_python_interpreter=$repo/.venv/bin/python" molecule/shared/create.yml \
  -e "{\"molecule_yml\": {\"platforms\": [{\"name\": \"$name\", \"image\": \"$image\"}]}}" \
  >"/tmp/$name-create.log" || { tail -n 40 "/tmp/$name-create.log"; exit 1; }
for _ in $(seq 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 1
done

# One `docker exec` per task instead of four, as in the Molecule scenarios.
export ANSIBLE_PIPELINING=True
# The inventory's host is agent-sandbox-demo; ansible_host points it at this container.
inv=(-i tests/demo/inventory -e "ansible_host=$name")
echo "demo: preparing a fake internet inside the container (allowed.test, blocked.test, api.secret.test)"
ansible-playbook "${inv[@]}" molecule/shared/fake_internet.yml >"/tmp/$name-prepare.log" ||
  { tail -n 40 "/tmp/$name-prepare.log"; exit 1; }
echo "demo: ansible-playbook ${inv[*]} site.yml"
start=$(date +%s)
ansible-playbook "${inv[@]}" site.yml >"/tmp/$name-site.log" ||
  { tail -n 60 "/tmp/$name-site.log"; exit 1; }
grep -A3 'PLAY RECAP' "/tmp/$name-site.log" | tail -n 2
echo "demo: site.yml took $(( $(date +%s) - start )) s (log: /tmp/$name-site.log)"
echo
echo "demo: agent-sandbox doctor (run by the admin, acting as the agent)"
rc=0
docker exec "$name" runuser -u admin -- agent-sandbox doctor || rc=$?
cat <<MSG

A shell as the agent inside the demo container:
  docker exec -it $name runuser -u admin -- agent-run
Try: curl https://allowed.test/   curl https://blocked.test/   curl https://1.1.1.1/
Remove the demo: make demo-clean
MSG
exit "$rc"
