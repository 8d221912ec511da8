"""The shared workspace: the one folder the admin and the agent both write (promises 9 and 12).

Every claim is checked by acting as the user it is about, with a restrictive umask, and every
blocked attempt is paired with a control showing the allowed path works.
"""

import functools
import json
import os
import shlex
import uuid

import pytest
import testlib

SHARE = "/srv/agent-workspace"
GROUP = "agent-share"
ADMIN = "admin"
AGENT = "agent"


# With a restrictive umask, their HOME and their groups.
as_user = functools.partial(testlib.as_user, umask="077")


def ok(result):
    assert result.rc == 0, "rc=%s\nstdout: %s\nstderr: %s" % (result.rc, result.stdout, result.stderr)
    return result.stdout


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def test_share_is_owned_by_admin_and_group_setgid_2770(host):
    share = host.file(SHARE)
    assert share.is_directory
    assert share.user == ADMIN
    assert share.group == GROUP
    assert share.mode == 0o2770


def test_share_has_inheritable_acl(host):
    acl = ok(host.run("getfacl -cp %s" % SHARE)).split()
    for entry in (
        "group:%s:rwx" % GROUP,
        "user:%s:rwx" % AGENT,
        "other::---",
        "default:user::rwx",
        "default:group::rwx",
        "default:group:%s:rwx" % GROUP,
        "default:user:%s:rwx" % ADMIN,
        "default:user:%s:rwx" % AGENT,
        "default:mask::rwx",
        "default:other::---",
    ):
        assert entry in acl, acl


def test_both_users_are_members_of_the_group(host):
    for user in (ADMIN, AGENT):
        assert GROUP in host.user(user).groups


@pytest.mark.parametrize("author,editor", [(AGENT, ADMIN), (ADMIN, AGENT)])
def test_a_file_one_user_creates_the_other_can_edit(host, author, editor):
    path = "%s/%s.txt" % (SHARE, unique("by-" + author))
    ok(as_user(host, author, "echo 'from %s' > %s" % (author, path)))
    # umask 077 would give 0600 without the default ACL.
    assert host.file(path).user == author
    assert host.file(path).group == GROUP
    ok(as_user(host, editor, "echo 'from %s' >> %s" % (editor, path)))
    assert ok(as_user(host, author, "cat %s" % path)) == "from %s\nfrom %s\n" % (author, editor)
    # Others (not in the group, no ACL entry) get nothing.
    assert host.run("runuser -u nobody -- cat %s" % path).rc != 0


@pytest.mark.parametrize("author,other", [(AGENT, ADMIN), (ADMIN, AGENT)])
def test_a_folder_one_user_creates_inherits_group_and_acl(host, author, other):
    folder = "%s/%s" % (SHARE, unique("dir-by-" + author))
    ok(as_user(host, author, "mkdir %s" % folder))
    d = host.file(folder)
    assert d.group == GROUP
    assert d.mode & 0o2000, "setgid is inherited"
    acl = ok(host.run("getfacl -cp %s" % folder)).split()
    assert "default:group:%s:rwx" % GROUP in acl
    assert "default:user:%s:rwx" % ADMIN in acl
    assert "default:user:%s:rwx" % AGENT in acl
    assert "mask::rwx" in acl
    # The other user can create in it, and the author can then edit that file.
    ok(as_user(host, other, "mkdir %s/sub && echo one > %s/sub/f" % (folder, folder)))
    ok(as_user(host, author, "echo two >> %s/sub/f && rm -r %s/sub" % (folder, folder)))


def test_named_acl_entries_work_in_a_session_older_than_the_membership(host):
    # A login session started before the user joined the group lacks it; the named entries
    # still let each user edit the other's files.
    path = "%s/%s.txt" % (SHARE, unique("old-session"))
    ok(as_user(host, AGENT, "echo a > %s" % path))
    ok(host.run(
        "setpriv --reuid=%s --regid=%s --clear-groups sh -c 'umask 077; echo b >> %s'" % (ADMIN, ADMIN, path)))
    ok(host.run(
        "setpriv --reuid=%s --regid=%s --clear-groups sh -c 'echo c >> %s'" % (AGENT, AGENT, path)))
    assert host.file(path).content_string == "a\nb\nc\n"


def test_agent_cannot_read_the_admins_home(host):
    denied = as_user(host, AGENT, "cat /home/%s/secret.txt" % ADMIN)
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert as_user(host, AGENT, "ls /home/%s" % ADMIN).rc != 0
    # Control: the admin reads it.
    assert ok(as_user(host, ADMIN, "cat /home/%s/secret.txt" % ADMIN)) == "only for the admin\n"


def test_symlink_into_admins_home_gives_the_agent_nothing(host):
    # The share is neither sticky nor world-writable, so fs.protected_symlinks does not apply
    # here. What protects is the target: the admin's home is 0700 and the agent cannot
    # traverse it, whatever link points there.
    link = "%s/%s" % (SHARE, unique("peek"))
    ok(as_user(host, AGENT, "ln -s /home/%s/secret.txt %s" % (ADMIN, link)))
    denied = as_user(host, AGENT, "cat %s" % link)
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert "only for the admin" not in denied.stdout
    copied = as_user(host, AGENT, "cp %s %s.copy" % (link, link))
    assert copied.rc != 0
    # Control: the link is live; it is the admin's access that follows it (hence the docs:
    # copy out of the share without following links).
    assert ok(as_user(host, ADMIN, "cat %s" % link)) == "only for the admin\n"
    assert ok(as_user(host, ADMIN, "cp -P %s %s.admin && readlink %s.admin" % (link, link, link))).strip() == (
        "/home/%s/secret.txt" % ADMIN)


def test_protected_links_are_persisted(host):
    conf = host.file("/etc/sysctl.d/60-agent-sandbox-shared-workspace.conf")
    assert conf.user == "root" and conf.mode == 0o644
    lines = conf.content_string.split()
    assert "fs.protected_symlinks=1" in lines
    assert "fs.protected_hardlinks=1" in lines
    assert "fs.protected_regular=2" in lines
    assert "fs.protected_fifos=2" in lines


def test_agent_cannot_hardlink_a_file_of_the_admin_into_the_share(host):
    if host.file("/proc/sys/fs/protected_hardlinks").content_string.strip() != "1":
        pytest.skip("fs.protected_hardlinks is off on the Docker host's kernel")
    # A file of the admin the agent can read but not write, outside the share (same file system).
    target = "/var/tmp/%s" % unique("admin-note")
    ok(host.run("install -o %s -g %s -m 0644 /dev/null %s" % (ADMIN, ADMIN, target)))
    link = "%s/%s" % (SHARE, unique("hardlink"))
    denied = as_user(host, AGENT, "ln %s %s" % (target, link))
    assert denied.rc != 0 and "Operation not permitted" in denied.stderr
    assert not host.file(link).exists
    # Control: the agent may hardlink a file of its own from the same place.
    own = "/var/tmp/%s" % unique("agent-note")
    ok(as_user(host, AGENT, "touch %s && ln %s %s" % (own, own, link)))
    assert host.file(link).user == AGENT


# --------------------------------------------------------------------------------------------
# Links (issue 18, promise 2): in the admin's no-follow view, a link an agent planted in the share
# sends no read or write of the admin outside the share. The controls do the same through the
# share's own path, where the kernel follows the link.
# --------------------------------------------------------------------------------------------
VIEW = SHARE + "-nofollow"


def test_the_no_follow_view_is_the_share_mounted_with_nosymfollow(host):
    mount = ok(host.run("findmnt -n -o SOURCE,OPTIONS --mountpoint %s" % VIEW))
    assert "nosymfollow" in mount.split()[-1].split(","), mount
    name = unique("seen")
    ok(as_user(host, ADMIN, "echo here > %s/%s" % (VIEW, name)))
    assert host.file("%s/%s" % (SHARE, name)).content_string == "here\n"
    assert host.service(ok(host.run("systemd-escape --path --suffix=mount %s" % VIEW)).strip()).is_enabled


@pytest.mark.parametrize("action", ["append", "copy-onto", "copy-out", "into-folder"])
def test_a_planted_link_does_not_redirect_the_admin_in_the_view(host, action):
    secret = "/home/%s/secret.txt" % ADMIN
    before = host.file(secret).content_string
    name = unique("link")
    if action == "into-folder":
        ok(as_user(host, AGENT, "ln -s /home/%s %s/%s" % (ADMIN, SHARE, name)))
        command = "cp /etc/hostname {root}/%s/planted-by-link" % name
        landed = "/home/%s/planted-by-link" % ADMIN
    else:
        ok(as_user(host, AGENT, "ln -s %s %s/%s" % (secret, SHARE, name)))
        command = {
            "append": "echo 'admin note' >> {root}/%s" % name,
            "copy-onto": "cp /etc/hostname {root}/%s" % name,
            "copy-out": "cp {root}/%s {root}/%s.bak" % (name, name),
        }[action]
        landed = None
    refused = as_user(host, ADMIN, command.format(root=VIEW))
    assert refused.rc != 0 and "Too many levels of symbolic links" in refused.stderr, refused.stderr
    assert host.file(secret).content_string == before
    assert not host.file("%s/%s.bak" % (SHARE, name)).exists
    if landed:
        assert not host.file(landed).exists
    # Control: through the share's own path the kernel follows the agent's link.
    try:
        ok(as_user(host, ADMIN, command.format(root=SHARE)))
        if action == "copy-out":
            assert ok(as_user(host, AGENT, "cat %s/%s.bak" % (SHARE, name))) == before
        elif landed:
            assert host.file(landed).exists
        else:
            assert host.file(secret).content_string != before
    finally:
        host.run("printf %%s %s > %s; rm -f /home/%s/planted-by-link" % (shlex.quote(before), secret, ADMIN))


# --------------------------------------------------------------------------------------------
# Git (issue 18, promise 1): nothing an agent writes in the share makes the admin's git run a
# program or contact a host. Each plant below fires when the admin's git trusts the repository
# (the controls), and does nothing in the arrangements the role sets up.
# --------------------------------------------------------------------------------------------
MARKS = "/var/tmp/git-plant"
ADMIN_GIT = "git -c user.name=admin -c user.email=admin@example.invalid"
AGENT_GIT = "git -c user.name=agent -c user.email=agent@example.invalid"
# What an admin types in a repository every day.
ADMIN_COMMANDS = ["status", "diff", "log -1", "commit -qam admin", "checkout -q -b from-admin", "switch -q -",
                  "fetch -q origin", "pull -q origin main", "push -q origin HEAD:refs/heads/from-admin-$$",
                  "rebase -q HEAD"]


def marks(host, name):
    path = "%s/%s" % (MARKS, name)
    return host.file(path).content_string.split() if host.file(path).exists else []


def plant(repo_git, name):
    """Shell that makes the repository at repo_git run `id -un >> MARKS/name` in every way it can."""
    mark = "id -un >> %s/%s" % (MARKS, name)
    config = {
        "core.fsmonitor": mark + "; true",
        "core.pager": mark + "; cat",
        "core.editor": mark + "; true",
        "core.sshCommand": mark + "; false",
        "diff.external": mark + "; true",
        "filter.x.clean": mark + "; cat",
        "filter.x.smudge": mark + "; cat",
        "remote.origin.uploadpack": mark + "; false",
        "remote.origin.receivepack": mark + "; false",
        "sequence.editor": mark + "; true",
    }
    lines = ["git config --file %s/config %s %s" % (repo_git, key, shlex.quote(value)) for key, value in config.items()]
    for hook in ("pre-commit", "post-commit", "post-checkout", "pre-push", "reference-transaction", "pre-rebase",
                 "post-merge", "post-rewrite"):
        lines.append("printf '#!/bin/sh\\n%s\\n' > %s/hooks/%s && chmod 0755 %s/hooks/%s"
                     % (mark, repo_git, hook, repo_git, hook))
    return " && ".join(lines)


@pytest.fixture(scope="module", autouse=True)
def mark_folder(host):
    ok(host.run("install -d -m 1777 %s" % MARKS))


def admin_repo(host, path, adopt):
    """A repository the admin creates in the share, with a remote and one commit, optionally adopted."""
    ok(as_user(host, ADMIN, "umask 022; git clone -q file:///opt/fixtures/demo.git %s && echo x >> %s/README"
               % (path, path)))
    ok(as_user(host, ADMIN, "%s -C %s commit -qam start && %s -C %s branch -q other" % (ADMIN_GIT, path, ADMIN_GIT, path)))
    if adopt:
        said = ok(host.run("agent-sandbox-adopt %s --owner %s" % (path, ADMIN))).splitlines()
        assert said[-1].startswith("changed:"), said


def test_admin_git_refuses_a_repository_an_agent_made(host):
    repo = "%s/%s" % (SHARE, unique("agent-made"))
    name = os.path.basename(repo)
    ok(as_user(host, AGENT, "git clone -q file:///opt/fixtures/agent-demo.git %s && echo y >> %s/README && "
               "echo 'a filter=x' > %s/.gitattributes" % (repo, repo, repo)))
    ok(as_user(host, AGENT, plant(repo + "/.git", name)))
    for command in ADMIN_COMMANDS:
        refused = as_user(host, ADMIN, "cd %s && %s %s" % (repo, ADMIN_GIT, command))
        # `git diff` outside a repository it trusts falls back to comparing paths (--no-index) and
        # stops with its usage (129); every other command stops at the ownership check (128).
        assert refused.rc in (128, 129) and ("dubious ownership" in refused.stderr or
                                             "Not a git repository" in refused.stderr), (command, refused.stderr)
    # The shell prompt of many admins runs this in every folder they enter.
    refused = as_user(host, ADMIN, "cd %s && git rev-parse --abbrev-ref HEAD" % repo)
    assert refused.rc == 128
    assert marks(host, name) == []
    # Control: the plant is live. With the trust the role no longer gives, the admin's git runs it.
    fired = as_user(host, ADMIN, "cd %s && %s -c safe.directory=%s status" % (repo, ADMIN_GIT, repo))
    assert fired.rc == 0, fired.stderr
    assert ADMIN in marks(host, name)


def test_agent_cannot_change_the_git_of_the_admins_repository(host):
    repo = "%s/%s" % (SHARE, unique("admin-adopted"))
    name = os.path.basename(repo)
    admin_repo(host, repo, adopt=True)
    attempts = [
        plant(repo + "/.git", name),
        "echo '[include] path = %s/evil.cfg' >> %s/.git/config" % (SHARE, repo),
        "echo %s/elsewhere > %s/.git/commondir" % (SHARE, repo),
        "mv %s/.git/config %s/.git/config.old" % (repo, repo),
        "mkdir %s/.git/modules" % repo,
        "echo %s > %s/.git/objects/info/alternates" % (SHARE, repo),
        "touch %s/.git/hooks/new" % repo,
    ]
    for attempt in attempts:
        denied = as_user(host, AGENT, attempt)
        assert denied.rc != 0 and "Permission denied" in denied.stderr, (attempt, denied.stderr)
    # Swapping the whole .git for one of its own makes the admin's git refuse the repository.
    ok(as_user(host, AGENT, "cd %s && mv .git .git-admin && git init -q . && %s" % (repo, plant(".git", name))))
    refused = as_user(host, ADMIN, "git -C %s status" % repo)
    assert refused.rc == 128 and "dubious ownership" in refused.stderr
    ok(host.run("cd %s && rm -rf .git && mv .git-admin .git" % repo))
    # The admin's daily commands work and run nothing of the agent's.
    ok(as_user(host, AGENT, "echo 'from the agent' >> %s/README" % repo))
    for command in ADMIN_COMMANDS:
        result = as_user(host, ADMIN, "cd %s && %s %s" % (repo, ADMIN_GIT, command))
        assert result.rc == 0, (command, result.stderr)
    assert marks(host, name) == []
    # The agent reads the history (its own trust, which git before 2.46 does not take from `<share>/*`)
    # but cannot commit.
    agent_git = "%s -c safe.directory=%s -C %s" % (AGENT_GIT, repo, repo)
    assert "admin" in ok(as_user(host, AGENT, "%s log -1 --format=%%s" % agent_git))
    denied = as_user(host, AGENT, "%s commit -qam agent" % agent_git)
    assert denied.rc != 0 and "Permission denied" in denied.stderr


def test_an_admin_repository_is_open_until_it_is_adopted(host):
    # Control for the test above: the same plant in a repository the admin made but did not adopt
    # runs as the admin. The doctor lists such repositories (default scenario).
    repo = "%s/%s" % (SHARE, unique("admin-open"))
    name = os.path.basename(repo)
    admin_repo(host, repo, adopt=False)
    ok(as_user(host, AGENT, plant(repo + "/.git", name)))
    ok(as_user(host, ADMIN, "git -C %s status" % repo))
    assert ADMIN in marks(host, name)
    # Adopting it for the admin switches the planted hooks off and lists the settings to review.
    out = ok(host.run("agent-sandbox-adopt %s --owner %s" % (repo, ADMIN)))
    assert "disabled hook: %s/.git/hooks/pre-commit" % repo in out
    assert "review: %s/.git/config sets core.fsmonitor" % repo in out
    assert host.run("agent-sandbox-adopt %s --check" % repo).rc == 0


def test_adopt_refuses_what_it_must_not_bless(host):
    repo = "%s/%s" % (SHARE, unique("admin-include"))
    admin_repo(host, repo, adopt=False)
    ok(as_user(host, AGENT, "git config --file %s/.git/config include.path %s/evil.cfg" % (repo, SHARE)))
    refused = host.run("agent-sandbox-adopt %s --owner %s" % (repo, ADMIN))
    assert refused.rc == 2 and "includes other files" in refused.stderr
    # A link the agent planted cannot send the adoption outside the share.
    link = "%s/%s" % (SHARE, unique("to-admin-home"))
    ok(as_user(host, AGENT, "ln -s /home/%s %s" % (ADMIN, link)))
    refused = host.run("agent-sandbox-adopt %s --owner %s" % (link, AGENT))
    assert refused.rc == 2 and "not inside the shared workspace" in refused.stderr
    assert host.file("/home/%s" % ADMIN).user == ADMIN
    refused = host.run("agent-sandbox-adopt %s --owner nobody" % repo)
    assert refused.rc == 2 and "must be one of" in refused.stderr


def test_the_agent_works_in_its_own_clone_and_the_admin_takes_its_commits(host):
    clone = "%s/demo" % SHARE
    assert host.file(clone + "/.git").user == AGENT
    assert ok(host.run("agent-sandbox-adopt %s --check" % clone)).splitlines()[-1].startswith("ok:")
    # (git's upload-pack refuses a local repository of another user, the admin's fixture here; the
    # agent fetches from one of its own, as it would from a remote over HTTPS through the proxy.)
    ok(as_user(host, AGENT, "cd %s && %s switch -q -c %s && echo more >> README && %s commit -qam 'agent work' "
               "&& git fetch -q file:///opt/fixtures/agent-demo.git main:refs/remotes/mine/main"
               % (clone, AGENT_GIT, unique("topic"), AGENT_GIT)))
    # The admin's git refuses the agent's clone ...
    refused = as_user(host, ADMIN, "git -C %s log -1" % clone)
    assert refused.rc == 128 and "dubious ownership" in refused.stderr
    # ... and takes its commits as data: a bundle the agent's git writes, fetched into the admin's repository.
    bundle = host.check_output("mktemp /var/tmp/agent-XXXXXX.bundle")
    ok(host.run("chown %s %s && runuser -u %s -- git -C %s bundle create - HEAD > %s" % (ADMIN, bundle, AGENT, clone, bundle)))
    mine = "/home/%s/%s" % (ADMIN, unique("mine"))
    ok(as_user(host, ADMIN, "git clone -q file:///opt/fixtures/demo.git %s && git -C %s fetch -q %s HEAD:agent-work"
               % (mine, mine, bundle)))
    assert ok(as_user(host, ADMIN, "git -C %s log -1 --format=%%s agent-work" % mine)).strip() == "agent work"


def test_the_admins_clone_keeps_its_git_to_the_admin(host):
    clone = "%s/admin-demo" % SHARE
    assert host.file(clone + "/.git").user == ADMIN
    assert as_user(host, AGENT, "touch %s/.git/hooks/pre-commit" % clone).rc != 0
    ok(as_user(host, ADMIN, "git -C %s status" % clone))


def test_an_agent_repository_at_the_share_root_captures_no_admin_git(host):
    # git looks upwards for a repository: one at the share root would cover every plain folder.
    name = unique("root-repo")
    try:
        ok(as_user(host, AGENT, "git init -q %s && %s" % (SHARE, plant(SHARE + "/.git", name))))
        refused = as_user(host, ADMIN, "cd %s/proj && git status" % SHARE)
        assert refused.rc == 128 and "dubious ownership" in refused.stderr
        assert marks(host, name) == []
    finally:
        host.run("rm -rf %s/.git" % SHARE)


def test_a_bare_repository_planted_in_an_admin_folder_is_not_used(host):
    folder = "%s/proj/%s" % (SHARE, unique("plain"))
    name = os.path.basename(folder)
    ok(as_user(host, ADMIN, "mkdir %s" % folder))
    # The folder is the admin's: the ownership check alone would let it through.
    ok(as_user(host, AGENT, "cd %s && git init -q --bare . && git config --file config core.bare false && "
               "git config --file config core.worktree %s && %s" % (folder, folder, plant(".", name))))
    assert host.file(folder).user == ADMIN
    refused = as_user(host, ADMIN, "cd %s && git status" % folder)
    assert refused.rc != 0 and "bare repository" in refused.stderr, refused.stderr
    assert marks(host, name) == []
    # Control: with git's default (`all`) the admin's git uses it and runs the plant.
    as_user(host, ADMIN, "cd %s && git -c safe.bareRepository=all status" % folder)
    assert ADMIN in marks(host, name)


def test_git_trust_settings(host):
    # The admin trusts nothing in the share and uses no implicit bare repository ...
    admin = as_user(host, ADMIN, "git config --global --get-all safe.directory")
    assert not [e for e in admin.stdout.split() if e == "*" or e.startswith(SHARE)], admin.stdout
    assert ok(as_user(host, ADMIN, "git config --global safe.bareRepository")).strip() == "explicit"
    # ... the agents list exactly the share, to read the admin's repositories.
    entries = ok(as_user(host, AGENT, "git config --global --get-all safe.directory")).split()
    assert "*" not in entries
    assert SHARE in entries and SHARE + "/*" in entries
    assert all(e == SHARE or e.startswith(SHARE + "/") for e in entries), entries
    # No system-wide trust was added.
    assert host.run("git config --system --get-all safe.directory").stdout == ""


def test_admin_python_does_not_import_the_agents_modules(host):
    folder = "%s/proj" % SHARE
    name = unique("venv")
    ok(as_user(host, AGENT, "printf 'import os\\nos.system(\"id -un >> %s/%s\")\\n' > %s/venv.py"
               % (MARKS, name, folder)))
    try:
        # Whether or not venv itself succeeds here, the agent's venv.py must not run.
        host.run("runuser -l %s -c %s" % (ADMIN, shlex.quote("cd %s && python3 -m venv --without-pip /var/tmp/%s"
                                                             % (folder, name))))
        assert marks(host, name) == []
        # Control: without PYTHONSAFEPATH the admin's python runs the agent's venv.py.
        host.run("runuser -l %s -c %s" % (ADMIN, shlex.quote("cd %s && env -u PYTHONSAFEPATH python3 -m venv x"
                                                             % folder)))
        assert marks(host, name) == [ADMIN]
    finally:
        host.run("rm -f %s/venv.py" % folder)


# Each workspace path the role must refuse in validation, and what its failure must say.
BAD_PATHS = {
    "/": "is a system folder",
    "/etc": "is the system folder /etc",
    "/usr/local/share/ws": "is inside the system folder /usr",
    "/home/admin/share": "is inside the home /home/admin",
}
BAD_GROUP = "agent-share-bad"
WATCHED = "getfacl -cp / /etc /home/admin; stat -c '%a %U %G %n' / /etc /home/admin"


@pytest.fixture(scope="module")
def bad_path_report():
    """Every bad path on every host, in one ansible-playbook run (testlib.refusals)."""
    return testlib.refusals("Apply shared_workspace with a bad path", "agent_sandbox.native.shared_workspace",
                            {path: {"shared_workspace_path": path, "shared_workspace_group": BAD_GROUP} for path in BAD_PATHS},
                            WATCHED, gather=True)


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_workspace_path_stops_in_validation(host, bad_path_report, path):
    result = bad_path_report[host.backend.get_hostname()][path]
    assert result["failure"], "the role accepted %s: %s" % (path, bad_path_report["output"])
    failure = " ".join(json.dumps(result["failure"]).split())
    assert BAD_PATHS[path] in failure, failure
    assert result["failure"]["task"].startswith("Check"), failure  # validation, before any change
    assert result["after"] == result["before"] == host.check_output(WATCHED)
    assert not host.group(BAD_GROUP).exists
    assert not host.file("/home/admin/share").exists
