# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""paths: the real module on a real folder (as root): folders and files made with their owner, group
and mode, a second run changes nothing, check mode changes nothing, a failed check or a planted link
replaces nothing."""

from __future__ import annotations

import grp
import os
import pwd
import stat

import pytest

from ansible_collections.agent_sandbox.native.plugins.modules import paths
from ansible_collections.agent_sandbox.native.tests.unit.plugins.modules.module_runner import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid


def run(monkeypatch, check_mode=False, diff=False, **args):
    return run_module(monkeypatch, paths, args, check_mode=check_mode, diff=diff)


def described(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, "%04o" % stat.S_IMODE(st.st_mode)


def layout(base):
    return [
        {"path": str(base / "opt"), "state": "directory"},
        {"path": str(base / "opt" / "logs"), "state": "directory", "owner": "nobody", "group": "nogroup", "mode": "2750"},
        {"path": str(base / "opt" / "tool.py"), "content": "print('hi')\n", "mode": "0644"},
        {"path": str(base / "old.py"), "state": "absent"},
    ]


def test_makes_everything_then_changes_nothing(monkeypatch, tmp_path):
    (tmp_path / "old.py").write_text("old")
    args = dict(entries=layout(tmp_path), owner="root", group="root", mode="0755")

    result, failed = run(monkeypatch, **args)
    assert not failed, result
    assert result["changed"] is True
    assert result["paths"] == [str(tmp_path / name) for name in ("opt", "opt/logs", "opt/tool.py", "old.py")]
    assert described(tmp_path / "opt") == (0, 0, "0755")
    assert described(tmp_path / "opt" / "logs") == (NOBODY, NOGROUP, "2750")
    assert described(tmp_path / "opt" / "tool.py") == (0, 0, "0644")
    assert (tmp_path / "opt" / "tool.py").read_text() == "print('hi')\n"
    assert not (tmp_path / "old.py").exists()
    assert [p.name for p in (tmp_path / "opt").iterdir() if p.name.startswith(".")] == []

    again, failed = run(monkeypatch, **args)
    assert not failed and again["changed"] is False and again["paths"] == []


def test_check_mode_reports_and_changes_nothing(monkeypatch, tmp_path):
    (tmp_path / "old.py").write_text("old")
    result, failed = run(monkeypatch, check_mode=True, diff=True, entries=layout(tmp_path),
                         owner="root", group="root", mode="0755")
    assert not failed, result
    assert result["changed"] is True and len(result["paths"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.py"]
    texts = [d["after"] for d in result["diff"]]
    assert any("print('hi')" in text for text in texts)


def test_changed_content_and_mode_are_put_right_with_a_diff(monkeypatch, tmp_path):
    target = tmp_path / "rules.nft"
    target.write_text("old rules\n")
    os.chmod(target, 0o666)
    entry = {"path": str(target), "content": "new rules\n", "owner": "root", "group": "root", "mode": "0600"}

    result, failed = run(monkeypatch, diff=True, entries=[entry])
    assert not failed and result["changed"] is True
    assert target.read_text() == "new rules\n" and described(target) == (0, 0, "0600")
    assert "old rules" in result["diff"][0]["before"] and "new rules" in result["diff"][0]["after"]

    os.chmod(target, 0o644)
    result, failed = run(monkeypatch, entries=[entry])
    assert not failed and result["paths"] == [str(target)] and described(target) == (0, 0, "0600")


def test_a_file_that_fails_its_check_replaces_nothing(monkeypatch, tmp_path):
    target = tmp_path / "sudoers"
    target.write_text("good\n")
    entry = {"path": str(target), "content": "bad\n", "owner": "root", "group": "root", "mode": "0440",
             "validate": "grep -q good %s"}

    result, failed = run(monkeypatch, entries=[entry])
    assert failed and "failed its check" in result["msg"] and result["rc"] == 1
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sudoers"]

    entry["content"] = "good again\n"
    result, failed = run(monkeypatch, entries=[entry])
    assert not failed and target.read_text() == "good again\n"


@pytest.mark.parametrize("state", ["file", "directory"])
def test_a_link_is_never_followed_or_replaced(monkeypatch, tmp_path, state):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("keep\n")
    link = tmp_path / "planted"
    link.symlink_to(outside / "passwd" if state == "file" else outside)
    entry = {"path": str(link), "state": state, "owner": "nobody", "group": "nogroup", "mode": "0777"}
    if state == "file":
        entry["content"] = "owned\n"

    result, failed = run(monkeypatch, entries=[entry])
    assert failed and "is a link where" in result["msg"]
    assert link.is_symlink() and (outside / "passwd").read_text() == "keep\n"
    assert described(outside)[:2] == (0, 0) and described(outside / "passwd")[:2] == (0, 0)


def test_bad_entries_are_refused_before_anything_changes(monkeypatch, tmp_path):
    good = {"path": str(tmp_path / "made"), "state": "directory", "owner": "root", "group": "root", "mode": "0755"}
    for bad, message in [
        ({"path": str(tmp_path / "f"), "owner": "root", "group": "root", "mode": "0644"}, "needs content"),
        ({"path": str(tmp_path / "f"), "content": "x", "owner": "root", "group": "root", "mode": "644"}, "four octal"),
        ({"path": str(tmp_path / "f"), "content": "x", "owner": "no-such-user", "group": "root", "mode": "0644"},
         "no such user"),
        ({"path": str(tmp_path / "f"), "content": "x"}, "give a mode"),
        ({"path": str(tmp_path / "f"), "content": "x", "owner": "root", "group": "root", "mode": "0644",
          "validate": "true"}, "must contain %s"),
        ({"path": "relative/f", "state": "absent"}, "must be absolute"),
    ]:
        result, failed = run(monkeypatch, entries=[good, bad])
        assert failed and message in result["msg"], (bad, result)
        assert not (tmp_path / "made").exists()


def test_a_folder_that_is_not_empty_is_not_removed(monkeypatch, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    result, failed = run(monkeypatch, entries=[{"path": str(tmp_path / "full"), "state": "absent"}])
    assert failed and "not empty" in result["msg"] and (tmp_path / "full" / "keep").exists()
    (tmp_path / "empty").mkdir()
    result, failed = run(monkeypatch, entries=[{"path": str(tmp_path / "empty"), "state": "absent"}])
    assert not failed and result["changed"] and not (tmp_path / "empty").exists()


def test_without_owner_and_group_an_existing_entry_keeps_them(monkeypatch, tmp_path):
    target = tmp_path / "env.sh"
    target.write_text("old\n")
    os.chown(target, NOBODY, NOGROUP)
    result, failed = run(monkeypatch, entries=[{"path": str(target), "content": "new\n", "mode": "0640"},
                                               {"path": str(tmp_path / "made"), "state": "directory", "mode": "0700"}])
    assert not failed and result["changed"] is True
    assert described(target) == (NOBODY, NOGROUP, "0640") and target.read_text() == "new\n"
    assert described(tmp_path / "made") == (0, 0, "0700")
