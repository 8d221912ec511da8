"""Fixtures for the proxy policy addon tests. proxy_helpers puts the role's files folder on sys.path,
so the tests import agent_sandbox_proxy as the proxy's unit does."""
import pytest

from proxy_helpers import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)
