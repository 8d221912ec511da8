# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox egress policy for mitmproxy: host allowlist, secret injection, audit log.

    python -m agent_sandbox_proxy --mitmdump [mitmdump arguments]   # mitmdump with the addon built in
    python -m agent_sandbox_proxy --check-policy FILE | --check-secrets FILE   # exit 0, or 2 and why

Modules: hosts (host names and the pattern index), policy (the policy file and decisions),
secrets (the secrets file, injection and masking), audit (the audit log), messages (what the
agent is told), addon (the mitmproxy hooks). Only messages and addon import mitmproxy, so the
validators run with any Python 3.8+. The file formats are in docs/proxy-policy.md.
"""
