"""Bad policy and secrets files give one clear error (and exit 2 from the validator); the index scales."""
import random
import re
import subprocess

import pytest

from agent_sandbox_proxy.__main__ import main
from agent_sandbox_proxy.hosts import NAME, HostIndex, classify_host
from agent_sandbox_proxy.policy import PolicyError, load_policy, parse_pattern, parse_policy
from agent_sandbox_proxy.secrets import parse_secrets
from proxy_helpers import PLACEHOLDER, POLICY, SECRET, SECRETS, package_command, write_json

GOOD_SECRET = SECRETS["secrets"][0]


@pytest.mark.parametrize("rules,message", [
    ([{"host": "https://example.com/"}], "looks like a URL"),
    ([{"host": "*"}], "would allow every host"),
    ([{"host": "a.*.example.com"}], "only allowed as the whole first label"),
    ([{"host": "*.127.0.0.1"}], "plain ASCII DNS suffix"),
    ([{"host": "*.example.com."}], "plain ASCII DNS suffix"),
    ([{"host": "example.com:443"}], "put the port in 'ports'"),
    ([{"host": ""}], "non-empty string"),
    ([{"host": "exa mple.com"}], "is not a host name"),
    ([{"host": "example.com", "ports": [0]}], "not a port number"),
    ([{"host": "example.com", "ports": ["443"]}], "not a port number"),
    ([{"host": "example.com", "ports": []}], "non-empty list of port numbers"),
    ([{"host": "example.com", "methods": ["GET X"]}], "not an HTTP method"),
    ([{"host": "example.com", "methods": []}], "non-empty list"),
    ([{"host": "example.com", "paths": ["v1"]}], "must start with '/'"),
    ([{"host": "example.com", "paths": ["/a/../b"]}], "'..' segments"),
    ([{"host": "example.com", "path": ["/v1"]}], "unknown key 'path' (did you mean 'paths'?)"),
    ([{"hots": "example.com"}], "unknown key 'hots' (did you mean 'host'?)"),
    ([{"host": "*.github.io", "trust_every_owner_below": "yes"}], "trust_every_owner_below: must be true or false"),
    ([{"ports": [443]}], "missing 'host'"),
    ([42], "must be a JSON object"),
])
def test_malformed_rules(rules, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_policy({"rules": rules})


@pytest.mark.parametrize("doc,message", [
    ({"version": 2}, "unsupported version"),
    ({"rule": []}, "unknown key 'rule'"),
    ({"listeners": {"http": {"rules": []}}}, "not a port number"),
    ({"listeners": {"8081": {"rules": [], "secrets": []}}}, "unknown key 'secrets'"),
    ({"listeners": {"8081": {}}}, "missing 'rules'"),
    ({"block_hint": "two\nlines"}, "one line"),
    ([], "must be a JSON object"),
])
def test_malformed_policies(doc, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(doc)


def test_rule_errors_say_where(tmp_path):
    path = write_json(tmp_path / "p.json", {"rules": ["ok.example"], "listeners": {"8081": {"rules": ["a", {"host": "*"}]}}})
    with pytest.raises(PolicyError, match=r"listeners\.8081\.rules\[1\]\.host"):
        load_policy(str(path))


def test_json_problems(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"rules": [], "rules": ["x.example"]}')
    with pytest.raises(PolicyError, match="duplicate key 'rules'"):
        load_policy(str(path))
    path.write_text('{"rules": [}')
    with pytest.raises(PolicyError, match="invalid JSON at line 1 column 12"):
        load_policy(str(path))
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(str(tmp_path / "missing.json"))


def secret(**changes):
    entry = dict(GOOD_SECRET)
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize("entries,message", [
    ([secret(hosts=[])], "needs at least one host"),
    ([secret(hosts=None)], "missing 'hosts'"),
    ([secret(hosts=["https://api.github.com"])], "looks like a URL"),
    ([secret(placeholder="short")], "at least 8 visible ASCII"),
    ([secret(placeholder="has space here")], "at least 8 visible ASCII"),
    ([secret(value="")], "value: must be a non-empty single line"),
    ([secret(value=SECRET + "\r\nX-Injected: 1")], "value: must be a non-empty single line"),
    ([secret(header="Authorization Bearer {secret}")], "header: must look like"),
    ([secret(header="Authorization: Bearer")], "with {secret} once"),
    ([secret(header="Bad Header: {secret}")], "with {secret} once"),
    ([secret(name="has space")], "name: must be 1-64"),
    ([secret(), secret(name="two")], "placeholder is also used by secrets\\[0\\]"),
    ([secret(), secret(name="two", placeholder=PLACEHOLDER + "_more")], "part of the placeholder"),
    ([secret(), secret(name="github", placeholder="ANOTHER_PLACEHOLDER_1")], "name 'github' is used twice"),
    ([secret(value="x" + PLACEHOLDER + "x")], "placeholder and value overlap"),
    ([secret(), secret(name="two", placeholder="ANOTHER_PLACEHOLDER_1", value="pre-" + PLACEHOLDER)],
     "overlaps the value"),
    ([secret(token="x")], "unknown key 'token'"),
])
def test_malformed_secrets(entries, message):
    with pytest.raises(PolicyError, match=message) as err:
        parse_secrets({"secrets": entries})
    assert SECRET not in str(err.value)


def test_placeholders_collide_across_listener_scopes():
    doc = {"secrets": [secret()], "listeners": {"8081": {"secrets": [secret(name="scoped")]}}}
    with pytest.raises(PolicyError, match="placeholder is also used"):
        parse_secrets(doc)


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_validators(tmp_path, capsys):
    good = write_json(tmp_path / "policy.json", POLICY)
    code, out = run_cli(capsys, "--check-policy", str(good))[:2]
    assert code == 0 and "valid policy: 12 rules, 1 listener profiles" in out
    bad = write_json(tmp_path / "bad.json", {"rules": [{"host": "*"}]})
    code, dummy, err = run_cli(capsys, "--check-policy", str(bad))
    assert code == 2
    assert err.strip() == "%s: rules[0].host: a bare '*' would allow every host; list the hosts instead" % bad
    secrets = write_json(tmp_path / "secrets.json", SECRETS)
    code, out = run_cli(capsys, "--check-secrets", str(secrets))[:2]
    assert code == 0 and "3 secrets" in out
    bad = write_json(tmp_path / "bad-secrets.json", {"secrets": [secret(), secret(name="b")]})
    code, out, err = run_cli(capsys, "--check-secrets", str(bad))
    assert code == 2 and "placeholder is also used" in err
    assert SECRET not in out + err
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_cli_without_mitmproxy(tmp_path):
    """The validators need no mitmproxy (exit codes 0 and 2); --mitmdump without it refuses to start."""
    good = write_json(tmp_path / "policy.json", POLICY)
    bad = write_json(tmp_path / "bad.json", {"rules": "x"})
    for args, expected in ((["--check-policy", str(good)], 0), (["--check-policy", str(bad)], 2), (["--mitmdump"], 2)):
        argv, env = package_command()
        code = ("import sys; sys.modules['mitmproxy'] = None; sys.argv = ['x'] + %r; "
                "import runpy; runpy.run_module('agent_sandbox_proxy', run_name='__main__', alter_sys=True)" % (args,))
        result = subprocess.run([argv[0], "-c", code], capture_output=True, text=True, check=False, env=env)
        assert result.returncode == expected, result.stderr
        if args[0] == "--mitmdump":
            assert "mitmproxy is not importable" in result.stderr
        elif expected == 2:
            assert "rules: must be a list of rules" in result.stderr


def test_cli_as_the_role_runs_it(tmp_path):
    """python -P -m agent_sandbox_proxy, as the role's validate: and the proxy's unit call it."""
    argv, env = package_command("--check-secrets", str(write_json(tmp_path / "secrets.json", SECRETS)))
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
    assert result.returncode == 0 and "valid secrets file: 3 secrets" in result.stdout, result.stderr


# ---------------------------------------------------------------- index cost

def test_ten_thousand_rules_build_and_match():
    rng = random.Random(7)
    rules, exact, wild = [], [], []
    for i in range(10000):
        if i % 3 == 0:
            suffix = "w%d.%s.example" % (i, rng.choice(["alpha", "beta", "gamma"]))
            wild.append(suffix)
            rules.append({"host": "*." + suffix, "ports": [443]})
        else:
            host = "h%d.%s.test" % (i, rng.choice(["one", "two", "three"]))
            exact.append(host)
            rules.append({"host": host, "methods": ["GET"]} if i % 5 == 0 else host)
    policy = parse_policy({"rules": rules})
    assert policy.rule_count == 10000
    profile = policy.default
    assert len(profile.index.exact) == len(exact) and len(profile.index.wild) == len(wild)
    for host in rng.sample(exact, 200):
        kind, key = classify_host(host)
        assert len(profile.index.lookup(kind, key)) == 1    # one candidate, not ten thousand
        assert profile.decide(kind, key, 443, "GET", "/").allowed
        assert not profile.decide(*classify_host("x." + host), 443).allowed
    for suffix in rng.sample(wild, 200):
        for host in ("a." + suffix, "a.b.c." + suffix):
            assert profile.decide(*classify_host(host), 443).allowed
        assert not profile.decide(*classify_host(suffix), 443).allowed       # apex
        assert not profile.decide(*classify_host("a." + suffix), 80).allowed  # port
    assert not profile.decide(*classify_host("unknown.test"), 443).allowed


def test_lookup_probes_one_key_per_label():
    """The wildcard walk asks the index once per label, whatever its size."""
    class CountingDict(dict):
        probes = 0

        def get(self, key, default=None):
            CountingDict.probes += 1
            return super().get(key, default)

    for size in (10, 10000):
        index = HostIndex()
        for i in range(size):
            index.add(parse_pattern("*.d%d.example" % i, "r"), i)
        index.wild = CountingDict(index.wild)
        index.exact = CountingDict(index.exact)
        CountingDict.probes = 0
        index.lookup(*classify_host("a.b.c.d.e.f.example"))
        assert CountingDict.probes == 1 + 6   # one exact probe, then one per parent suffix


def test_an_opted_in_wildcard_is_named_so_in_the_rule_label():
    policy = parse_policy({"rules": [{"host": "*.github.io", "trust_every_owner_below": True}, "myorg.example"]})
    decision = policy.profile_for(8080).decide(NAME, "someone.github.io", 443)
    assert decision.allowed and decision.rule == "*.github.io [trust_every_owner_below]"
    assert policy.profile_for(8080).decide(NAME, "myorg.example", 443).rule == "myorg.example"
