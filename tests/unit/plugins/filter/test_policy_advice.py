# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""policy_advice: what is allowed but almost always a mistake; nothing for a careful allowlist."""
from __future__ import annotations

from ansible_collections.agent_sandbox.native.plugins.filter.policy_advice import policy_advice

SECRET = {"name": "api", "hosts": ["api.example.com"], "value": "never-read"}


def test_a_careful_allowlist_gets_no_advice():
    rules = ["pypi.org", {"host": "api.example.com", "methods": ["POST"], "paths": ["/v1/messages"]}]
    assert policy_advice(rules, [SECRET]) == []


def test_secret_for_a_host_no_rule_allows():
    advice = policy_advice(["pypi.org"], [SECRET])
    assert advice == ["secret api is for api.example.com, which no rule allows (mitm_proxy_allowlist): it can never be sent"]


def test_secret_for_a_host_whose_rule_is_open():
    advice = policy_advice([{"host": "*.example.com"}], [SECRET])
    assert len(advice) == 1 and "allows every method and path" in advice[0] and "secret api" in advice[0]


def test_unusual_method():
    advice = policy_advice([{"host": "pypi.org", "methods": ["GTE", "GET"]}])
    assert advice == ["mitm_proxy_allowlist[0] (pypi.org) allows the method(s) GTE, which usual clients do not send: misspelt?"]


def test_shadowed_rules():
    rules = [{"host": "api.example.com", "methods": ["GET"]}, {"host": "*.example.com"}, "pypi.org", "pypi.org",
             {"host": "other.example.com", "ports": [8443]}]
    advice = policy_advice(rules)
    assert any(a.startswith("mitm_proxy_allowlist[0] (api.example.com) changes nothing: mitm_proxy_allowlist[1]")
               for a in advice)
    assert any(a.startswith("mitm_proxy_allowlist[3] (pypi.org) changes nothing: mitm_proxy_allowlist[2]") for a in advice)
    assert not any(a.startswith("mitm_proxy_allowlist[2]") for a in advice)
    # Port 8443 is not in the wildcard's default ports: that rule adds something.
    assert not any(a.startswith("mitm_proxy_allowlist[4]") for a in advice)


def test_an_agent_profile_reports_only_its_own_entries():
    shared = [{"host": "x.org", "methods": ["GTE"]}]
    own = [{"host": "y.org"}]
    advice = policy_advice(shared + own, [SECRET, {"name": "mine", "hosts": ["z.org"]}],
                           where="mitm_proxy_agents[a].allowlist", own_from=1, own_secrets_from=1)
    assert advice == ["secret mine is for z.org, which no rule allows (mitm_proxy_agents[a].allowlist): it can never be sent"]
