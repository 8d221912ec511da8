# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The doctor is a file the selftest role installs, not a package: each test loads it afresh."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

DOCTOR = pathlib.Path(__file__).resolve().parents[3] / "roles" / "selftest" / "files" / "agent_sandbox_doctor.py"


@pytest.fixture()
def doctor():
    spec = importlib.util.spec_from_file_location("agent_sandbox_doctor", DOCTOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
