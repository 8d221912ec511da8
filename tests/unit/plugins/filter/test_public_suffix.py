# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""wildcard_exposure on the shipped Public Suffix List: ICANN and private suffixes, names above them,
exact hosts under them, punycode and trailing dots; and the shipped list is the pinned package's."""
from __future__ import annotations

import gzip
import pathlib

import pytest

from ansible_collections.agent_sandbox.native.plugins.filter import public_suffix
from ansible_collections.agent_sandbox.native.plugins.filter.closest import closest


@pytest.mark.parametrize("suffix,section,decided_by", [
    # ICANN: anyone can register a domain below.
    ("com", "icann", "com"),
    ("co.uk", "icann", "co.uk"),
    ("COM", "icann", "com"),
    ("com.", "icann", "com"),             # a trailing dot is the same name
    ("xn--p1ai", "icann", "xn--p1ai"),    # .рф in punycode
    ("рф", "icann", "xn--p1ai"),          # ... and in Unicode
    ("corp", "icann", "corp"),            # not listed: the list's default rule "*" makes every TLD public
    # Private: anyone can get a subdomain of a provider below.
    ("github.io", "private", "github.io"),
    ("workers.dev", "private", "workers.dev"),
    ("vercel.app", "private", "vercel.app"),
    ("herokuapp.com", "private", "herokuapp.com"),
    ("s3.amazonaws.com", "private", "s3.amazonaws.com"),
    ("ngrok.io", "private", "ngrok.io"),
])
def test_public_suffixes(suffix, section, decided_by):
    found = public_suffix.wildcard_exposure(suffix)
    assert (found["section"], found["suffix"]) == (section, decided_by)


def test_a_name_above_private_suffixes_covers_them():
    # *.amazonaws.com would reach every bucket under s3.amazonaws.com and more.
    found = public_suffix.wildcard_exposure("amazonaws.com")
    assert found["section"] == "private" and found["suffix"].endswith(".amazonaws.com")


@pytest.mark.parametrize("suffix", [
    "example.com", "github.com", "myorg.github.io", "pypi.org", "api.anthropic.com",
    "www.ck",          # an exception rule (!www.ck) under the wildcard rule *.ck
    "objects.githubusercontent.com",
])
def test_names_anyone_cannot_own_below(suffix):
    assert public_suffix.wildcard_exposure(suffix)["section"] == ""


def test_wildcard_rules_make_their_children_public():
    # *.ck: every name directly under ck is public, except the listed exception.
    assert public_suffix.wildcard_exposure("anything.ck")["section"] == "icann"


def test_the_list_has_both_sections_and_a_version():
    rules, exceptions, version = public_suffix.load()
    assert version and len(rules) > 9000 and exceptions
    assert {"icann", "private"} == set(rules.values())


def test_the_shipped_list_is_the_pinned_package_list():
    """roles/mitm_proxy/files/public_suffix_list.dat.gz is a gzipped copy of the list in the publicsuffixlist package pinned in
    requirements.txt; `make psl` refreshes it. A hand edit, or a new pin without `make psl`, fails here."""
    import publicsuffixlist as package  # pinned in requirements.txt: never skipped
    shipped = gzip.decompress(pathlib.Path(public_suffix.DATA).read_bytes())
    pinned = (pathlib.Path(package.__file__).parent / "public_suffix_list.dat").read_bytes()
    assert shipped == pinned


@pytest.mark.parametrize("given,expected", [("hots", "host"), ("port", "ports"), ("metods", "methods"), ("zzz", "")])
def test_closest_names_the_key_that_was_meant(given, expected):
    assert closest(given, ["host", "ports", "methods", "paths", "name", "comment"]) == expected
