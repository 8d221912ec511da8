"""The agent user is confined (threat model promises 8, 9 and 11).

Every claim about the agent is checked by acting as the agent, next to a
control showing that the allowed path works, so a broken test host cannot
make a refusal look like a protection.
"""

import json

import pytest
from testlib import as_user, refusals

AGENT = "agent"
ADMIN = "admin"
PRIVILEGED = {"sudo", "wheel", "admin", "adm", "root", "disk", "shadow", "systemd-journal", "docker", "lxd"}


def agent_uid(host):
    return host.user(AGENT).uid


# Promise 8: the account itself.

def test_agent_has_a_locked_password_a_login_shell_and_its_own_group(host):
    agent = host.user(AGENT)
    assert agent.exists
    assert agent.shell == "/bin/bash"
    assert agent.group == AGENT
    assert host.run("passwd -S %s" % AGENT).stdout.split()[1] == "L"
    assert host.user(ADMIN).password.startswith("$6$")  # control: the admin's is a real hash


def test_agent_slice_has_the_default_resource_limits(host):
    uid = host.user(AGENT).uid
    conf = host.file("/etc/systemd/system/user-%d.slice.d/agent-sandbox.conf" % uid)
    assert conf.user == "root" and conf.mode == 0o644
    shown = host.check_output("systemctl show user-%d.slice -p MemoryMax -p TasksMax -p CPUWeight -p IOWeight" % uid)
    assert {"TasksMax=4096", "CPUWeight=50", "IOWeight=50"} <= set(shown.split()), shown
    assert "MemoryMax=infinity" not in shown, shown  # 50% of the container's memory, in bytes
    # Control: the admin's slice keeps systemd's defaults.
    admin = host.check_output("systemctl show user-%d.slice -p CPUWeight -p TasksMax" % host.user(ADMIN).uid)
    assert "CPUWeight=50" not in admin and "TasksMax=4096" not in admin, admin


def test_agent_home_is_private(host):
    home = host.file("/home/%s" % AGENT)
    assert home.user == AGENT
    assert home.mode == 0o700


def test_agent_is_in_no_privileged_group(host):
    groups = set(as_user(host, AGENT, "id -Gn").stdout.split())
    assert groups == {AGENT}
    assert not groups & PRIVILEGED
    # Control: prepare put the agent in adm, and adm is still there for others.
    assert host.group("adm").exists
    assert AGENT not in host.run("getent group adm").stdout.strip().split(":")[-1].split(",")


def test_agent_has_no_sudo_rights(host):
    refused = as_user(host, AGENT, "sudo -n true")
    assert refused.rc != 0
    assert as_user(host, AGENT, "sudo -n -l").rc != 0
    # Control: sudo works on this host, for the admin towards the agent.
    assert as_user(host, ADMIN, "sudo -n -u %s true" % AGENT).rc == 0


def test_admin_can_become_the_agent_and_nothing_else_through_the_role(host):
    assert as_user(host, ADMIN, "sudo -n -u %s id -un" % AGENT).stdout.strip() == AGENT
    # The drop-in grants nothing towards root or another user (the admin here has no other rule).
    assert as_user(host, ADMIN, "sudo -n true").rc != 0
    assert as_user(host, ADMIN, "sudo -n -u bystander true").rc != 0


def test_sudoers_drop_in_is_valid_and_root_owned(host):
    f = host.file("/etc/sudoers.d/agent-sandbox")
    assert f.user == "root"
    assert f.mode == 0o440
    assert host.run("visudo -c").rc == 0
    assert "use_pty" in f.content_string
    assert f.content_string.count("NOPASSWD") == 1


def test_agent_cannot_become_the_admin(host):
    assert as_user(host, AGENT, "sudo -n -u %s true" % ADMIN).rc != 0
    wrong = as_user(host, AGENT, "su %s -c 'id -un'" % ADMIN, stdin="not-the-password")
    assert wrong.rc != 0
    assert ADMIN not in wrong.stdout
    empty = as_user(host, AGENT, "su %s -c 'id -un' </dev/null" % ADMIN)
    assert empty.rc != 0
    # Control: su itself works from the agent when the password is known,
    # so the refusals above are about the password, not a broken su.
    right = as_user(host, AGENT, "su %s -c 'id -un'" % ADMIN, stdin="admin-test-password")
    assert right.stdout.strip() == ADMIN


def test_nobody_can_log_in_as_the_agent_with_a_password(host):
    # The agent's own password is locked: even an empty or guessed one fails.
    for guess in ("", AGENT):
        assert as_user(host, ADMIN, "su %s -c true" % AGENT, stdin=guess).rc != 0


# Promise 9: other homes.

def test_agent_cannot_read_the_admins_files(host):
    assert as_user(host, AGENT, "cat /home/%s/secret.txt" % ADMIN).rc != 0
    assert as_user(host, AGENT, "ls /home/%s" % ADMIN).rc != 0
    # Control: the admin still can.
    assert as_user(host, ADMIN, "cat /home/%s/secret.txt" % ADMIN).stdout == "only for the admin\n"
    assert host.file("/home/%s" % ADMIN).mode & 0o007 == 0


def test_agent_cannot_read_other_human_homes(host):
    # sandbox_user_protect_all_homes is on in this scenario.
    assert as_user(host, AGENT, "cat /home/bystander/notes.txt").rc != 0
    assert as_user(host, "bystander", "cat /home/bystander/notes.txt").rc == 0


# Promise 11: no work that outlives the session.

def test_agent_cannot_use_crontab(host):
    listed = as_user(host, AGENT, "crontab -l")
    assert listed.rc != 0
    assert "not allowed" in listed.stderr
    installed = as_user(host, AGENT, "crontab -", stdin="* * * * * touch /tmp/agent-was-here")
    assert installed.rc != 0
    assert "not allowed" in installed.stderr
    assert not host.file("/var/spool/cron/crontabs/%s" % AGENT).exists


def test_admin_can_use_crontab(host):
    assert as_user(host, ADMIN, "crontab -", stdin="# agent-sandbox control").rc == 0
    try:
        assert as_user(host, ADMIN, "crontab -l").stdout.strip() == "# agent-sandbox control"
    finally:
        as_user(host, ADMIN, "crontab -r")


def test_agent_cannot_use_at(host):
    refused = as_user(host, AGENT, "at now + 1 hour", stdin="touch /tmp/agent-was-here")
    assert refused.rc != 0
    assert "permission" in refused.stderr
    # Control: the admin can queue a job (removed right away).
    queued = as_user(host, ADMIN, "at now + 1 hour", stdin="true")
    assert queued.rc == 0, queued.stderr
    as_user(host, ADMIN, "atq | cut -f1 | xargs -r atrm")


def test_agent_does_not_linger(host):
    assert not host.file("/var/lib/systemd/linger/%s" % AGENT).exists


# Promise 4 of issue 18: the agent cannot read other users' command lines or environments.

SECRET = "s3cr3t-in-argv"
HIDE_UNIT = "agent-sandbox-hide-processes.service"


@pytest.fixture()
def admin_secret_process(host):
    """A process of the admin with a secret on its command line and in its environment; yields its pid."""
    host.check_output("systemd-run --quiet --unit hide-test-admin --uid %s --setenv ADMIN_TOKEN=%s-env "
                      "bash -c 'exec -a \"tool --token=%s\" sleep 600'" % (ADMIN, SECRET, SECRET))
    try:
        pid = host.check_output("systemctl show -p MainPID --value hide-test-admin.service")
        assert pid not in ("", "0"), "the admin's test process did not start"
        yield pid
    finally:
        host.run("systemctl stop hide-test-admin.service")


def what_agent_sees(host, pid):
    """Every way the agent could look at the admin's process, and what it got."""
    return {
        "ps aux": as_user(host, AGENT, "ps aux").stdout,
        "pgrep -af": as_user(host, AGENT, "pgrep -af token").stdout,
        "cmdline": as_user(host, AGENT, "tr '\\0' ' ' < /proc/%s/cmdline" % pid).stdout,
        "environ": as_user(host, AGENT, "tr '\\0' ' ' < /proc/%s/environ" % pid).stdout,
        "status": as_user(host, AGENT, "cat /proc/%s/status" % pid).stdout,
    }


def test_agent_cannot_read_other_users_command_lines_or_environments(host, admin_secret_process):
    pid = admin_secret_process
    options = host.check_output("findmnt -no OPTIONS /proc")
    group_gid = host.group("agent-sandbox-ps").gid
    assert "hidepid=invisible" in options and "gid=%d" % group_gid in options, options
    assert host.service(HIDE_UNIT).is_enabled
    assert "agent-sandbox-ps" not in host.user(AGENT).groups
    # systemd-logind has no CAP_SYS_PTRACE: it keeps seeing every process through the group.
    logind = host.check_output("grep '^Groups:' /proc/$(systemctl show -p MainPID --value systemd-logind)/status")
    assert str(group_gid) in logind.split(), logind
    seen = what_agent_sees(host, pid)
    for how, out in seen.items():
        assert SECRET not in out, "the agent read the admin's secret through %s: %s" % (how, out)
    assert "sleep" not in seen["ps aux"], seen["ps aux"]
    # Controls: root, and the admin (in the group that sees every process), see the process;
    # the agent sees its own.
    assert SECRET in host.check_output("tr '\\0' ' ' < /proc/%s/cmdline" % pid)
    admin = as_user(host, ADMIN, "ps aux; tr '\\0' ' ' < /proc/%s/environ" % pid)
    assert "tool --token=%s" % SECRET in admin.stdout and "ADMIN_TOKEN=%s-env" % SECRET in admin.stdout, admin.stdout
    own = as_user(host, AGENT, "sleep 30 & ps ax -o args=; kill $!")
    assert "sleep 30" in [line.strip() for line in own.stdout.splitlines()], own.stdout


def test_the_same_process_is_readable_without_hidepid_and_the_unit_hides_it_again(host, admin_secret_process):
    """The control beside the refusal: with /proc mounted as Debian leaves it, the same probes
    show the secret; restarting the unit (what runs at boot) hides it again."""
    pid = admin_secret_process
    try:
        host.check_output("mount -o remount,hidepid=off,gid=0 /proc")
        seen = what_agent_sees(host, pid)
        assert SECRET in seen["ps aux"] and SECRET in seen["cmdline"], seen
    finally:
        host.check_output("systemctl restart %s" % HIDE_UNIT)
    assert all(SECRET not in out for out in what_agent_sees(host, pid).values())


# The agent's environment.

EXPECTED_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:8080",
    "HTTPS_PROXY": "http://127.0.0.1:8080",
    "http_proxy": "http://127.0.0.1:8080",
    "https_proxy": "http://127.0.0.1:8080",
    "SSL_CERT_FILE": "/etc/agent-sandbox/ca-bundle.pem",
    "REQUESTS_CA_BUNDLE": "/etc/agent-sandbox/ca-bundle.pem",
    "CURL_CA_BUNDLE": "/etc/agent-sandbox/ca-bundle.pem",
    "NODE_EXTRA_CA_CERTS": "/etc/agent-sandbox/ca-bundle.pem",
    "GIT_SSL_CAINFO": "/etc/agent-sandbox/ca-bundle.pem",
    "PIP_CERT": "/etc/agent-sandbox/ca-bundle.pem",
    "CARGO_HTTP_CAINFO": "/etc/agent-sandbox/ca-bundle.pem",
    "GITHUB_TOKEN": "agent-sandbox-placeholder-github",
}


def login_env(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_login_shell_has_proxy_and_ca_variables(host):
    env = login_env(host.run("sudo -u %s -i env" % AGENT).stdout)
    for name, value in EXPECTED_ENV.items():
        assert env.get(name) == value, name
    assert "NO_PROXY" not in env and "no_proxy" not in env
    assert env["PATH"].split(":")[0] == "/nix/var/nix/profiles/agent-sandbox/bin"
    # Control: the admin's login shell has none of it.
    assert "HTTPS_PROXY" not in login_env(host.run("sudo -u %s -i env" % ADMIN).stdout)


def test_bash_zsh_and_fish_config_is_in_place(host):
    home = "/home/%s" % AGENT
    env_sh = "%s/.config/agent-sandbox/env.sh" % home
    for name in (".profile", ".bashrc", ".zshenv", ".zprofile"):
        f = host.file("%s/%s" % (home, name))
        assert f.user == AGENT
        assert env_sh in f.content_string, name
    fish = host.file("%s/.config/fish/conf.d/agent-sandbox.fish" % home).content_string
    assert "set -gx HTTPS_PROXY 'http://127.0.0.1:8080'" in fish
    assert host.run("sh -n %s" % env_sh).rc == 0
    # The user's own template folder was rendered, .j2 dropped.
    assert 'proxy = "http://127.0.0.1:8080"' in host.file("%s/.config/tool/settings.toml" % home).content_string


def test_umask_and_git_settings(host):
    assert as_user(host, ADMIN, "agent-run sh -c umask").stdout.strip() == "0007"
    git = as_user(host, ADMIN, "agent-run git config --get-regexp '^(user|url)\\.'").stdout.splitlines()
    assert "user.email agent@agent-sandbox.invalid" in git
    assert "url.https://github.com/.insteadof git@github.com:" in git
    assert "url.https://github.com/.insteadof ssh://git@github.com/" in git


# agent-run.

def test_agent_run_runs_as_the_agent(host):
    out = as_user(host, ADMIN, "agent-run id -u")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == str(agent_uid(host))
    # Control: without agent-run the admin is the admin.
    assert as_user(host, ADMIN, "id -u").stdout.strip() == str(host.user(ADMIN).uid)


def test_agent_run_starts_in_the_workspace_with_arguments_unchanged(host):
    assert as_user(host, ADMIN, "agent-run pwd").stdout.strip() == "/srv/agent-workspace"
    out = as_user(host, ADMIN, "agent-run printf '[%s]' '$HOME' 'a b' '*'")
    assert out.stdout == "[$HOME][a b][*]"


def test_agent_run_without_arguments_is_a_login_shell(host):
    out = as_user(host, ADMIN, "agent-run", stdin="echo \"$HTTPS_PROXY $(id -un) $(pwd)\"")
    assert out.stdout.strip() == "http://127.0.0.1:8080 %s /srv/agent-workspace" % AGENT


def test_agent_run_user_takes_only_an_agent(host):
    # No account lookup (getent is not on macOS): the agents agent-run was written for.
    out = as_user(host, ADMIN, "agent-run --user %s id -un" % AGENT)
    assert (out.rc, out.stdout.strip()) == (0, AGENT), out.stderr
    out = as_user(host, ADMIN, "agent-run --user %s id -un" % ADMIN)
    assert out.rc == 2 and "is not an agent" in out.stderr, out.stdout + out.stderr


# Bad input stops in validation, before anything changes.

# Each case: input the role must refuse, and what its failure must say.
BAD_INPUT = {
    "The agent must not be root": {"sandbox_user_agents": [{"name": "root", "port": 8080}]},
    "The agent must not be the admin": {"sandbox_user_agents": [{"name": ADMIN, "port": 8080}]},
    "A user name must match": {"sandbox_user_agents": [{"name": "Bad Name", "port": 8080}]},
    "is a user of agent-sandbox itself": {"sandbox_user_agents": [{"name": "agent-proxy", "port": 8080}]},
    "belongs to 'admin'": {"sandbox_user_agents": [{"name": "agent2", "port": 8080, "uid": "{{ ansible_facts.getent_passwd.admin[1] }}"}]},
    # prepare.yml made /home/kept-home, the admin's folder: a teardown's kept home must be the agent's own.
    "belongs to the account admin": {"sandbox_user_agents": [{"name": "kept-home", "port": 8080}]},
    # The agents' resource limits: each kind of mistake, named with what was given.
    "sandbox_user_memory_max must be bytes with K, M, G or T (4G), a percentage of the host's memory (50%) or "
    "infinity (got lots)": {"sandbox_user_memory_max": "lots"},
    "sandbox_user_tasks_max a number of at least 32 or infinity (got 5)": {"sandbox_user_tasks_max": 5},
    "sandbox_user_cpu_weight and sandbox_user_io_weight between 1 and 10000 (got 0, 50)": {"sandbox_user_cpu_weight": 0},
}
# One check lists every problem of the settings (tasks/validate.yml).
BAD_INPUT_TASK = "Check the sandbox_user settings"
WATCHED_STATE = ("sha256sum /etc/sudoers.d/agent-sandbox /etc/passwd /etc/group /etc/cron.deny "
                 "/etc/systemd/system/user-*.slice.d/agent-sandbox.conf")


@pytest.fixture(scope="module")
def bad_input_report():
    """Every bad-input case on every host, in one ansible-playbook run (testlib.refusals), which
    reads the watched files' checksums before and after each case."""
    return refusals("Apply sandbox_user with bad input", "agent_sandbox.native.sandbox_user",
                    {case: dict(settings, sandbox_user_admin=ADMIN) for case, settings in BAD_INPUT.items()},
                    WATCHED_STATE)


@pytest.mark.parametrize("message", BAD_INPUT)
def test_bad_input_stops_in_validation(host, bad_input_report, message):
    result = bad_input_report[host.backend.get_hostname()][message]
    assert result["failure"], "the role accepted %s: %s" % (BAD_INPUT[message], bad_input_report["output"])
    failure = json.dumps(result["failure"])
    assert message in failure, failure
    assert result["failure"]["task"] == BAD_INPUT_TASK, failure
    assert result["after"] == result["before"]
    # The checksums the run read are the live ones, and nothing changed them since.
    assert host.check_output(WATCHED_STATE) == result["before"]
    assert not host.user("agent2").exists and not host.user("kept-home").exists
    assert host.file("/home/kept-home").user == "admin"
