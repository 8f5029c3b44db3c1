"""Fixtures for the relay core tests (helpers live in ``relay_core_support``).

``federation`` runs each test on both backends (``backend``): every node on its own
SQLite file, or in its own schema of one PostgreSQL database per test process (a new
database costs a quarter of a second, a migrated schema a third; emptied schemas are
used again, see :class:`SchemaPool`). A module whose tests look into the SQLite file
itself overrides ``backend`` with ``"sqlite"``.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from relay_core_support import (
    DAFENG,
    NINGJIN,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    make_pki,
    pg_schema_url,
)

from relay.core.fakes import FakeNetwork
from relay.core.outbox import OutboxPolicy
from relay.core.pg_store import PgStore
from relay.core.sqlite_store import SqlStore
from relay.db.cluster import Cluster

_schemas = itertools.count()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def relay_core_database(pg_cluster: Cluster) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return pg_cluster.create_database(f"relay_core_{worker}_{os.getpid()}")


class SchemaPool:
    """Schemas of one database for node stores, emptied and handed out again: a
    migrated schema costs ~0.3 s of DDL, emptying one ~0.05 s."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._free: list[str] = []

    def take(self) -> str:
        if self._free:
            return self._free.pop()
        return pg_schema_url(self.database, f"n{os.getpid()}_{next(_schemas)}")

    def give_back(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [
                str(r[0])
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename <> 'schema_versions'"
                )
            ]
            conn.execute("SET session_replication_role = replica")  # past the log's triggers
            conn.execute("; ".join(f'DELETE FROM "{t}"' for t in tables).encode())
        self._free.append(url)


@pytest.fixture(scope="session")
def schema_pool(relay_core_database: str) -> SchemaPool:
    return SchemaPool(relay_core_database)


def store_opener(
    backend: str, request: pytest.FixtureRequest, root: Path, clock: FakeClock
) -> tuple[Callable[[str], SqlStore] | None, Callable[[], None]]:
    """How ``Federation.start`` opens a node's store on ``backend`` (None: SQLite), and
    what to call once the federation is closed."""
    if backend == "sqlite":
        return None, lambda: None
    pool: SchemaPool = request.getfixturevalue("schema_pool")
    urls: dict[str, str] = {}

    def open_store(node: str) -> SqlStore:
        if node not in urls:
            urls[node] = pool.take()
        folder = root / node
        return PgStore(urls[node], blobs=folder / "blobs", work=folder, worker=node, clock=clock)

    def done() -> None:
        for url in urls.values():
            pool.give_back(url)

    return open_store, done


@pytest.fixture
def federation(
    pki: Pki, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Federation]:
    clock = FakeClock()
    open_store, done = store_opener(backend, request, tmp_path, clock)
    fed = Federation(
        pki=pki,
        root=tmp_path,
        clock=clock,
        agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(7)),
        policy=OutboxPolicy(batch_size=16),
        open_store=open_store,
    )
    for node in (WUCHANG, DAFENG, NINGJIN):
        fed.start(node)
    yield fed
    fed.close()
    done()
