"""Every role takes the agents as one record with the same keys (playbooks/tasks/agents.yml gives
each role the same list): the argument specs must agree on them, and agents.yml must know them all."""
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLES = ["sandbox_user", "host_firewall", "mitm_proxy", "shared_workspace", "nix_tools", "selftest", "wsl"]


def agents_option(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]["%s_agents" % role]


def record(role):
    """The record's keys with their type, whether required, and their default."""
    return {key: (opt["type"], opt.get("required", False), opt.get("default"))
            for key, opt in agents_option(role)["options"].items()}


@pytest.mark.parametrize("role", ROLES[1:])
def test_every_role_takes_the_same_agent_record(role):
    assert record(role) == record(ROLES[0])


@pytest.mark.parametrize("role", ROLES)
def test_every_role_defaults_to_one_agent_on_8080(role):
    option = agents_option(role)
    assert (option["type"], option["elements"], option["default"]) == ("list", "dict", [{"name": "agent", "port": 8080}])
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    assert defaults["%s_agents" % role] == option["default"]


def test_agents_yml_knows_every_key_of_the_record():
    tasks = yaml.safe_load((ROOT / "playbooks" / "tasks" / "agents.yml").read_text())
    assert set(tasks[0]["vars"]["__keys"]) == set(record(ROLES[0]))
