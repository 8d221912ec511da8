# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy user's ids on macOS (mitm_proxy_darwin_uid/gid), run through dscl_group and dscl_user
the way roles/mitm_proxy/tasks/Darwin.yml runs them, against a stand-in Mac that holds Apple's role
accounts (tests/unit/fixtures/dscl/macos_system_uids.txt) and the Nix installer's build users."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from dscl_harness import FIXTURES, FakeDirectory, group, run_module, user

from ansible_collections.agent_sandbox.native.plugins.module_utils import _dscl
from ansible_collections.agent_sandbox.native.plugins.modules import dscl_group, dscl_user

ROOT = pathlib.Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "mitm_proxy" / "defaults" / "main.yml").read_text())
DARWIN_VARS = yaml.safe_load((ROOT / "roles" / "mitm_proxy" / "vars" / "Darwin.yml").read_text())
UID, GID = DEFAULTS["mitm_proxy_darwin_uid"], DEFAULTS["mitm_proxy_darwin_gid"]
NAME = DARWIN_VARS["__mitm_proxy_user"]
APPLE = _dscl.parse_id_list((FIXTURES / "macos_system_uids.txt").read_text())
# The Nix installer's defaults (NIX_BUILD_GROUP_ID=350, NIX_FIRST_BUILD_UID=351, 32 users).
NIX_USERS = {"_nixbld%d" % number: 350 + number for number in range(1, 33)}


def a_mac_with_nix(state):
    for name, uid in APPLE.items():
        state["users"][name] = user(name, uid, uid, NFSHomeDirectory=["/var/empty"], UserShell=["/usr/bin/false"])
        state["groups"][name] = group(name, uid)
    for name, uid in NIX_USERS.items():
        state["users"][name] = user(name, uid, 350, NFSHomeDirectory=["/var/empty"], UserShell=["/sbin/nologin"])
    state["groups"]["nixbld"] = group("nixbld", 350, sorted(NIX_USERS))


@pytest.fixture
def mac(monkeypatch, tmp_path):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")
    fake.edit(a_mac_with_nix)
    return fake


def make_proxy_user(monkeypatch, uid=UID, gid=GID):
    """The two tasks of roles/mitm_proxy/tasks/Darwin.yml, with the role's arguments."""
    result, failed = run_module(monkeypatch, dscl_group, dict(name=NAME, gid=gid))
    if failed:
        return result, failed
    return run_module(monkeypatch, dscl_user, dict(
        name=NAME, uid=uid, primary_group_id=gid, shell="/usr/bin/false", home="/var/lib/agent-sandbox/proxy",
        create_home=False, hidden=True, password_locked=True, admin=False, real_name="agent-sandbox egress proxy"))


def test_the_default_ids_are_a_role_account_clear_of_apple_and_nix():
    assert NAME.startswith("_")
    for value in (UID, GID):
        assert 200 <= value <= 400, "sysadminctl's range for role accounts"
        assert value not in APPLE.values()
        assert value not in NIX_USERS.values() and value != 350


def test_the_proxy_user_is_made_hidden_at_the_default_ids_on_a_mac_with_nix(monkeypatch, mac):
    result, failed = make_proxy_user(monkeypatch)

    assert not failed, result
    assert result["uid"] == UID
    record = mac.state()["users"][NAME]
    assert record["UniqueID"] == [str(UID)] and record["PrimaryGroupID"] == [str(GID)]
    assert record["dsAttrTypeNative:IsHidden"] == ["1"] and record["Password"] == ["*"]
    assert mac.state()["groups"][NAME]["PrimaryGroupID"] == [str(GID)]

    mac.clear_calls()
    result, failed = make_proxy_user(monkeypatch)
    assert not failed and result["changed"] is False
    assert mac.writes() == []


def test_an_id_that_macos_took_stops_the_run_before_the_user_is_made(monkeypatch, mac):
    # As macOS 15 did to _nixbld1-4 at 301-304 (nix-darwin#970): a later release takes our uid.
    mac.edit(lambda state: state["users"].update(_future=user("_future", UID, UID)))
    before = mac.state()

    result, failed = make_proxy_user(monkeypatch)

    assert failed
    assert "uid %d is already used by user _future" % UID in result["msg"]
    # The group went first and was made; the user, the part that matters, was not.
    assert NAME not in mac.state()["users"]
    assert before["users"] == mac.state()["users"]


def test_an_existing_proxy_user_at_another_uid_is_not_renumbered(monkeypatch, mac):
    make_proxy_user(monkeypatch, uid=398, gid=GID)
    mac.clear_calls()

    result, failed = make_proxy_user(monkeypatch)

    assert failed
    assert "exists with uid 398, not the requested %d" % UID in result["msg"]
    assert mac.writes() == []
