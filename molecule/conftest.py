# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loaded by pytest for every scenario's verifier (the repo's pytest.ini makes the repo root
pytest's rootdir, so this file is a parent conftest of molecule/*/tests): it puts
molecule/shared on the path, so the tests import their helpers from one place
(`from testlib import as_user, refusals`)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared"))
