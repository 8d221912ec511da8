# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pf_anchor: the real module code against the stateful pfctl stand-in, and exact argv with a mocked run_command."""

from __future__ import annotations

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import pf_anchor
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.pf_harness import (
    ALTQ,
    FakePfctl,
    RulesFile,
    ScriptedRunCommand,
    fixture_lines,
    fixture_text,
    run_module,
    writes,
)

NAME = "com.apple/agent_sandbox"
RULES = fixture_text("agent_anchor.conf").splitlines()
CANONICAL = fixture_lines("show_rules_agent_anchor.txt")
MISSING = ALTQ + "pfctl: DIOCGETRULES: Invalid argument\n"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    return FakePfctl(monkeypatch, tmp_path / "pf")


@pytest.fixture
def run(monkeypatch, tmp_path):
    workdir = tmp_path / "module-tmp"
    workdir.mkdir()

    def runner(check_mode=False, diff=False, **args):
        return run_module(monkeypatch, pf_anchor, args, workdir, check_mode=check_mode, diff=diff)

    runner.workdir = workdir
    return runner


def load_agent_rules(run, rules=None):
    result, failed = run(name=NAME, rules=RULES if rules is None else rules)
    assert not failed, result
    return result


# ------------------------------------------------------------ against the stand-in
def test_create_loads_the_rules_and_reports_them_as_pfctl_prints_them(fake, run):
    before = fake.rulesets()
    fake.clear_calls()

    result = load_agent_rules(run)

    calls = fake.calls()
    assert result["changed"] is True
    assert result["rules"] == CANONICAL
    after = fake.rulesets()
    assert after.pop(NAME) == CANONICAL
    assert after == before  # the main ruleset and Apple's anchors are as they were
    assert fake.bin_path_requests == [("pfctl", True, ["/sbin", "/usr/sbin"])]
    assert [argv[:4] for argv in calls] == [
        ["-a", NAME, "-s", "rules"],
        ["-a", NAME, "-n", "-v"],
        ["-a", NAME, "-f", calls[2][3]],
        ["-a", NAME, "-s", "rules"],
    ]
    assert calls[1][-1] == calls[2][-1]  # the file that was checked is the file that was loaded
    assert not any("pass" in arg for argv in calls for arg in argv)  # rules never travel in argv
    assert list(run.workdir.iterdir()) == []  # the temporary rules file is gone
    assert result["commands"] == [[fake.path, "-a", NAME, "-f", calls[2][3]]]


def test_rerun_is_a_no_op(fake, run):
    load_agent_rules(run)
    fake.clear_calls()

    result = load_agent_rules(run)

    assert result["changed"] is False
    assert result["commands"] == []
    assert writes(fake.calls()) == []
    assert [argv[:4] for argv in fake.calls()] == [["-a", NAME, "-s", "rules"], ["-a", NAME, "-n", "-v"]]


@pytest.mark.parametrize("spelling", ["text", "src", "reordered whitespace"])
def test_other_spellings_of_the_same_rules_change_nothing(fake, run, tmp_path, spelling):
    load_agent_rules(run)
    text = "\n".join(RULES)
    if spelling == "text":
        args = {"rules": text}
    elif spelling == "src":
        src = tmp_path / "anchor.conf"
        src.write_text(text)
        args = {"src": str(src)}
    else:
        args = {"rules": ["proxy_port=\"8080\"",
                          "pass  out quick on lo0 proto tcp to { 127.0.0.1, ::1 } port = $proxy_port user = agent",
                          "block drop out log quick proto { tcp, udp } from any to any user 501",
                          "block out quick inet proto icmp",
                          "block drop out quick inet6 proto ipv6-icmp from any to any"]}
    fake.clear_calls()

    result, failed = run(name=NAME, **args)

    assert not failed, result
    assert result["changed"] is False
    assert writes(fake.calls()) == []


def test_changing_one_rule_reloads_the_anchor(fake, run):
    load_agent_rules(run)
    changed = [line.replace('"8080"', '"3128"') for line in RULES]

    result, failed = run(diff=True, name=NAME, rules=changed)

    assert not failed, result
    assert result["changed"] is True
    expected = [line.replace("port = 8080", "port = 3128") for line in CANONICAL]
    assert result["rules"] == expected
    assert fake.rulesets()[NAME] == expected
    assert "port = 8080" in result["diff"]["before"] and "port = 3128" in result["diff"]["after"]


def test_invalid_rule_fails_with_pfctl_message_and_keeps_the_loaded_rules(fake, run):
    load_agent_rules(run)
    fake.clear_calls()
    broken = RULES[:3] + ["block drop out quikc proto tcp all user agent"] + RULES[3:]

    result, failed = run(name=NAME, rules=broken)

    assert failed
    assert result["rc"] == 1
    assert ":4: syntax error" in result["stderr"]
    assert "pf rules not loaded" in result["stderr"]
    assert "stdout" in result
    assert result["cmd"][:5] == [fake.path, "-a", NAME, "-n", "-v"]
    assert result["msg"].startswith("pfctl rejected the rules for anchor %r (rc=1): " % NAME)
    assert "syntax error" in result["msg"]
    assert fake.rulesets()[NAME] == CANONICAL
    assert writes(fake.calls()) == []
    assert list(run.workdir.iterdir()) == []


def test_rule_that_pfctl_parses_but_rejects_fails_too(fake, run):
    result, failed = run(name=NAME, rules=["block drop out quick proto icmp from any to any port 53"])

    assert failed
    assert "port only applies to tcp/udp" in result["msg"]
    assert NAME not in fake.rulesets()


def test_check_mode_loads_nothing_but_still_validates(fake, run):
    result, failed = run(check_mode=True, diff=True, name=NAME, rules=RULES)

    assert not failed, result
    assert result["changed"] is True
    assert result["rules"] == CANONICAL
    assert NAME not in fake.rulesets()
    calls = fake.calls()
    assert any("-n" in argv for argv in calls)  # the dry run ran
    assert all("-n" in argv for argv in calls if "-f" in argv)  # no -f without -n
    assert writes(calls) == []
    assert result["commands"][0][:4] == [fake.path, "-a", NAME, "-f"]  # what would have run


def test_check_mode_reports_an_invalid_rule(fake, run):
    result, failed = run(check_mode=True, name=NAME, rules=["pass out bogus"])

    assert failed
    assert "syntax error" in result["stderr"]


def test_diff_shows_before_and_after_with_headers(fake, run):
    load_agent_rules(run)
    fewer = [line for line in RULES if "icmp" not in line]

    result, failed = run(diff=True, name=NAME, rules=fewer)

    assert not failed, result
    diff = result["diff"]
    assert diff["before_header"] == "pfctl -a %s -s rules" % NAME
    assert diff["after_header"] == "%s (rules as pfctl parsed them)" % NAME
    assert diff["before"] == "".join(line + "\n" for line in CANONICAL)
    assert diff["after"] == "".join(line + "\n" for line in CANONICAL if "icmp" not in line)


def test_absent_flushes_only_that_anchor(fake, run):
    load_agent_rules(run)
    fake("-a", "com.apple/other", "-f", "-", stdin="pass out proto tcp to 192.0.2.1 port 443\n")
    before = fake.rulesets()
    fake.clear_calls()

    result, failed = run(diff=True, name=NAME, state="absent")

    assert not failed, result
    assert result["changed"] is True
    after = fake.rulesets()
    assert NAME not in after
    del before[NAME]
    assert after == before  # main ruleset, Apple's anchors and the other anchor untouched
    assert writes(fake.calls()) == [["-a", NAME, "-F", "rules"]]
    assert result["commands"] == [[fake.path, "-a", NAME, "-F", "rules"]]
    assert result["diff"]["after"] == ""
    assert result["diff"]["after_header"] == "%s (flushed)" % NAME


def test_absent_when_already_empty_is_a_no_op(fake, run):
    result, failed = run(name=NAME, state="absent", flush_states=True)

    assert not failed, result
    assert result["changed"] is False
    assert writes(fake.calls()) == []


def test_absent_in_check_mode_flushes_nothing(fake, run):
    load_agent_rules(run)
    fake.clear_calls()

    result, failed = run(check_mode=True, name=NAME, state="absent")

    assert not failed, result
    assert result["changed"] is True
    assert fake.rulesets()[NAME] == CANONICAL
    assert writes(fake.calls()) == []


def test_flush_states_flushes_the_state_table_only_when_rules_changed(fake, run):
    fake.edit_state(states=12)

    first, failed = run(name=NAME, rules=RULES, flush_states=True)
    assert not failed, first
    assert ["-F", "state"] in writes(fake.calls())
    assert fake.state()["states"] == 0
    fake.edit_state(states=5)
    fake.clear_calls()

    second, failed = run(name=NAME, rules=RULES, flush_states=True)

    assert not failed, second
    assert second["changed"] is False
    assert writes(fake.calls()) == []
    assert fake.state()["states"] == 5


@pytest.mark.parametrize("name", [
    "", "/agent_sandbox", "agent/../other", "..", "agent sandbox", "agent\tsandbox", "agent\n",
    "agent//sandbox", "agent/", "_private", "com.apple/_x", "com.apple/*", "*", "com.apple",
])
def test_bad_anchor_names_are_refused_before_pfctl_runs(fake, run, name):
    result, failed = run(name=name, rules=RULES)

    assert failed
    assert "anchor name" in result["msg"]
    assert fake.calls() == []


def test_bad_anchor_name_is_refused_for_absent_too(fake, run):
    result, failed = run(name="", state="absent")

    assert failed
    assert "main ruleset" in result["msg"]
    assert fake.calls() == []


@pytest.mark.parametrize("rules, what", [
    (["table <proxies> { 127.0.0.1 }", "pass out proto tcp to <proxies> port 8080"], "table <proxies>"),
    (['anchor "nested"'], 'anchor "nested" all'),
    (['rdr-anchor "redirects"'], 'rdr-anchor "redirects" all'),
])
def test_statements_outside_this_anchors_filter_rules_are_refused(fake, run, rules, what):
    result, failed = run(name=NAME, rules=rules)

    assert failed
    assert what in result["msg"]
    assert result["rc"] == 0  # pfctl accepted them; the module refuses
    assert NAME not in fake.rulesets()
    assert writes(fake.calls()) == []


def test_present_needs_rules_or_src(fake, run):
    result, failed = run(name=NAME)

    assert failed
    assert "rules" in result["msg"] and "src" in result["msg"]
    assert fake.calls() == []


def test_rules_and_src_are_exclusive(fake, run, tmp_path):
    result, failed = run(name=NAME, rules=RULES, src=str(tmp_path / "x"))

    assert failed
    assert "mutually exclusive" in result["msg"]


def test_unreadable_src_fails_without_loading(fake, run, tmp_path):
    result, failed = run(name=NAME, src=str(tmp_path / "missing.conf"))

    assert failed
    assert "Cannot read the rules from src" in result["msg"]
    assert writes(fake.calls()) == []


def test_empty_rules_empty_the_anchor(fake, run):
    load_agent_rules(run)

    result, failed = run(name=NAME, rules=[])

    assert not failed, result
    assert result["changed"] is True
    assert result["rules"] == []
    assert NAME not in fake.rulesets()


def test_pfctl_path_overrides_the_lookup(fake, run):
    result, failed = run(name=NAME, rules=RULES, pfctl_path=fake.path)

    assert not failed, result
    assert fake.bin_path_requests == []
    assert fake.rulesets()[NAME] == CANONICAL


# ------------------------------------------------------------ exact argv, mocked run_command
P = "/sbin/pfctl"
SHOW = [P, "-a", NAME, "-s", "rules"]
DRY_RUN_OUT = fixture_text("dry_run_agent_anchor.txt")
SHOW_OUT = fixture_text("show_rules_agent_anchor.txt")


def test_argv_create(monkeypatch, run):
    rules_file = RulesFile()
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, "", MISSING)),
        ([P, "-a", NAME, "-n", "-v", "-f", rules_file], (0, DRY_RUN_OUT, "")),
        ([P, "-a", NAME, "-f", rules_file], (0, "", ALTQ)),
        (SHOW, (0, SHOW_OUT, ALTQ)),
    ])

    result, failed = run(name=NAME, rules=RULES)

    assert not failed, result
    script.done()
    assert result["changed"] is True
    assert result["warnings"] == []
    checked, loaded = rules_file.seen
    assert checked["path"] == loaded["path"]
    assert checked["mode"] == 0o600
    assert checked["text"] == "\n".join(RULES) + "\n"
    assert all(env == {"LANG": "C", "LC_ALL": "C"} for env in script.environ)


def test_argv_rerun_reads_and_validates_only(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, SHOW_OUT, ALTQ)),
        ([P, "-a", NAME, "-n", "-v", "-f", RulesFile()], (0, DRY_RUN_OUT, "")),
    ])

    result, failed = run(name=NAME, rules=RULES)

    assert not failed, result
    script.done()
    assert result["changed"] is False


def test_argv_check_mode_has_no_load(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, "", MISSING)),
        ([P, "-a", NAME, "-n", "-v", "-f", RulesFile()], (0, DRY_RUN_OUT, "")),
    ])

    result, failed = run(check_mode=True, name=NAME, rules=RULES, flush_states=True)

    assert not failed, result
    script.done()
    assert result["changed"] is True
    assert all("-n" in argv for argv in script.calls if "-f" in argv)
    assert not any("-F" in argv for argv in script.calls)


def test_argv_validation_failure_stops_before_loading(monkeypatch, run):
    stderr = "%s:2: syntax error\npfctl: Syntax error in config file: pf rules not loaded\n"
    rules_file = RulesFile()
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, SHOW_OUT, ALTQ)),
        ([P, "-a", NAME, "-n", "-v", "-f", rules_file], (1, "", stderr % "/tmp/x.conf")),
    ])

    result, failed = run(name=NAME, rules=["pass out all", "pass out bogus"])

    assert failed
    script.done()
    assert result["rc"] == 1
    assert result["stdout"] == ""
    assert result["stderr"] == stderr % "/tmp/x.conf"
    assert result["cmd"][:6] == [P, "-a", NAME, "-n", "-v", "-f"]
    assert result["msg"] == ("pfctl rejected the rules for anchor %r (rc=1): /tmp/x.conf:2: syntax error "
                             "pfctl: Syntax error in config file: pf rules not loaded" % NAME)


def test_argv_load_then_flush_states(monkeypatch, run):
    rules_file = RulesFile()
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, "", MISSING)),
        ([P, "-a", NAME, "-n", "-v", "-f", rules_file], (0, DRY_RUN_OUT, "")),
        ([P, "-a", NAME, "-f", rules_file], (0, "", ALTQ)),
        ([P, "-F", "state"], (0, "", ALTQ + "3 states cleared\n")),
        (SHOW, (0, SHOW_OUT, ALTQ)),
    ])

    result, failed = run(name=NAME, rules=RULES, flush_states=True)

    assert not failed, result
    script.done()


def test_argv_absent(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, SHOW_OUT, ALTQ)),
        ([P, "-a", NAME, "-F", "rules"], (0, "", ALTQ + "rules cleared\n")),
        (SHOW, (0, "", MISSING)),
    ])

    result, failed = run(name=NAME, state="absent")

    assert not failed, result
    script.done()
    assert result["changed"] is True
    assert result["rules"] == []


def test_argv_failed_load_is_reported(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, "", MISSING)),
        ([P, "-a", NAME, "-n", "-v", "-f", RulesFile()], (0, DRY_RUN_OUT, "")),
        ([P, "-a", NAME, "-f", RulesFile()], (1, "", ALTQ + "pfctl: DIOCADDRULE: Operation not permitted\n")),
    ])

    result, failed = run(name=NAME, rules=RULES)

    assert failed
    script.done()
    assert result["msg"] == ("Could not load the rules into anchor %r (rc=1): "
                             "pfctl: DIOCADDRULE: Operation not permitted" % NAME)


def test_argv_reads_that_disagree_with_the_dry_run_warn(monkeypatch, run):
    script = ScriptedRunCommand(monkeypatch, [
        (SHOW, (0, "", MISSING)),
        ([P, "-a", NAME, "-n", "-v", "-f", RulesFile()], (0, DRY_RUN_OUT, "")),
        ([P, "-a", NAME, "-f", RulesFile()], (0, "", ALTQ)),
        (SHOW, (0, SHOW_OUT.replace("port = 8080", "port = http-alt"), ALTQ)),
    ])

    result, failed = run(name=NAME, rules=RULES)

    assert not failed, result
    script.done()
    assert len(result["warnings"]) == 1
    assert "next run will report a change again" in result["warnings"][0]
