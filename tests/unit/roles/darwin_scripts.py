# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_firewall's macOS pieces, rendered from the role's own templates into a temporary tree and run
against the pfctl and launchctl stand-ins: the loader (boot, watchdog and the role's own run), its
--check mode (agent-run asks it), and the LaunchDaemon that runs it."""

from __future__ import annotations

import pathlib
import shlex
import subprocess

import jinja2
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
HOST_FIREWALL = ROOT / "roles" / "host_firewall"
ANCHOR = "com.apple/000.agent_sandbox"
LABEL = "org.agent-sandbox.pf"


def render(path, variables):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    return env.from_string(pathlib.Path(path).read_text()).render(**variables)


class DarwinFirewall:
    """The files the role writes on a Mac, under tmp_path, with pfctl = the stand-in."""

    def __init__(self, tmp_path, pfctl, launchctl, agents=({"name": "agent", "uid": 501, "port": 8080},),
                 loader_template=None):
        self.pfctl, self.launchctl = pfctl, launchctl
        root = tmp_path / "mac"
        for folder in ("etc", "libexec", "run", "log", "LaunchDaemons"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        defaults = yaml.safe_load((HOST_FIREWALL / "defaults" / "main.yml").read_text())
        self.vars = dict(defaults, host_firewall_agents=list(agents), __host_firewall_agents=list(agents),
                         __host_firewall_pf_anchor=ANCHOR,
                         __host_firewall_pf_rules_file=str(root / "etc" / "pf-anchor.conf"),
                         __host_firewall_pf_loader=str(root / "libexec" / "agent-sandbox-pf-load"),
                         __host_firewall_pf_token=str(root / "run" / "agent-sandbox-pf.token"),
                         __host_firewall_pf_log=str(root / "log" / "pf-load.log"),
                         __host_firewall_pfctl=pfctl.path,
                         __host_firewall_launchd_label=LABEL,
                         __host_firewall_launchd_plist=str(root / "LaunchDaemons" / (LABEL + ".plist")))
        self.rules = pathlib.Path(self.vars["__host_firewall_pf_rules_file"])
        self.loader = pathlib.Path(self.vars["__host_firewall_pf_loader"])
        self.token_file = pathlib.Path(self.vars["__host_firewall_pf_token"])
        self.log = pathlib.Path(self.vars["__host_firewall_pf_log"])
        self.plist = self.vars["__host_firewall_launchd_plist"]
        self.rules.write_text(render(HOST_FIREWALL / "templates" / "pf-anchor.conf.j2", self.vars))
        self.loader.write_text(render(loader_template or HOST_FIREWALL / "templates" / "agent-sandbox-pf-load.sh.j2",
                                      self.vars))
        self.loader.chmod(0o755)
        pathlib.Path(self.plist).write_text(render(HOST_FIREWALL / "templates" / "launchd.plist.j2", self.vars))

    def run_loader(self, *args):
        """The loader as the role (or agent-run through sudo) runs it: (rc, stdout, stderr)."""
        proc = subprocess.run([str(self.loader)] + list(args), capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def token(self):
        return self.token_file.read_text().strip() if self.token_file.exists() else None

    def tokens(self):
        return [ref["token"] for ref in self.pfctl.state()["references"]]

    def enabled(self):
        return self.pfctl.state()["enabled"]

    def log_lines(self):
        return self.log.read_text().splitlines() if self.log.exists() else []
