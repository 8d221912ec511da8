# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-run on macOS, rendered from sandbox_user's template as the role renders it: it starts no agent
unless host_firewall's check (run as root through sudo) says pf confines it, and it wraps the agent
in the Seatbelt profile that denies the mDNSResponder socket. On Linux the file is what it was.

`sudo` and `id` here are stand-ins that record argv: `sudo -n CHECK...` runs CHECK (the real loader
against the pfctl stand-in), `sudo -H -u AGENT -- ...` records what would run as the agent."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.launchd_harness import FakeLaunchctl
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.pf_harness import FakePfctl
from ansible_collections.agent_sandbox.native.tests.unit.roles.darwin_scripts import ROOT, DarwinFirewall

SANDBOX_USER = ROOT / "roles" / "sandbox_user"
PROFILE = '(version 1)(allow default)(deny network-outbound (remote unix-socket (path-literal ' \
          '"/private/var/run/mDNSResponder")))'


def render(name, system, **extra):
    variables = dict(yaml.safe_load((SANDBOX_USER / "defaults" / "main.yml").read_text()),
                     ansible_facts={"system": system}, ansible_managed="managed",
                     sandbox_user_agents=[{"name": "agent", "port": 8080}], sandbox_user_admin="admin",
                     __sandbox_user_shell="/bin/zsh", __sandbox_user_runas_alias="AGENT_SANDBOX_AGENTS")
    variables.update(yaml.safe_load((SANDBOX_USER / "vars" / "main.yml").read_text()) if system == "Linux" else
                     yaml.safe_load((SANDBOX_USER / "vars" / "Darwin.yml").read_text()))
    variables.update(extra)
    return Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template((SANDBOX_USER / "templates" / name).read_text()))


@pytest.fixture
def mac(monkeypatch, tmp_path):
    firewall = DarwinFirewall(tmp_path, FakePfctl(monkeypatch, tmp_path / "pf"),
                              FakeLaunchctl(monkeypatch, tmp_path / "launchd"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sudo.jsonl"
    (bin_dir / "sudo").write_text(
        '#!/bin/sh\nprintf \'%%s\\n\' "$(python3 -c \'import json,sys; print(json.dumps(sys.argv[1:]))\' "$@")" >> %s\n'
        'if [ "$1" = -n ]; then shift; exec "$@"; fi\nexit 0\n' % log)
    (bin_dir / "id").write_text('#!/bin/sh\n[ "$1 $2" = "-u agent" ] && echo 501 && exit 0\nexit 1\n')
    for tool in ("sudo", "id"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, __import__("os").environ["PATH"]))

    def agent_run(*args, **extra):
        script = tmp_path / "agent-run"
        script.write_text(render("agent-run.sh.j2", "Darwin", __sandbox_user_pf_check=str(firewall.loader), **extra))
        script.chmod(0o755)
        if log.exists():
            log.unlink()
        proc = subprocess.run([str(script)] + list(args), capture_output=True, text=True, check=False)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return proc.returncode, proc.stderr, calls

    firewall.agent_run = agent_run
    return firewall


def test_refuses_while_pf_does_not_confine_the_agent(mac):
    rc, stderr, calls = mac.agent_run("id", "-un")
    assert rc == 1
    assert "pf does not confine agent (uid 501) now, so it was not started" in stderr
    assert calls == [["-n", str(mac.loader), "--check", "501"]], "never sudo -u agent"


def test_starts_the_agent_in_the_seatbelt_profile_when_pf_confines_it(mac):
    mac.launchctl("bootstrap", "system", mac.plist)
    rc, stderr, calls = mac.agent_run("id", "-un")
    assert (rc, stderr) == (0, "")
    assert calls[0] == ["-n", str(mac.loader), "--check", "501"]
    assert calls[1][:7] == ["-H", "-u", "agent", "--", "/usr/bin/sandbox-exec", "-p", PROFILE]
    assert calls[1][7:9] == ["/bin/sh", "-c"]
    assert calls[1][-2:] == ["id", "-un"]


def test_refuses_again_after_pfctl_d_until_the_watchdog_ran(mac):
    mac.launchctl("bootstrap", "system", mac.plist)
    mac.pfctl("-d")
    assert mac.agent_run("true")[0] == 1
    mac.launchctl.fire("org.agent-sandbox.pf")
    assert mac.agent_run("true")[0] == 0


def test_login_shell_is_wrapped_too_and_the_profile_can_be_turned_off(mac):
    mac.launchctl("bootstrap", "system", mac.plist)
    dummy, dummy, calls = mac.agent_run()
    assert calls[1][4:7] == ["/usr/bin/sandbox-exec", "-p", PROFILE]
    dummy, dummy, calls = mac.agent_run("true", sandbox_user_seatbelt_deny_dns=False)
    assert calls[1][:6] == ["-H", "-u", "agent", "--", "/bin/sh", "-c"]


def test_linux_agent_run_and_sudoers_have_no_macos_part():
    for name in ("agent-run.sh.j2", "sudoers.j2"):
        text = render(name, "Linux")
        assert "sandbox-exec" not in text and "--check" not in text and "pf" not in text.split()
    assert render("sudoers.j2", "Darwin").splitlines()[-1] == \
        "admin ALL=(root) NOPASSWD: /opt/agent-sandbox/libexec/agent-sandbox-pf-load --check *"


def test_the_profile_is_the_one_documented():
    assert PROFILE in (ROOT / "docs" / "macos.md").read_text()
    assert pathlib.Path(SANDBOX_USER / "templates" / "agent-run.sh.j2").read_text().count(PROFILE) == 1
