# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dscl_user_info against the Directory Services stand-ins."""

from __future__ import annotations

import json

from dscl_harness import FakeDirectory, run_module

from ansible_collections.agent_sandbox.native.plugins.modules import dscl_user_info


def test_lists_uids_and_describes_one_user_without_secrets(monkeypatch, tmp_path):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")

    result, failed = run_module(monkeypatch, dscl_user_info, dict(name="alice"), check_mode=True)

    assert not failed, result
    assert result["changed"] is False
    assert result["uids"] == {"_www": 70, "alice": 501, "daemon": 1, "nobody": -2, "root": 0}
    assert result["user"] == {
        "name": "alice", "state": "present", "uid": 501, "primary_group_id": 20, "shell": "/bin/zsh",
        "home": "/Users/alice", "real_name": "Alice Example", "hidden": False, "password_locked": False,
        "groups": ["admin"], "admin": True,
    }
    assert "62706c6973743030" not in json.dumps(result)
    assert fake.writes() == []
    # Every uid from the same plist read of /Users as local_accounts_info, not from -list text.
    assert fake.calls() == [
        ("dscl", ["-plist", ".", "-readall", "/Users", "RecordName", "UniqueID", "PrimaryGroupID", "NFSHomeDirectory",
                  "UserShell"]),
        ("dscl", ["-plist", ".", "-read", "/Users/alice"]),
        ("dscl", ["-plist", ".", "-readall", "/Groups", "RecordName", "PrimaryGroupID", "GroupMembership"]),
    ]


def test_a_user_record_without_a_uid_is_left_out_of_uids(monkeypatch, tmp_path):
    fake = FakeDirectory(monkeypatch, tmp_path / "ds")
    fake.edit(lambda state: state["users"]["_www"].pop("UniqueID"))

    result, failed = run_module(monkeypatch, dscl_user_info, {})

    assert not failed, result
    assert result["uids"] == {"alice": 501, "daemon": 1, "nobody": -2, "root": 0}
    assert result["user"] is None


def test_a_missing_user_is_reported_absent(monkeypatch, tmp_path):
    FakeDirectory(monkeypatch, tmp_path / "ds")

    result, failed = run_module(monkeypatch, dscl_user_info, dict(name="agent"))

    assert not failed, result
    assert result["user"] == {"name": "agent", "state": "absent"}
