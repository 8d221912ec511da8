# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter policy_advice: settings of the proxy that are allowed but almost always a mistake."""
from __future__ import annotations

DOCUMENTATION = r"""
name: policy_advice
short_description: Advice on an allowlist and its secrets that does not refuse them
version_added: 0.2.0
description:
  - Lists what is valid but almost always a mistake, for a run to show as a warning and for C(--check).
  - A secret for a host that no rule allows (it can never be injected).
  - A rule with a method no usual client sends (misspelt, or unusual).
  - A host that gets a secret while its rule allows every method and path (the secret goes with any request).
  - A rule that another rule makes pointless (same host, or under a wildcard, with fewer limits).
  - Only one profile at a time; run it once for the shared rules and once per agent.
options:
  _input:
    description: The rules (strings or mappings with C(host) and optional C(ports), C(methods), C(paths)).
    type: list
    elements: raw
    required: true
  secrets:
    description: The secrets (mappings with C(name) and C(hosts)); values are never read.
    type: list
    elements: dict
    default: []
  where:
    description: The name of the setting, for the messages.
    type: str
    default: mitm_proxy_allowlist
  own_from:
    description:
      - For an agent's profile (the shared rules followed by its own), the index of its first own rule; only
        findings that involve its own rules or secrets are given, the shared ones named as C(mitm_proxy_allowlist).
    type: int
    default: 0
  own_secrets_from:
    description: Likewise, the index of the agent's first own secret in O(secrets).
    type: int
    default: 0
author: agent-sandbox developers
"""

EXAMPLES = r"""
- name: Show advice on the allowlist
  ansible.builtin.debug:
    msg: "{{ mitm_proxy_allowlist | agent_sandbox.native.policy_advice(mitm_proxy_secrets) }}"
"""

RETURN = r"""
_value:
  description: One sentence per finding; empty when there is nothing to say.
  type: list
  elements: str
"""

USUAL_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _rules(rules):
    out = []
    for index, raw in enumerate(rules or []):
        rule = {"host": raw} if isinstance(raw, str) else raw
        if isinstance(rule, dict) and isinstance(rule.get("host"), str):
            out.append((index, rule, rule["host"].lower().rstrip(".")))
    return out


def _covers(pattern, host):
    """Whether rule host `pattern` reaches every name that `host` (a name or a pattern) reaches."""
    if pattern == host:
        return True
    if pattern.startswith("*."):
        return host.lstrip("*.").endswith("." + pattern[2:]) or host == "*." + pattern[2:]
    return False


def _open(rule):
    return not rule.get("methods") and not rule.get("paths")


def _ports(rule):
    return set(rule.get("ports") or (443, 80))


def policy_advice(rules, secrets=None, where="mitm_proxy_allowlist", own_from=0, own_secrets_from=0):
    rules = _rules(rules)
    secrets = [s for s in secrets or [] if isinstance(s, dict)]

    def name(index):
        return "mitm_proxy_allowlist[%d]" % index if index < own_from else "%s[%d]" % (where, index - own_from)

    advice = []
    for index, rule, host in rules:
        odd = sorted({str(m).upper() for m in rule.get("methods") or []} - USUAL_METHODS)
        if odd and index >= own_from:
            advice.append("%s (%s) allows the method(s) %s, which usual clients do not send: misspelt?"
                          % (name(index), host, ", ".join(odd)))
    for index, rule, host in rules:
        for other_index, other, other_host in rules:
            if other_index == index or not _covers(other_host, host) or not _open(other):
                continue
            if not _ports(rule) <= _ports(other) or max(index, other_index) < own_from:
                continue
            if other_host == host and _open(rule) and other_index > index:
                continue  # two identical open rules: report the later one only
            advice.append("%s (%s) changes nothing: %s (%s) already allows every method and path there"
                          % (name(index), host, name(other_index), other_host))
            break
    for secret_index, secret in enumerate(secrets):
        if secret_index < own_secrets_from:
            continue
        label = secret.get("name", "?")
        for target in secret.get("hosts") or []:
            if not isinstance(target, str):
                continue
            target = target.lower().rstrip(".")
            matching = [rule for _index, rule, host in rules if _covers(host, target)]
            if not matching:
                advice.append("secret %s is for %s, which no rule allows (%s): it can never be sent"
                              % (label, target, where if own_from else "mitm_proxy_allowlist"))
            elif any(_open(rule) for rule in matching):
                advice.append("secret %s goes to %s, whose rule allows every method and path: limit it with"
                              " methods or paths to the API calls that need the secret" % (label, target))
    return advice


class FilterModule:
    def filters(self):
        return {"policy_advice": policy_advice}
