"""Fixtures: the audit-node test PKI (three offices) reused from tests/audit_node."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "audit_node"))

from audit_node_support import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("audit-events-pki"))


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cases"))

import casekit_offices  # noqa: E402


@pytest.fixture(scope="session")
def office_pki(tmp_path_factory: pytest.TempPathFactory) -> casekit_offices.Pki:
    return casekit_offices.make_pki(tmp_path_factory.mktemp("audit-events-offices"))


@pytest.fixture
def clock() -> casekit_offices.Clock:
    return casekit_offices.Clock()


@pytest.fixture
def offices(
    office_pki: casekit_offices.Pki, tmp_path: Path, clock: casekit_offices.Clock
) -> Iterator[casekit_offices.Offices]:
    """Two case offices over real relay nodes (tests/cases), closed after the test."""
    pair = casekit_offices.make_offices(office_pki, tmp_path, clock)
    yield pair
    pair.close()
