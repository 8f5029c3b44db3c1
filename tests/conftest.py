"""Fixtures every test folder may use.

``pg_cluster``: a real PostgreSQL server (Debian ``postgresql``, a throwaway cluster in a
temporary directory, see :mod:`relay.db.cluster`), one per test process; a test that
asks for it fails loudly when the server programs are missing. ``pg_url``: a new empty
database on it for one test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from relay.db.cluster import Cluster, start_cluster

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return pg_cluster.create_database(f"t_{worker}_{os.getpid()}_{next(_names)}")
