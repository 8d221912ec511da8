# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m agent_sandbox_proxy: the validators, or mitmdump with the addon built in.

With ``mitmdump -s`` mitmproxy keeps running *without* an addon that cannot be imported;
``--mitmdump`` adds the addon to the master itself, so an import error stops the proxy.
"""
from __future__ import annotations

import argparse
import sys

from .control import load_control
from .policy import PolicyError, load_policy
from .secrets import load_secrets


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--mitmdump"]:
        try:
            import mitmproxy  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            print("agent_sandbox_proxy: mitmproxy is not importable by %s" % sys.executable, file=sys.stderr)
            return 2
        from .addon import run_mitmdump  # pylint: disable=import-outside-toplevel
        return run_mitmdump(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m agent_sandbox_proxy",
        description="Validate agent-sandbox proxy files: policy, secrets, the admin's control file "
                    "(exit 0 when valid, 2 with the reason when not), "
                    "or run mitmdump with the policy addon built in (--mitmdump ARGS...).")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check-policy", metavar="FILE")
    group.add_argument("--check-secrets", metavar="FILE")
    group.add_argument("--check-control", metavar="FILE")
    args = parser.parse_args(argv)
    path = args.check_policy or args.check_secrets or args.check_control
    try:
        if args.check_policy:
            policy = load_policy(path)
            print("%s: valid policy: %d rules, %d listener profiles" % (path, policy.rule_count, len(policy.listeners)))
        elif args.check_control:
            control = load_control(path)
            print("%s: valid control file: %d approvals, %d denials, ask mode on %d listeners, learning on %d"
                  % (path, len(control.approved), len(control.denied), len(control.ask), len(control.learn)))
        else:
            secrets = load_secrets(path)
            print("%s: valid secrets file: %d secrets" % (path, len(secrets.secrets)))
    except PolicyError as exc:
        print("%s: %s" % (path, exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
