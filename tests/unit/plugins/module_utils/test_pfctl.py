# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_pfctl: anchor name rules, parsers against pfctl output samples, and the stand-in against those samples."""

from __future__ import annotations

import re

import pytest

from ansible_collections.agent_sandbox.native.plugins.module_utils._pfctl import (
    Pfctl,
    PfctlError,
    parse_anchors,
    parse_dry_run,
    parse_info,
    parse_interfaces,
    parse_references,
    parse_rules,
    rules_to_text,
    validate_anchor_name,
)
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.pf_harness import (
    FIXTURES,
    FakePfctl,
    fixture_lines,
    fixture_text,
)


# ------------------------------------------------------------ anchor names
@pytest.mark.parametrize("name", ["agent_sandbox", "com.apple/agent_sandbox", "a/b/c", "x-1.2_3", "A" * 63])
def test_anchor_names_we_may_manage(name):
    assert validate_anchor_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "main ruleset"),
    (None, "main ruleset"),
    ("/agent", "starts with '/'"),
    ("a/../b", "contains '..'"),
    ("a..b", "contains '..'"),
    ("a b", "whitespace"),
    ("a\nb", "whitespace"),
    ("a//b", "component ''"),
    ("a/", "component ''"),
    ("_x", "component '_x'"),
    ("a/_x", "component '_x'"),
    ("a/*", "component '*'"),
    ("a;rm", "component 'a;rm'"),
    ("A" * 64, "at most 63"),
    ("com.apple", "macOS keeps its own anchor references"),
])
def test_anchor_names_refused(name, why):
    with pytest.raises(PfctlError) as caught:
        validate_anchor_name(name)
    assert why in caught.value.msg
    assert caught.value.fail_kwargs() == {"msg": caught.value.msg}


# ------------------------------------------------------------ rules input
def test_rules_text_and_list_give_the_same_file():
    assert rules_to_text(["pass out all", "block in all"]) == "pass out all\nblock in all\n"
    assert rules_to_text("pass out all\nblock in all") == "pass out all\nblock in all\n"
    assert rules_to_text("pass out all\n") == "pass out all\n"
    assert rules_to_text([]) == ""
    assert rules_to_text(None) == ""


@pytest.mark.parametrize("bad", [[1], ["ok", {"a": 1}], 5, {"a": 1}])
def test_rules_of_the_wrong_type_are_refused(bad):
    with pytest.raises(PfctlError):
        rules_to_text(bad)


# ------------------------------------------------------------ parsers on the samples
def test_parse_rules_of_observed_anchors():
    for name in ("show_rules_main_default.txt", "show_rules_airdrop_bonjour.txt",
                 "show_rules_application_firewall.txt"):
        assert parse_rules(fixture_text(name)) == fixture_lines(name)


def test_parse_rules_normalises_whitespace_and_counters():
    text = "pass  out\tall   flags S/SA keep state\n  [ Evaluations: 1  Packets: 0  Bytes: 0  States: 0     ]\n\n"
    assert parse_rules(text) == ["pass out all flags S/SA keep state"]


def test_parse_dry_run_drops_macro_definitions():
    assert parse_dry_run(fixture_text("dry_run_agent_anchor.txt")) == fixture_lines("show_rules_agent_anchor.txt")


@pytest.mark.parametrize("line", [
    "table <proxies> persist { 127.0.0.1 }",
    'anchor "nested" all',
    'rdr-anchor "x" all',
    "rdr pass on lo0 inet proto tcp from any to any port = 80 -> 127.0.0.1 port 8080",
    "nat on en0 from 10.0.0.0/8 to any -> (en0)",
    "set skip on lo0",
])
def test_parse_dry_run_refuses_what_show_rules_cannot_compare(line):
    with pytest.raises(PfctlError) as caught:
        parse_dry_run("pass out all flags S/SA keep state\n" + line + "\n")
    assert line in caught.value.msg


def test_parse_info_enabled_and_disabled():
    enabled = parse_info(fixture_text("show_info_enabled.txt"))
    assert enabled == {"enabled": True, "status": "Status: Enabled for 0 days 00:07:40 Debug: Urgent",
                       "running_for": "0 days 00:07:40", "debug": "Urgent"}
    disabled = parse_info(fixture_text("show_info_disabled.txt"))
    assert disabled["enabled"] is False
    assert disabled["running_for"] is None
    assert disabled["debug"] == "Urgent"


def test_parse_info_without_status_line_is_an_error():
    with pytest.raises(PfctlError):
        parse_info("State Table  Total  Rate\n")


def test_parse_references_in_each_observed_layout():
    observed = parse_references(fixture_text("show_references.txt"))
    assert observed == [{"pid": 5191, "process": "pfctl", "token": "10051342025653898869",
                         "timestamp": "0 days 00:00:07"}]
    with_title = "TOKENS:\n" + fixture_text("show_references.txt")
    assert parse_references(with_title) == observed
    seconds = "PID      Process Name         TOKEN                TIMESTAMP\n37       pfctl                12633458505157041302 1790890391\n"
    assert parse_references(seconds) == [{"pid": 37, "process": "pfctl", "token": "12633458505157041302",
                                          "timestamp": "1790890391"}]
    spaced = "101      Little Snitch Agent          99     0 days 01:00:00\n"
    assert parse_references(spaced)[0]["process"] == "Little Snitch Agent"
    assert parse_references("") == []


def test_parse_anchors_and_interfaces():
    assert parse_anchors(fixture_text("show_anchors_verbose.txt")) == [
        "com.apple", "com.apple/200.AirDrop", "com.apple/200.AirDrop/Bonjour", "com.apple/250.ApplicationFirewall"]
    assert parse_interfaces(fixture_text("show_interfaces_verbose.txt")) == (["all", "en0", "lo0", "utun0"], ["lo0"])


# ------------------------------------------------------------ Pfctl runner
class RecordingModule:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def run_command(self, cmd):
        self.calls.append(cmd)
        return self.answers.pop(0)


def test_commands_are_argv_lists():
    pfctl = Pfctl(RecordingModule(), "/sbin/pfctl")
    assert pfctl.show_rules_cmd("a") == ["/sbin/pfctl", "-a", "a", "-s", "rules"]
    assert pfctl.show_rules_cmd("") == ["/sbin/pfctl", "-s", "rules"]
    assert pfctl.dry_run_cmd("a", "/t/f") == ["/sbin/pfctl", "-a", "a", "-n", "-v", "-f", "/t/f"]
    assert pfctl.load_cmd("a", "/t/f") == ["/sbin/pfctl", "-a", "a", "-f", "/t/f"]
    assert pfctl.flush_rules_cmd("a") == ["/sbin/pfctl", "-a", "a", "-F", "rules"]
    assert pfctl.flush_states_cmd() == ["/sbin/pfctl", "-F", "state"]


def test_show_rules_of_a_missing_anchor_is_empty_whatever_the_exit_code():
    for rc in (0, 1):
        module = RecordingModule((rc, "", "No ALTQ support in kernel\npfctl: DIOCGETRULES: Invalid argument\n"))
        assert Pfctl(module, "/sbin/pfctl").show_rules("gone") == []


def test_show_rules_failure_keeps_pfctl_output_without_the_altq_banner():
    module = RecordingModule((1, "", "No ALTQ support in kernel\nALTQ related functions disabled\n"
                                     "pfctl: /dev/pf: Permission denied\n"))
    with pytest.raises(PfctlError) as caught:
        Pfctl(module, "/sbin/pfctl").show_rules("a")
    assert caught.value.msg == "Could not read the rules of anchor 'a' (rc=1): pfctl: /dev/pf: Permission denied"
    assert caught.value.fail_kwargs()["cmd"] == ["/sbin/pfctl", "-a", "a", "-s", "rules"]
    assert "ALTQ" in caught.value.fail_kwargs()["stderr"]


# ------------------------------------------------------------ the stand-in matches the samples
@pytest.fixture
def fake(monkeypatch, tmp_path):
    return FakePfctl(monkeypatch, tmp_path / "pf")


def test_stand_in_prints_the_documented_canonical_form(fake):
    conf = str(FIXTURES / "agent_anchor.conf")
    rc, stdout, stderr = fake("-a", "agent_sandbox", "-n", "-v", "-f", conf)
    assert (rc, stdout, stderr) == (0, fixture_text("dry_run_agent_anchor.txt"), "")
    assert fake("-a", "agent_sandbox", "-f", conf)[0] == 0
    rc, stdout, stderr = fake("-a", "agent_sandbox", "-s", "rules")
    assert stdout == fixture_text("show_rules_agent_anchor.txt")
    assert stderr == "No ALTQ support in kernel\nALTQ related functions disabled\n"


@pytest.mark.parametrize("name", ["show_rules_airdrop_bonjour.txt", "show_rules_application_firewall.txt",
                                  "show_rules_agent_anchor.txt"])
def test_canonical_rules_read_back_unchanged(fake, name):
    # Observed pfctl output is valid pf.conf: the stand-in must print it back as it is.
    rc, stdout, dummy = fake("-a", "x", "-n", "-v", "-f", "-", stdin=fixture_text(name))
    assert rc == 0
    assert stdout == fixture_text(name)


def test_stand_in_starts_like_a_stock_mac(fake):
    assert fake("-s", "rules")[1] == fixture_text("show_rules_main_default.txt")
    assert fake("-a", "com.apple/200.AirDrop/Bonjour", "-s", "rules")[1] == fixture_text("show_rules_airdrop_bonjour.txt")
    assert fake("-v", "-s", "Anchors")[1] == fixture_text("show_anchors_verbose.txt")
    assert parse_info(fake("-s", "info")[1])["enabled"] is False


def test_stand_in_syntax_errors_look_like_pfctl(fake, tmp_path):
    conf = tmp_path / "agent_sandbox"
    conf.write_text("pass out all\n\nblock drop out quikc all\n")
    rc, stdout, stderr = fake("-a", "agent_sandbox", "-n", "-f", str(conf))
    assert (rc, stdout) == (1, "")
    expected = fixture_text("syntax_error.stderr").replace("/etc/pf.anchors/agent_sandbox", str(conf))
    assert stderr == expected
    rc, dummy, stderr = fake("-a", "x", "-n", "-f", "-", stdin="pass out bogus\n")
    assert rc == 1 and stderr.startswith("stdin:1: syntax error\n")


def test_stand_in_enable_reference_looks_like_pfctl(fake):
    rc, stdout, stderr = fake("-E")
    assert (rc, stdout) == (0, "")
    shape = re.escape(fixture_text("enable_reference.stderr")).replace("4235676552202453487", r"\d+")
    assert re.fullmatch(shape, stderr)
    token = re.search(r"Token : (\d+)", stderr).group(1)
    assert [ref["token"] for ref in parse_references(fake("-s", "References")[1])] == [token]
    assert fake("-e")[2] == fixture_text("enable_already_enabled.stderr")
    assert fake("-X", token)[0] == 0
    assert parse_info(fake("-s", "info")[1])["enabled"] is False
    assert fake("-X", token)[0] == 1


def test_stand_in_state_flush_ignores_the_anchor(fake):
    fake.edit_state(states=3)
    rc, dummy, stderr = fake("-a", "agent_sandbox", "-F", "state")
    assert rc == 0 and stderr.endswith("3 states cleared\n")
    assert fake.state()["states"] == 0


def test_stand_in_refuses_to_modify_underscore_anchors(fake):
    rc, dummy, stderr = fake("-a", "x/_y", "-F", "rules")
    assert rc == 1
    assert "anchor names beginning with '_' cannot be modified from the command line" in stderr
