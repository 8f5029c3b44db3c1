"""Fixtures for the case tests (helpers live in casekit.py, a unique module name)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import casekit_offices
import pytest
from casekit import HANDLING, RECEIVING
from dbkit import Database, database  # noqa: F401 - the fixture, on SQLite and PostgreSQL

from agreements.calendar import WorkingCalendar, default_calendar
from certs.pki import init_federation, issue_node
from relay.core.pg_store import PgStore
from signing.certificates import TrustBundle
from signing.nodedir import NodeKeys, load_node_keys


@pytest.fixture(scope="session")
def calendar() -> WorkingCalendar:
    return default_calendar()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test federation with the two offices of the case tests (keys in a tmp dir)."""
    base = tmp_path_factory.mktemp("cases-pki")
    fed = base / "federation"
    then = datetime.now(UTC) - timedelta(days=1)  # CRLs stay fresh for a month from now
    init_federation(fed, "Cases", now=then)
    keys = {}
    for node in (RECEIVING, HANDLING):
        issue_node(fed, node, f"office {node}", "127.0.0.1", base / node, now=then)
        keys[node] = load_node_keys(base / node)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    return Pki(base, fed, bundle, keys)


@dataclass(frozen=True)
class Pki:
    base: Path
    federation: Path
    bundle: TrustBundle
    keys: dict[str, NodeKeys]


@pytest.fixture(scope="session")
def office_pki(tmp_path_factory: pytest.TempPathFactory) -> casekit_offices.Pki:
    return casekit_offices.make_pki(tmp_path_factory.mktemp("offices-pki"))


@pytest.fixture
def clock() -> casekit_offices.Clock:
    return casekit_offices.Clock()


@pytest.fixture
def case_database() -> Database | None:
    """Where the offices keep their cases: None, each relay's SQLite file. A module
    whose tests run on both backends overrides it to return the ``database`` fixture;
    on PostgreSQL each office's relay store and cases then share one database."""
    return None


@pytest.fixture
def offices(
    office_pki: casekit_offices.Pki,
    tmp_path: Path,
    clock: casekit_offices.Clock,
    case_database: Database | None,
) -> Iterator[casekit_offices.Offices]:
    db = case_database
    pair = casekit_offices.make_offices(
        office_pki, tmp_path, clock,
        case_database=None if db is None else db.connect,
        relay_store=None if db is None or not db.postgresql else (
            lambda node: PgStore(db.url(node), blobs=tmp_path / node / "blobs",
                                 work=tmp_path / node, worker=node, clock=clock)
        ),
    )  # fmt: skip
    yield pair
    pair.close()
