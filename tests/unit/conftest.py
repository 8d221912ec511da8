"""Shared pytest setup for the unit tests."""
import pathlib
import sys

# `make venv` links this checkout as .collections/ansible_collections/agent_sandbox/native, so the
# tests import plugins the way Ansible does: ansible_collections.agent_sandbox.native.plugins...
_COLLECTIONS = pathlib.Path(__file__).resolve().parents[2] / ".collections"
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))
