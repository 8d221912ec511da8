"""The admin's daily loop, as the admin and the agent do it: ask mode (a blocked host held, allowed or
denied from another shell), learning mode (a proposal from real traffic; the proxy ends it by itself),
the doctor failing while learning, and `agent-sandbox log` counting what happened.

The hosts opened here (ask.test, deny.test, learn-*.test) have no rule in the inventory; they live on
private addresses of the container's loopback (molecule/shared/fake_internet.yml), because a host
opened at run time may never lead to this machine."""
import json
import shlex
import time

import pytest

FAKE_LOG = "/var/log/fake-internet/requests.jsonl"


def admin(host, command):
    """As the admin, a member of the audit group, without sudo."""
    return host.run("runuser -u admin -- %s" % command)


def agent_curl(url):
    """The agent's request through its own login shell (its proxy settings); prints 'CODE CONNECT-CODE'."""
    return ("runuser -l agent -c %s" % json.dumps(
        "curl -sS -m 60 -o /dev/null -w '%{http_code} %{http_connect}' " + url))


def fake_requests(host, site):
    lines = host.file(FAKE_LOG).content_string.splitlines()
    return [r for r in map(json.loads, lines) if r.get("site") == site]


def answer_held(host, url, verdict):
    """The agent asks for url (held); the admin finds it with `pending`, answers as root; what the agent got."""
    script = """
set -u
out=$(mktemp)
%(curl)s >"$out" 2>/dev/null &
pid=$!
id=
for i in $(seq 150); do
  id=$(runuser -u admin -- agent-sandbox pending --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["pending"]; print(p[0]["id"] if p else "")')
  [ -n "$id" ] && break
  sleep 0.2
done
echo "ID $id"
runuser -u admin -- agent-sandbox pending
agent-sandbox %(verdict)s "$id"
wait $pid
echo "AGENT GOT $(cat "$out")"
""" % {"curl": agent_curl(url), "verdict": verdict}
    return host.run("bash -c %s" % shlex.quote(script))


@pytest.fixture(scope="module")
def ask_mode(host):
    started = time.time()
    on = host.run("agent-sandbox ask on --agent agent --timeout 30")
    assert on.rc == 0, on.stderr
    yield started
    host.run("agent-sandbox ask off --agent agent")
    host.run("agent-sandbox revoke ask.test --agent agent")


def test_a_held_request_goes_through_once_the_admin_allows_it(host, ask_mode):
    before = len(fake_requests(host, "ask.test"))
    out = answer_held(host, "https://ask.test/", "allow")
    assert out.rc == 0, out.stdout + out.stderr
    assert "CONNECT ask.test:443" in out.stdout          # what `pending` showed the admin
    assert "allowed ask.test:443 for agent until" in out.stdout
    assert "AGENT GOT 200 200" in out.stdout
    assert len(fake_requests(host, "ask.test")) == before + 1
    records = [r for r in audit(host) if r["host"] == "ask.test"]
    assert records and all(r["decision"] == "allow" for r in records)
    connect = [r for r in records if r["method"] == "CONNECT"][-1]
    assert connect["rule"].startswith("approved ") and connect["rule"].endswith("(private address 10.99.0.1)")
    assert records[-1]["method"] == "GET" and records[-1]["rule"].startswith("approved ")
    # Approved now: the next request is not held.
    started = time.monotonic()
    assert host.run(agent_curl("https://ask.test/")).stdout == "200 200"
    assert time.monotonic() - started < 10


def test_a_denied_request_gets_the_policy_403(host, ask_mode):
    before = len(fake_requests(host, "deny.test"))   # prepare.yml checked the site directly
    seen = len(audit(host))
    out = answer_held(host, "https://deny.test/", "deny")
    assert out.rc == 0, out.stdout + out.stderr
    assert "AGENT GOT 000 403" in out.stdout
    assert len(fake_requests(host, "deny.test")) == before
    assert [r["reason"] for r in audit(host)[seen:] if r["host"] == "deny.test"] == ["denied"]


def test_what_cannot_be_approved_is_refused_at_once(host, ask_mode):
    for url, reason in (("https://10.99.0.1/", "ip-literal"), ("https://127.0.10.1/", "ip-literal"),
                        ("https://localhost/", "no-rule"), ("http://169.254.169.254/latest/meta-data/", "ip-literal")):
        started = time.monotonic()
        got = host.run(agent_curl(url)).stdout
        assert got in ("000 403", "403 000"), (url, got)
        assert time.monotonic() - started < 10, url   # not held for the 30 s of ask mode
        assert audit(host)[-1]["reason"] == reason, url
    assert json.loads(admin(host, "agent-sandbox pending --json").stdout)["pending"] == []
    # Control: an allowed host still works in ask mode, unheld.
    assert host.run(agent_curl("https://allowed.test/")).stdout == "200 200"


def audit(host):
    lines = host.file("/var/log/agent-sandbox/proxy/audit.jsonl").content_string.splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_the_log_counts_what_the_loop_did(host, ask_mode):
    since = int(time.time() - ask_mode) + 1   # what this module's tests did (a rerun of verify adds to the log)
    out = admin(host, "agent-sandbox log --agent agent --since %ds --json" % since)
    assert out.rc == 0, out.stderr
    hosts = {h["host"]: h for a in json.loads(out.stdout)["agents"] for h in a["hosts"]}
    # ask.test: the held CONNECT and its GET, then the unheld CONNECT and GET; deny.test: one refusal.
    assert (hosts["ask.test"]["allowed"], hosts["ask.test"]["blocked"]) == (4, 0)
    assert (hosts["deny.test"]["allowed"], hosts["deny.test"]["blocked"], hosts["deny.test"]["reasons"]) == (
        0, 1, {"denied": 1})
    assert hosts["10.99.0.1"]["reasons"] == {"ip-literal": 1}
    text = admin(host, "agent-sandbox status").stdout
    assert "ask mode            agent (holds 30 s)" in text


LEARN = """
set -u
# Learning is on once the file says so and the proxy has read it (it looks at most once a second).
learning() {
  for i in $(seq 50); do grep -q '"learn"' /etc/agent-sandbox/control.json 2>/dev/null && break; sleep 0.2; done
  sleep 1.2
}
agent-sandbox learn --agent agent --for 10m --write /root/proposal.yml >/root/learn.out 2>/root/learn.err &
pid=$!
learning
for site in learn-one learn-two learn-three; do
  %(one)s; echo " $site"
done
%(ip)s; echo " ip"
kill -TERM $pid
wait $pid
echo "learn rc $?"
# Again, for the doctor alone (its probes, made as the agent, would be part of a proposal).
agent-sandbox learn --agent agent --for 10m >/dev/null 2>&1 &
pid=$!
learning
runuser -u admin -- agent-sandbox doctor --json >/root/doctor-learning.json
echo "doctor rc $?"
kill -TERM $pid
wait $pid
"""


def test_learning_proposes_exactly_what_was_used_and_the_doctor_fails_meanwhile(host):
    assert host.run("agent-sandbox ask off --agent agent").rc == 0   # else the ended hosts would be held
    script = LEARN % {"one": agent_curl("https://$site.test/v1/models"),
                      "ip": agent_curl("https://10.99.0.3/")}
    out = host.run("bash -c %s" % shlex.quote(script))
    assert out.rc == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[:4] == ["200 200 learn-one", "200 200 learn-two", "200 200 learn-three", "000 403 ip"], out.stdout
    assert "doctor rc 1" in lines and "learn rc 0" in lines
    report = json.loads(host.file("/root/doctor-learning.json").content_string)
    learning = [r for r in report["results"] if r["check"] == "learning mode off"]
    assert learning and learning[0]["status"] == "FAIL" and "learning mode on until" in learning[0]["happened"]
    proposal = host.file("/root/proposal.yml").content_string
    assert proposal == host.file("/root/learn.out").content_string
    hosts = [line.split('"')[1] for line in proposal.splitlines() if line.startswith("  - ")]
    assert hosts == ["learn-one.test", "learn-three.test", "learn-two.test"], proposal
    assert '    paths: ["/v1/"]' in proposal and '    methods: ["GET", "HEAD"]' in proposal
    assert "# + learn-one.test  (new)" in proposal and "#   allowed.test" not in proposal
    assert "#   10.99.0.3  (ip-literal, 1)" in proposal
    # Ended: the doctor's check passes again, and the hosts are refused.
    assert host.run(agent_curl("https://learn-one.test/")).stdout == "000 403"


def test_the_proxy_ends_learning_at_the_deadline_without_the_command(host):
    script = """
set -u
agent-sandbox learn --agent agent --for 6s >/dev/null 2>&1 &
pid=$!
for i in $(seq 50); do grep -q '"learn"' /etc/agent-sandbox/control.json 2>/dev/null && break; sleep 0.2; done
sleep 1.2
kill -KILL $pid
%(one)s; echo " during"
sleep 6
%(one)s; echo " after"
""" % {"one": agent_curl("https://learn-two.test/")}
    out = host.run("bash -c %s" % shlex.quote(script))
    assert out.stdout.splitlines() == ["200 200 during", "000 403 after"], out.stdout + out.stderr
    # The dead command's entry is still in the file; the proxy and the doctor both read it as over.
    assert "learn" in host.file("/etc/agent-sandbox/control.json").content_string
    assert "learn mode          off" in admin(host, "agent-sandbox status").stdout
