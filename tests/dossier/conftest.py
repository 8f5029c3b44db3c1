"""Fixtures for trusted timestamps and dossiers: a real ``openssl ts`` TSA, real nodes.

The node kit of the audit tests (``tests/audit_node/audit_node_support.py``) is shared,
not copied: its folder is put on the import path here.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "audit_node"))

from audit_node_support import Pki, make_pki
from dbkit import database  # noqa: F401 - the fixture, on SQLite and PostgreSQL
from tsakit import OpenSslTsa, TsaPki, make_tsa_pki


@pytest.fixture(scope="session")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa-pki"))


@pytest.fixture(scope="session")
def node_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("stamp-pki"))


@pytest.fixture
async def tsa(tsa_pki: TsaPki) -> AsyncIterator[OpenSslTsa]:
    server = OpenSslTsa(tsa_pki)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
