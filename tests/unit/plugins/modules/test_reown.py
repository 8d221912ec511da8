# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""reown: the real module on a real tree (as root): kept files go to the user made again, and no
link planted in the tree hands anything outside it over."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import reown
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.module_runner import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

OLD = 54321  # a uid and gid that no account has: what a removed user leaves behind
NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.fixture
def tree(tmp_path):
    """kept/ with a file, a folder and a file in it of the old ids; a symlink and a hard link to files
    outside; a root file; and outside/, which must never change."""
    kept, outside = tmp_path / "kept", tmp_path / "outside"
    (kept / "sub").mkdir(parents=True)
    outside.mkdir()
    for path in (kept / "audit.jsonl", kept / "sub" / "notes", outside / "target", outside / "linked"):
        path.write_text("x")
    (kept / "root-file").write_text("x")
    (kept / "to-target").symlink_to(outside / "target")
    (kept / "to-outside").symlink_to(outside)
    os.link(outside / "linked", kept / "hardlink")
    for path in (kept, kept / "sub", kept / "audit.jsonl", kept / "sub" / "notes", outside / "target",
                 outside / "linked", outside):
        os.chown(path, OLD, OLD)
    for link in (kept / "to-target", kept / "to-outside"):
        os.lchown(link, OLD, OLD)
    return kept, outside


def run(monkeypatch, check_mode=False, diff=False, **args):
    return run_module(monkeypatch, reown, args, check_mode=check_mode, diff=diff)


def test_everything_kept_goes_to_the_new_user_and_nothing_outside(monkeypatch, tree):
    kept, outside = tree
    result, failed = run(monkeypatch, path=str(kept), owner="nobody", group="nogroup")

    assert not failed, result
    assert result["changed"] is True and result["count"] == 6
    for path in (kept, kept / "sub", kept / "audit.jsonl", kept / "sub" / "notes", kept / "to-target",
                 kept / "to-outside"):
        assert owner(path) == (NOBODY, NOGROUP), path
    # Links were re-owned themselves; what they point to was not.
    assert owner(outside / "target") == (OLD, OLD) and owner(outside) == (OLD, OLD)
    # A hard link to a file outside, and root's file, stay as they were and are reported.
    assert owner(outside / "linked") == (OLD, OLD)
    assert owner(kept / "root-file") == (0, 0)
    assert sorted(result["skipped"]) == [str(kept / "hardlink"), str(kept / "root-file")]

    again, failed = run(monkeypatch, path=str(kept), owner="nobody", group="nogroup")
    assert not failed and again["changed"] is False and again["count"] == 0


def test_check_mode_changes_nothing_and_diff_lists_it(monkeypatch, tree):
    kept, dummy = tree
    result, failed = run(monkeypatch, check_mode=True, diff=True, path=str(kept), owner="nobody", group="nogroup")

    assert not failed, result
    assert result["changed"] is True and result["count"] == 6
    assert owner(kept / "audit.jsonl") == (OLD, OLD)
    assert "%s %d:%d\n" % (kept / "audit.jsonl", OLD, OLD) in result["diff"]["before"]
    assert "%s %d:%d\n" % (kept / "audit.jsonl", NOBODY, NOGROUP) in result["diff"]["after"]


def test_only_stale_keeps_what_existing_accounts_own(monkeypatch, tree):
    kept, dummy = tree
    os.chown(kept / "sub" / "notes", NOBODY, OLD)  # an existing user's file with a stale group
    result, failed = run(monkeypatch, path=str(kept), owner="root", group="root", only_stale=True)

    assert not failed, result
    assert owner(kept / "sub" / "notes") == (NOBODY, 0)
    assert owner(kept / "audit.jsonl") == (0, 0)


@pytest.mark.parametrize("what", ["symlink", "file", "missing"])
def test_a_top_that_is_not_a_folder_is_refused(monkeypatch, tree, what):
    kept, outside = tree
    top = {"symlink": kept / "to-outside", "file": kept / "audit.jsonl", "missing": kept / "nothing"}[what]
    result, failed = run(monkeypatch, path=str(top), owner="nobody", group="nogroup")

    assert failed
    assert str(top) in result["msg"]
    assert owner(outside) == (OLD, OLD)


def test_unknown_user_is_refused(monkeypatch, tree):
    result, failed = run(monkeypatch, path=str(tree[0]), owner="no-such-user-here", group="nogroup")
    assert failed and "no such user or group" in result["msg"]
