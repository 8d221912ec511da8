# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Command building and output parsing for macOS pfctl(8).

Private to this collection: the pf_anchor and pf_info modules use it, nothing else should.

Every command is an argv list. Rules never travel in argv: they go to pfctl in a file.
The parsers follow the output formats of pfctl on macOS (pf from OpenBSD 4.x with Apple's
enable-reference additions); samples live in tests/unit/fixtures/pfctl/.
"""

from __future__ import annotations

import re

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError

# pfctl resolves the anchor path in the kernel; one component is at most 63 bytes
# (PF_ANCHOR_NAME_SIZE - 1) and the whole path fits in MAXPATHLEN.
_ANCHOR_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ANCHOR_PATH_MAX = 1023

# Apple's own anchor: the main ruleset evaluates "com.apple/*" and the stock pf.conf loads
# Apple's anchor references into "com.apple" itself. Loading or flushing that one would
# drop every Apple sub-anchor (AirDrop, the Application Firewall, Internet Sharing).
_RESERVED_ANCHORS = frozenset(["com.apple"])

# What `pfctl -sr` prints: scrub rules, then filter rules. A dry run with -v prints the same
# lines for those, plus the macro definitions it met (`name = "value"`).
_RULE_WORDS = frozenset(["pass", "block", "scrub"])
_MACRO_LINE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*\s*=\s*".*"$')
# pfctl -v -s rules adds counter lines; normalising them away keeps comparisons exact.
_COUNTER_LINE = re.compile(r"^\[ .* \]$")
_MISSING_ANCHOR = "DIOCGETRULES: Invalid argument"
OPT_DIRS = ["/sbin", "/usr/sbin"]

_STATUS = re.compile(r"^Status:\s+(Enabled|Disabled)\b(?:\s+for\s+(.+?))?(?:\s{2,}Debug:\s+(\S+))?\s*$")
_REFERENCE = re.compile(r"^(\d+)\s+(\S(?:.*?\S)?)\s+(\d+)\s+(\S.*?)\s*$")


class PfctlError(CommandError):
    """The one failure pfctl handling raises; modules turn it into fail_json in one place."""


def validate_anchor_name(name):
    """Return the anchor path if it names exactly one anchor we may replace or flush.

    The empty name is the main ruleset, a trailing '*' would recurse into every sub-anchor,
    and pfctl itself refuses components that begin with '_' from the command line.
    """
    if not isinstance(name, str) or not name:
        raise PfctlError("The anchor name must not be empty: an empty name is the main ruleset, "
                         "which this module never replaces or flushes.")
    problems = []
    if name.startswith("/"):
        problems.append("it starts with '/'")
    if ".." in name:
        problems.append("it contains '..'")
    if any(ch.isspace() for ch in name):
        problems.append("it contains whitespace")
    if len(name) > _ANCHOR_PATH_MAX:
        problems.append("it is longer than %d characters" % _ANCHOR_PATH_MAX)
    if not problems:
        for component in name.split("/"):
            if not _ANCHOR_COMPONENT.match(component):
                problems.append(
                    "component %r must start with a letter or digit and use only letters, digits, "
                    "'.', '_' and '-' (at most 63 characters); empty components, '*' and a leading "
                    "'_' are not allowed" % component)
                break
    if problems:
        raise PfctlError("Refusing anchor name %r: %s." % (name, "; ".join(problems)))
    if name in _RESERVED_ANCHORS:
        raise PfctlError("Refusing anchor name %r: macOS keeps its own anchor references there; "
                         "use a sub-anchor such as 'com.apple/agent_sandbox' instead." % name)
    return name


def rules_to_text(rules):
    """Turn the module's `rules` value (text or a list of lines) into pf.conf text."""
    if rules is None:
        return ""
    if isinstance(rules, (list, tuple)):
        lines = []
        for index, line in enumerate(rules):
            if not isinstance(line, str):
                raise PfctlError("rules[%d] is a %s, not a string." % (index, type(line).__name__))
            lines.append(line)
        text = "\n".join(lines)
    elif isinstance(rules, str):
        text = rules
    else:
        raise PfctlError("rules must be a string or a list of strings, not %s." % type(rules).__name__)
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def _clean(line):
    return " ".join(line.split())


def parse_rules(stdout):
    """Rules as `pfctl -sr` prints them: one canonical line each, whitespace normalised."""
    rules = []
    for line in stdout.splitlines():
        line = _clean(line)
        if line and not _COUNTER_LINE.match(line):
            rules.append(line)
    return rules


def parse_dry_run(stdout):
    """The rules a `pfctl -n -v -f FILE` dry run printed, in the form `-s rules` will show them.

    Macro definitions are skipped. Raises PfctlError for anything pfctl would load that
    `-s rules` on this anchor cannot show (translation rules, tables, nested anchors, options):
    those would make the comparison blind or reach beyond this anchor's filter rules.
    """
    rules, unsupported = [], []
    for raw in stdout.splitlines():
        line = _clean(raw)
        if not line or _MACRO_LINE.match(line):
            continue
        if line.split(" ", 1)[0] in _RULE_WORDS:
            rules.append(line)
        else:
            unsupported.append(line)
    if unsupported:
        raise PfctlError(
            "pf_anchor manages the filter rules of one anchor and compares them with `pfctl -sr`; "
            "pfctl parsed statements it cannot compare or that reach beyond this anchor's filter "
            "rules (translation rules, tables, nested anchors or options): %s" % "; ".join(unsupported))
    return rules


def parse_info(stdout):
    """Parse `pfctl -s info`: whether pf is enabled, for how long, and the debug level."""
    for line in stdout.splitlines():
        match = _STATUS.match(line.strip())
        if match:
            return {
                "enabled": match.group(1) == "Enabled",
                "status": _clean(line),
                "running_for": match.group(2),
                "debug": match.group(3),
            }
    raise PfctlError("pfctl -s info printed no 'Status:' line.", stdout=stdout)


def parse_references(stdout):
    """Parse `pfctl -s References`: the enable references taken with `pfctl -E`.

    Header lines ("TOKENS:", "PID  Process Name  TOKEN  TIMESTAMP") and anything else that is
    not a row are skipped; the timestamp is kept as printed.
    """
    references = []
    for line in stdout.splitlines():
        match = _REFERENCE.match(line.strip())
        if match:
            references.append({
                "pid": int(match.group(1)),
                "process": match.group(2),
                "token": match.group(3),
                "timestamp": match.group(4),
            })
    return references


def parse_anchors(stdout):
    """Parse `pfctl -v -s Anchors`: one anchor path per line, indented by pfctl."""
    return [line.strip() for line in stdout.splitlines() if line.strip()]


def parse_interfaces(stdout):
    """Parse `pfctl -v -s Interfaces`: names, and those pf skips ("lo0 (skip)")."""
    names, skipped = [], []
    for line in stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        names.append(fields[0])
        if "(skip)" in fields[1:]:
            skipped.append(fields[0])
    return names, skipped


def rules_diff_text(rules):
    return "".join(line + "\n" for line in rules)


_NOISE = ("No ALTQ support in kernel", "ALTQ related functions disabled")


def _failure_message(failure, stderr, stdout, rc):
    """`failure` plus pfctl's own words, without the ALTQ banner macOS prints on every call."""
    lines = [line.strip() for line in (stderr or stdout).splitlines()]
    lines = [line for line in lines if line and line not in _NOISE]
    return "%s (rc=%s): %s" % (failure, rc, " ".join(lines) if lines else "no output")


def find_pfctl(module):
    """The pfctl_path option, or pfctl looked up in the PATH, /sbin and /usr/sbin."""
    return module.params["pfctl_path"] or module.get_bin_path("pfctl", required=True, opt_dirs=OPT_DIRS)


class Pfctl:
    """Runs pfctl through AnsibleModule.run_command; every failure becomes a PfctlError."""

    def __init__(self, module, path):
        self.module = module
        self.path = path

    # Command builders: pure, so tests can assert the exact argv.
    def show_rules_cmd(self, anchor):
        if anchor:
            return [self.path, "-a", anchor, "-s", "rules"]
        return [self.path, "-s", "rules"]

    def dry_run_cmd(self, anchor, rules_file):
        return [self.path, "-a", anchor, "-n", "-v", "-f", rules_file]

    def load_cmd(self, anchor, rules_file):
        return [self.path, "-a", anchor, "-f", rules_file]

    def flush_rules_cmd(self, anchor):
        return [self.path, "-a", anchor, "-F", "rules"]

    def flush_states_cmd(self):
        # pf has one state table for every ruleset and pfctl ignores -a for this flush, so the
        # argv says what happens. "state" rather than "states": pfctl matches modifiers by
        # prefix and older pfctl lists the word as "state".
        return [self.path, "-F", "state"]

    def info_cmd(self):
        return [self.path, "-s", "info"]

    def references_cmd(self):
        return [self.path, "-s", "References"]

    def anchors_cmd(self):
        return [self.path, "-v", "-s", "Anchors"]

    def interfaces_cmd(self):
        return [self.path, "-v", "-s", "Interfaces"]

    def run(self, cmd, failure):
        """Run cmd; on a non-zero exit raise PfctlError saying `failure` plus pfctl's own words."""
        rc, stdout, stderr = self.module.run_command(cmd)
        if rc != 0:
            raise PfctlError(_failure_message(failure, stderr, stdout, rc), cmd=cmd, rc=rc, stdout=stdout, stderr=stderr)
        return stdout, stderr

    def show_rules(self, anchor):
        cmd = self.show_rules_cmd(anchor)
        rc, stdout, stderr = self.module.run_command(cmd)
        if _MISSING_ANCHOR in stderr:
            # The kernel drops an anchor once it holds no rules; pfctl then warns and prints nothing.
            return []
        if rc != 0:
            raise PfctlError(_failure_message("Could not read the rules of anchor %r" % anchor, stderr, stdout, rc),
                             cmd=cmd, rc=rc, stdout=stdout, stderr=stderr)
        return parse_rules(stdout)

    def dry_run(self, anchor, rules_file):
        cmd = self.dry_run_cmd(anchor, rules_file)
        stdout, stderr = self.run(cmd, "pfctl rejected the rules for anchor %r" % anchor)
        try:
            return parse_dry_run(stdout)
        except PfctlError as exc:
            raise PfctlError(exc.msg, cmd=cmd, rc=0, stdout=stdout, stderr=stderr) from None

    def load(self, anchor, rules_file):
        return self.run(self.load_cmd(anchor, rules_file), "Could not load the rules into anchor %r" % anchor)

    def flush_rules(self, anchor):
        return self.run(self.flush_rules_cmd(anchor), "Could not flush the rules of anchor %r" % anchor)

    def flush_states(self):
        return self.run(self.flush_states_cmd(), "Could not flush the pf state table")

    def info(self):
        stdout, dummy = self.run(self.info_cmd(), "Could not read the pf status")
        return parse_info(stdout)

    def references(self):
        stdout, dummy = self.run(self.references_cmd(), "Could not read the pf enable references")
        return parse_references(stdout)

    def anchors(self):
        stdout, dummy = self.run(self.anchors_cmd(), "Could not list the pf anchors")
        return parse_anchors(stdout)

    def interfaces(self):
        stdout, dummy = self.run(self.interfaces_cmd(), "Could not list the pf interfaces")
        return parse_interfaces(stdout)
