"""The ``database`` fixture: the same store tests on SQLite and on a real PostgreSQL.

A directory's ``conftest.py`` imports :func:`database` (``from dbkit import database``);
a test that asks for it runs twice, ``[sqlite]`` on files in its tmp dir and
``[postgresql]`` on new databases of the session's throwaway cluster (``pg_cluster``).
``database.connect(name)`` opens a new connection to the database called ``name``
(the same name reaches the same data: a second connection, a reopened store), as
:func:`relay.db.open.open_connection` does for a node.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.db.migrations import Connection
from relay.db.open import sqlite_connection
from relay.db.pg import connect

__all__ = ["Database", "database"]

_names = itertools.count()


class Database:
    def __init__(self, backend: str, root: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._root = root
        self._request = request
        self._urls: dict[str, str] = {}
        self._opened: list[Connection] = []

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"

    def url(self, name: str = "relay") -> str:
        """The PostgreSQL URL of database ``name`` (made on first use)."""
        if name not in self._urls:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            unique = f"k_{worker}_{os.getpid()}_{next(_names)}_{name}"
            self._urls[name] = self._request.getfixturevalue("pg_cluster").create_database(unique)
        return self._urls[name]

    def connect(self, name: str = "relay") -> Connection:
        conn: Connection
        if self.postgresql:
            conn = connect(self.url(name))
        else:
            self._root.mkdir(parents=True, exist_ok=True)
            conn = sqlite_connection(self._root / f"{name}.sqlite3")
        self._opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._opened:
            conn.close()  # closing twice is harmless on both drivers


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = Database(request.param, tmp_path / "db", request)
    yield db
    db.close()
