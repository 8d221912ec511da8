"""Fixtures for the proxy policy addon tests. The package is imported from the role, as the proxy runs it."""
import pathlib
import sys

import pytest

PACKAGE_PARENT = pathlib.Path(__file__).resolve().parents[3] / "roles" / "mitm_proxy" / "files"
if str(PACKAGE_PARENT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_PARENT))

from proxy_helpers import Env  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)
