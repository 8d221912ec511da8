# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifier helpers for the scenarios whose tests drive the playbooks themselves (fleet,
lifecycle): run a playbook as a user would, and read the doctor's report on a host."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

# Checks the doctor must have run on a finished host: a report without them proves nothing.
# The first release's doctor knew the first set (the lifecycle scenario installs it first).
REQUIRED_0_1 = {
    "no privileged groups", "no sudo", "direct IPv4 TCP blocked", "direct IPv4 UDP blocked",
    "loopback service blocked", "proxy reachable", "allowed host reachable through the proxy",
    "blocked host gets the policy 403", "placeholder sent to a wrong host refused",
    "protected file unreadable", "unit enabled and active",
}
REQUIRED = REQUIRED_0_1 | {
    "start guard in PAM", "agent starts in its slice", "agent's resource limits set",
    "firewall reloads keep the agents' table", "only its owner writes each repository's .git",
    # Checks of the host, run once (with the first agent).
    "admin's git refuses the agents' repositories", "admin's git ignores planted bare repositories",
    "admin's view of the share follows no link",
}


def run_playbook(log, playbook, *args, checkout):
    """Run `ansible-playbook -i <scenario inventory> ARGS PLAYBOOK` from checkout with its own
    ansible.cfg (its collection link), like a user would; write the output to log.
    Returns (rc, output, {host: {changed, failed, unreachable}} from the last recap)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH"))}
    env["ANSIBLE_CONFIG"] = str(Path(checkout) / "ansible.cfg")
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    env["ANSIBLE_PIPELINING"] = "True"  # as in the other scenarios (molecule/shared/config.yml)
    env["ANSIBLE_NOCOLOR"] = "1"
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    cmd = ["ansible-playbook", "-i", inventory, *args, str(playbook)]
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    Path(log).write_text(out)
    recap = {m.group(1): {"changed": int(m.group(3)), "unreachable": int(m.group(4)), "failed": int(m.group(5))}
             for m in RECAP.finditer(out.split("PLAY RECAP")[-1])}
    return proc.returncode, out, recap


def doctor(host, required=None):
    """Run agent-sandbox doctor as the admin on host; every required check (default REQUIRED) ran and
    every check passed."""
    required = REQUIRED if required is None else required
    out = host.run("runuser -u admin -- agent-sandbox doctor --json")
    assert out.stdout.strip().startswith("{"), out.stdout + out.stderr
    data = json.loads(out.stdout)
    ran = {r["check"] for r in data["results"]}
    # A toolchain the host does not have is a SKIP (the doctor's CA trust checks); anything else must pass.
    failed = [r for r in data["results"] if r["status"] != "PASS"
              and not (r["status"] == "SKIP" and r["check"].endswith(" trusts the proxy CA"))]
    assert required <= ran, required - ran
    assert failed == [] and out.rc == 0, json.dumps(failed, indent=1)
    return data
