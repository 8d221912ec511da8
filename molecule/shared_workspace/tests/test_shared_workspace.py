"""The shared workspace: the one folder the admin and the agent both write (promises 9 and 12).

Every claim is checked by acting as the user it is about, with a restrictive umask, and every
blocked attempt is paired with a control showing the allowed path works.
"""

import json
import os
import shlex
import subprocess
import uuid

import pytest

SHARE = "/srv/agent-workspace"
GROUP = "agent-share"
ADMIN = "admin"
AGENT = "agent"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def as_user(host, user, script):
    """Run `script` as `user` with umask 077, their HOME and their groups (runuser calls initgroups)."""
    return host.run(
        "runuser -u %s -- env HOME=/home/%s sh -c %s" % (user, user, shlex.quote("umask 077; cd /; " + script))
    )


def ok(result):
    assert result.rc == 0, "rc=%s\nstdout: %s\nstderr: %s" % (result.rc, result.stdout, result.stderr)
    return result.stdout


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def git_version(host):
    return tuple(int(p) for p in host.run("git --version").stdout.split()[2].split(".")[:2])


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
    assert ok(as_user(host, ADMIN, "cat /home/%s/secret.txt" % ADMIN)) == "admin-only-secret\n"


def test_symlink_into_admins_home_gives_the_agent_nothing(host):
    # The share is neither sticky nor world-writable, so fs.protected_symlinks does not apply
    # here. What protects is the target: the admin's home is 0700 and the agent cannot
    # traverse it, whatever link points there.
    link = "%s/%s" % (SHARE, unique("peek"))
    ok(as_user(host, AGENT, "ln -s /home/%s/secret.txt %s" % (ADMIN, link)))
    denied = as_user(host, AGENT, "cat %s" % link)
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert "admin-only-secret" not in denied.stdout
    copied = as_user(host, AGENT, "cp %s %s.copy" % (link, link))
    assert copied.rc != 0
    # Control: the link is live; it is the admin's access that follows it (hence the docs:
    # copy out of the share without following links).
    assert ok(as_user(host, ADMIN, "cat %s" % link)) == "admin-only-secret\n"
    assert ok(as_user(host, ADMIN, "cp -P %s %s.admin && readlink %s.admin" % (link, link, link))).strip() == (
        "/home/%s/secret.txt" % ADMIN)


def test_protected_links_are_persisted(host):
    conf = host.file("/etc/sysctl.d/60-agent-sandbox-shared-workspace.conf")
    assert conf.user == "root" and conf.mode == 0o644
    lines = conf.content_string.split()
    assert "fs.protected_symlinks=1" in lines
    assert "fs.protected_hardlinks=1" in lines


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


def test_admin_and_agent_share_a_repository_the_agent_created(host):
    repo = "%s/proj" % SHARE
    git = "git -c user.name=%s -c user.email=%s@example.invalid -C " + repo
    ok(as_user(host, AGENT, "rm -rf %s/.git %s/*; git init -q %s && echo a > %s/a && %s add a && %s commit -q -m agent"
               % (repo, repo, repo, repo, git % (AGENT, AGENT), git % (AGENT, AGENT))))
    # The admin's git trusts it (safe.directory) and can commit into it, with umask 077.
    assert "nothing to commit" in ok(as_user(host, ADMIN, "git -C %s status" % repo))
    ok(as_user(host, ADMIN, "echo b >> %s/a && %s commit -q -am admin" % (repo, git % (ADMIN, ADMIN))))
    # And the agent carries on from the admin's commit.
    assert ok(as_user(host, AGENT, "git -C %s log --format=%%s" % repo)).split() == ["admin", "agent"]


def test_admin_git_refuses_an_agent_repository_outside_the_share(host):
    repo = "/var/tmp/%s" % unique("agentrepo")
    ok(as_user(host, AGENT, "git init -q %s && chmod 0755 %s && chmod -R go+rX %s" % (repo, repo, repo)))
    refused = as_user(host, ADMIN, "git -C %s status" % repo)
    assert refused.rc == 128 and "dubious ownership" in refused.stderr, refused.stderr
    # Control: the agent's own git works there.
    ok(as_user(host, AGENT, "git -C %s status" % repo))


def test_an_unlisted_repository_in_the_share_is_trusted_only_by_git_2_46_and_later(host):
    repo = "%s/%s" % (SHARE, unique("adhoc"))
    ok(as_user(host, AGENT, "git init -q %s" % repo))
    result = as_user(host, ADMIN, "git -C %s status" % repo)
    if git_version(host) >= (2, 46):
        assert result.rc == 0, result.stderr
    else:
        # `<share>/*` is compared literally before git 2.46 (Debian 12): only the share, the
        # projects and the clones are trusted by name. Documented in docs/roles/shared_workspace.md.
        assert result.rc == 128 and "dubious ownership" in result.stderr


def test_agent_works_in_the_admins_clone(host):
    clone = "%s/demo" % SHARE
    assert host.file(clone).user == ADMIN
    assert ok(as_user(host, AGENT, "cat %s/README" % clone)) == "demo\n"
    ok(as_user(host, AGENT, "git -C %s status" % clone))


@pytest.mark.parametrize("user", [ADMIN, AGENT])
def test_git_trusts_exactly_the_share(host, user):
    entries = ok(as_user(host, user, "git config --global --get-all safe.directory")).split()
    assert "*" not in entries
    assert SHARE in entries and SHARE + "/*" in entries
    assert all(e == SHARE or e.startswith(SHARE + "/") for e in entries), entries
    # No system-wide trust was added.
    assert host.run("git config --system --get-all safe.directory").stdout == ""


@pytest.mark.parametrize(
    "path,message",
    [
        ("/", "is a system folder"),
        ("/etc", "is the system folder /etc"),
        ("/usr/local/share/ws", "is inside the system folder /usr"),
        ("/home/admin/share", "is inside the home /home/admin"),
    ],
)
def test_bad_workspace_path_stops_in_validation(host, path, message):
    group = "agent-share-bad"
    watched = "getfacl -cp / /etc /home/admin; stat -c '%a %U %G %n' / /etc /home/admin"
    before = host.run(watched).stdout
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", json.dumps({"shared_workspace_path": path, "shared_workspace_group": group}),
         os.path.join(SCENARIO, "bad_input.yml")],
        capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert message in " ".join(out.split()), out
    assert "changed=0" in out, out
    assert host.run(watched).stdout == before
    assert not host.group(group).exists
    assert not host.file("/home/admin/share").exists
