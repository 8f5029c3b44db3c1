"""Fixtures for the several-workers tests (helpers live in ``workerkit``).

They reuse the relay HTTP test support (PKI, node configs, agreements) and the chaos
suite's process and delivery helpers: both folders are put on the import path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "relay_http"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "chaos"))

from relay_http_support import Pki, make_pki


@pytest.fixture(scope="session")
def workers_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("workers-pki"))


from dbkit import database  # noqa: E402, F401 - the fixture, on SQLite and PostgreSQL
