"""Fixtures for the proxy policy addon tests."""
import pytest

from proxy_helpers import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)
