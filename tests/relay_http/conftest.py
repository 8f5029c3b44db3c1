"""Fixtures for the relay HTTP tests (helpers live in ``relay_http_support``)."""

from __future__ import annotations

import pytest
from relay_http_support import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
