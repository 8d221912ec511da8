# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every scenario's tests share (molecule/conftest.py puts this folder on the path).

as_user: run a command as a user, the way the claims about that user are checked.
refusals: apply a role once per bad-input case, to every host, in one ansible-playbook
run, from the verifier (never from converge, which check and idempotence run again).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parent


def as_user(host, user, command, login=False, umask=None, env=None, stdin=None):
    """Run command (a bash string) as user through runuser, which sets their groups (initgroups).
    login=True: a login shell (their profile, PATH and proxy settings); otherwise HOME is theirs
    and env (a mapping) is added. umask: the shell starts with it. stdin: one line of input."""
    script = ("umask %s; " % umask if umask else "") + command
    if login:
        cmd = "runuser -l %s -c %s" % (user, shlex.quote(script))
    else:
        extra = " ".join("%s=%s" % (key, shlex.quote(value)) for key, value in (env or {}).items())
        cmd = "runuser -u %s -- env HOME=/home/%s %s bash -c %s" % (user, user, extra, shlex.quote(script))
    if stdin is not None:
        cmd = "printf '%%s\\n' %s | %s" % (shlex.quote(stdin), cmd)
    return host.run(cmd)


def refusals(title, role, cases, state, gather=False):
    """Apply role (FQCN; `refusal_tasks_from` in a case's settings picks a task file) once per case on
    every host, in one ansible-playbook run. cases: {case: {setting: value}}. state: a shell
    command that prints what must not change; it is read before the first case and after each.
    The play's facts include ansible_facts.getent_passwd, for settings that name a uid.

    Returns {host: {case: {"failure": None or {"task", "result"}, "before", "after"}}} and the
    run's output under "output". The run itself must end with rc 0: every failure of the role is
    rescued (molecule/shared/refusal_case.yml), so any other failure fails the caller."""
    workdir = Path(tempfile.mkdtemp(prefix="refusals-"))
    plays = [{
        "name": "%s: %s" % (title, case),
        "hosts": "all",
        # The roles gather the few facts they need themselves (system, os_family).
        "gather_facts": gather and index == 0,
        "gather_subset": ["min"],
        "vars": dict(settings, refusal_case=case, refusal_role=role, refusal_state=state),
        "tasks": [{"ansible.builtin.import_tasks": str(SHARED / "refusal_case.yml")}],
    } for index, (case, settings) in enumerate(cases.items())]
    plays.append({"name": "Write the report", "hosts": "all", "gather_facts": False, "tasks": [{
        "name": "Write the report",
        "delegate_to": "localhost",
        "ansible.builtin.copy": {"content": "{{ refusal_report | to_json }}", "mode": "0600",
                                 "dest": "%s/{{ inventory_hostname }}.json" % workdir},
    }]})
    playbook = workdir / "cases.yml"
    playbook.write_text(json.dumps(plays))
    proc = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
                          capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    report = {path.stem: json.loads(path.read_text()) for path in workdir.glob("*.json")}
    report["output"] = output
    return report
