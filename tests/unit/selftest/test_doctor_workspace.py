# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The doctor's reading of the shared workspace: which safe.directory entries trust it, and where
the .git folders and bare repositories are (the Molecule default scenario runs it on a live host)."""
from __future__ import annotations

import pytest

# The doctor fixture (conftest.py) loads the file the selftest role installs.


@pytest.mark.parametrize("entry", ["*", "/srv/ws", "/srv/ws/", "/srv/ws/*", "/srv/ws/proj", "/srv/*", "/*"])
def test_entries_that_trust_the_share(doctor, entry):
    assert doctor.covers(entry, "/srv/ws")


@pytest.mark.parametrize("entry", ["/srv/ws2", "/srv/ws2/*", "/srv/w", "/home/admin/src", "/srv/other/*", ""])
def test_entries_that_do_not(doctor, entry):
    assert not doctor.covers(entry, "/srv/ws")


def test_git_folders_finds_work_trees_bare_and_nested_repositories(doctor, tmp_path):
    (tmp_path / "a" / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "a" / "sub" / ".git").mkdir(parents=True)
    bare = tmp_path / "b" / "planted"
    (bare / "objects").mkdir(parents=True)
    (bare / "refs").mkdir()
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "node_modules" / "x" / ".git").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    found = sorted(doctor.git_folders(str(tmp_path)))
    assert found == sorted([str(tmp_path / "a" / ".git"), str(tmp_path / "a" / "sub" / ".git"), str(bare)])


def test_git_control_paths_name_the_hooks_but_not_the_samples(doctor, tmp_path):
    hooks = tmp_path / ".git" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\n")
    (hooks / "pre-push.sample").write_text("#!/bin/sh\n")
    paths = doctor.git_control_paths(str(tmp_path / ".git"))
    assert str(hooks / "pre-commit") in paths and str(hooks / "pre-push.sample") not in paths
    assert str(tmp_path / ".git" / "config") in paths


def test_go_betweens_are_notes_not_checks(doctor, monkeypatch):
    present = {"/usr/sbin/sendmail", "/run/avahi-daemon/socket"}
    monkeypatch.setattr(doctor.os.path, "exists", lambda path: path in present)
    checker = doctor.Doctor({}, "agent")
    checker.go_betweens()
    assert checker.results == []
    assert len(checker.notes) == 2 and "sendmail" in checker.notes[0] and "avahi" in checker.notes[1]
    present.clear()
    checker = doctor.Doctor({}, "agent")
    checker.go_betweens()
    assert checker.notes == []
