"""Fixtures for the integration tests: the two offices of the case tests (tests/cases)
with the integration attached, an agreement listing three data categories, and the
example platform (examples/platform.py) as the office's own system."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cases"))
# examples/platform.py under a name that does not shadow the standard library's platform
_path = ROOT / "examples" / "platform.py"
_spec = importlib.util.spec_from_file_location("example_platform", _path)
assert _spec is not None
assert _spec.loader is not None
example_platform = importlib.util.module_from_spec(_spec)
sys.modules["example_platform"] = example_platform
_spec.loader.exec_module(example_platform)

import casekit_offices  # noqa: E402
import integkit  # noqa: E402
from dbkit import Database, database  # noqa: E402, F401 - the fixture, on SQLite and PostgreSQL


@pytest.fixture(scope="session")
def data_pki(tmp_path_factory: pytest.TempPathFactory) -> casekit_offices.Pki:
    """The offices' PKI; the agreement lists applicant identity and case materials, not
    business premises or licence data."""
    return casekit_offices.make_pki(
        tmp_path_factory.mktemp("integration-pki"), categories=integkit.CATEGORIES
    )


@pytest.fixture
def clock() -> casekit_offices.Clock:
    return casekit_offices.Clock()


@pytest.fixture
def case_database() -> Database | None:
    """Where the offices keep their tables: None, each office's SQLite file. A module
    whose tests run on both backends overrides it to return the ``database`` fixture."""
    return None


@pytest.fixture
def offices(
    data_pki: casekit_offices.Pki,
    tmp_path: Path,
    clock: casekit_offices.Clock,
    case_database: Database | None,
) -> Iterator[integkit.WiredOffices]:
    pair = integkit.wired_offices(data_pki, tmp_path, clock, database=case_database)
    yield pair
    pair.close()
