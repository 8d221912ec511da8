# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifier helper: apply a role once per bad-input case, to every host, in one ansible-playbook run.

Each case is a play with the case's settings as play vars around the scenario's
own case task file, which rescues the role's failure (so the host stays in the
next case's play) and adds the case to a per-host report fact. A last play writes
each host's report to a file. One run instead of one per case and host keeps the
verify step short; the scenarios' tests then check every case on every host.
"""
from __future__ import annotations

import json
import os
import subprocess


def run_cases(workdir, title, cases, case_tasks, report_var, gather_first=False):
    """cases: [(case name, play vars)]. Returns ({host: report}, ansible-playbook's output).

    The run must end with rc 0: every failure of the role is rescued, so any
    other failure (a broken case file, an unreachable host) fails the caller.
    """
    plays = [{
        "name": "%s: %s" % (title, case),
        "hosts": "all",
        # The roles gather the few facts they need themselves (system, os_family).
        "gather_facts": gather_first and index == 0,
        "gather_subset": ["min"],
        "vars": play_vars,
        "tasks": [{"ansible.builtin.import_tasks": case_tasks}],
    } for index, (case, play_vars) in enumerate(cases)]
    plays.append({"name": "Write the report", "hosts": "all", "gather_facts": False, "tasks": [{
        "name": "Write the report",
        "delegate_to": "localhost",
        "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % report_var, "mode": "0600",
                                 "dest": "%s/{{ inventory_hostname }}.json" % workdir},
    }]})
    playbook = workdir / "cases.yml"
    playbook.write_text(json.dumps(plays))
    proc = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
                          capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return {path.stem: json.loads(path.read_text()) for path in workdir.glob("*.json")}, output
