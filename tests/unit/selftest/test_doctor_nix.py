# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor checks that the Nix build users' group is in the firewall's rules (issue 18)."""
from __future__ import annotations

import grp
import importlib.util
import pathlib

import pytest

DOCTOR = pathlib.Path(__file__).resolve().parents[3] / "roles" / "selftest" / "files" / "agent_sandbox_doctor.py"

# `nft list chain inet agent_sandbox output` as nft 1.0 prints it (a host with one agent and Nix on).
CHAIN = (
    "table inet agent_sandbox {\n"
    "\tchain output {\n"
    "\t\ttype filter hook output priority filter; policy accept;\n"
    "\t\tmeta skuid 1000 jump agent_1000\n"
    "\t\tmeta skgid %s jump group_%s\n"
    "\t}\n"
    "}\n"
)


def load_doctor():
    spec = importlib.util.spec_from_file_location("agent_sandbox_doctor", DOCTOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def doctor(tmp_path, monkeypatch):
    """A Doctor whose `nft` is a stand-in printing the chain in $FAKE_CHAIN, and whose nixbld has gid 996."""
    nft = tmp_path / "nft"
    nft.write_text('#!/bin/sh\n[ -n "$FAKE_NFT_FAIL" ] && { echo "Operation not permitted" >&2; exit 1; }\n'
                   'printf "%s" "$FAKE_CHAIN"\n')
    nft.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, "/usr/bin:/bin"))
    module = load_doctor()
    real = grp.getgrnam

    def getgrnam(name):
        if name == "nixbld":
            return grp.struct_group(("nixbld", "x", 996, []))
        return real(name)

    monkeypatch.setattr(module.grp, "getgrnam", getgrnam)
    return module.Doctor({}, "agent")


def test_confined_build_users_pass(doctor, monkeypatch):
    monkeypatch.setenv("FAKE_CHAIN", CHAIN % (996, 996))
    doctor.nix_builds()
    assert [r["status"] for r in doctor.results] == ["PASS"]


def test_unconfined_build_users_fail(doctor, monkeypatch):
    # Another group in the rules is not the build users'.
    monkeypatch.setenv("FAKE_CHAIN", CHAIN % (4242, 4242))
    doctor.nix_builds()
    assert [r["status"] for r in doctor.results] == ["FAIL"]
    assert "reaches the network directly" in doctor.results[0]["happened"]


def test_unreadable_rules_fail(doctor, monkeypatch):
    monkeypatch.setenv("FAKE_NFT_FAIL", "1")
    doctor.nix_builds()
    assert [r["status"] for r in doctor.results] == ["FAIL"]
    assert "Operation not permitted" in doctor.results[0]["happened"]


def test_no_build_users_no_check(doctor, monkeypatch):
    monkeypatch.setattr(doctor, "cfg", {"nix_build_group": "no-such-group-agent-sandbox"})
    doctor.nix_builds()
    assert doctor.results == []
