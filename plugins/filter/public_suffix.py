# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter wildcard_exposure: who may own the names a wildcard rule `*.SUFFIX` lets the agent reach.

The data is the Public Suffix List as the `publicsuffixlist` package ships it
(roles/mitm_proxy/files/public_suffix_list.dat.gz, gzipped byte for byte from the package pinned in requirements.txt; `make psl`
refreshes it). Its ICANN section lists the
suffixes under which anyone can register a domain (com, co.uk); its private section the ones under
which anyone can get a subdomain of a provider (github.io, workers.dev, s3.amazonaws.com).
"""
from __future__ import annotations

import gzip
import os

DOCUMENTATION = r"""
name: wildcard_exposure
short_description: Whether a wildcard's suffix is, or covers, a public suffix
version_added: 0.2.0
description:
  - For the suffix of a wildcard host rule (C(github.io) for C(*.github.io)), says whether anyone can own a name
    below it, from the Public Suffix List shipped with the collection.
  - O(_input) is a public suffix itself (C(com), C(co.uk), C(github.io)), or a name above one (C(amazonaws.com)
    is above C(s3.amazonaws.com)), or a single label (C(*.corp) covers a whole top-level domain).
options:
  _input:
    description: The suffix after C(*.), in ASCII or Unicode; a trailing dot is ignored.
    type: str
    required: true
author: agent-sandbox developers
"""

EXAMPLES = r"""
- name: Refuse a wildcard anyone can register under
  ansible.builtin.assert:
    that: ('co.uk' | agent_sandbox.native.wildcard_exposure).section == ''
"""

RETURN = r"""
_value:
  description: What the suffix exposes.
  type: dict
  contains:
    section:
      description: V(icann) (anyone can register below), V(private) (anyone can get a subdomain below), or empty.
      type: str
    suffix:
      description: The public suffix that decided it (the input itself, or one below it).
      type: str
    list_version:
      description: The list's VERSION line.
      type: str
"""

# The collection's own layout: plugins/filter/ and roles/ sit side by side, installed or not.
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles", "mitm_proxy", "files",
                    "public_suffix_list.dat.gz")
_CACHE = {}


def _ace(name):
    """ASCII form of a name (punycode per label), lowercase, without a trailing dot; None if it has none."""
    name = name.strip().rstrip(".").lower()
    try:
        return ".".join(label.encode("idna").decode("ascii") if not label.isascii() else label
                        for label in name.split("."))
    except UnicodeError:
        return None


def load(path=DATA):
    """{rule: section} for the plain and wildcard rules, the exception rules, and the list's version."""
    if path in _CACHE:
        return _CACHE[path]
    rules, exceptions, section, version = {}, set(), "", ""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("// VERSION:"):
                version = line.split(":", 1)[1].strip()
            elif "===BEGIN ICANN DOMAINS===" in line:
                section = "icann"
            elif "===BEGIN PRIVATE DOMAINS===" in line:
                section = "private"
            elif line and not line.startswith("//") and section:
                entry = line.split()[0]
                bang = entry.startswith("!")
                ace = _ace(entry.lstrip("!"))
                if ace is None:
                    continue
                if bang:
                    exceptions.add(ace)
                else:
                    rules[ace] = section
    _CACHE[path] = (rules, exceptions, version)
    return _CACHE[path]


def wildcard_exposure(suffix, path=DATA):
    rules, exceptions, version = load(path)
    name = _ace(suffix or "")
    result = {"section": "", "suffix": "", "list_version": version}
    if not name:
        return result
    # The suffix itself: a listed rule, or a name a wildcard rule (*.parent) makes public.
    parent = name.split(".", 1)[1] if "." in name else ""
    if name in rules:
        return dict(result, section=rules[name], suffix=name)
    if parent and "*." + parent in rules and name not in exceptions:
        return dict(result, section=rules["*." + parent], suffix=name)
    if "." not in name:  # an unlisted top-level domain: the list's default rule "*"
        return dict(result, section="icann", suffix=name)
    # A name above public suffixes: the wildcard reaches every name below them too.
    below = sorted(rule for rule in rules if rule.endswith("." + name))
    if below:
        icann = [rule for rule in below if rules[rule] == "icann"]
        first = (icann or below)[0]
        return dict(result, section=rules[first], suffix=first[2:] if first.startswith("*.") else first)
    return result


class FilterModule:
    def filters(self):
        return {"wildcard_exposure": wildcard_exposure}
