"""Opening a component's tables on the backend the node is configured for.

With no ``[database] url`` each component lives in its embedded SQLite file in the data
directory (most in ``relay.sqlite3``; the staff directory in ``staff.sqlite``), opened in
WAL mode with ``synchronous=FULL`` (committed means on disk) and a busy timeout, in
autocommit mode with explicit transactions. With a URL every component shares that one
PostgreSQL database, each store on its own connection.

A store accepts either a :class:`Connection` (from :func:`open_connection`) or, as it
always did, the path of a SQLite file (:func:`connection_for`), so tests and tools that
open a file directly keep working.

:func:`write_transaction` is every store's write transaction, and :func:`row_locks`
how a store makes a read-modify-write race-free on both backends: SQLite's ``BEGIN
IMMEDIATE`` already holds the whole database for the writer; on PostgreSQL the store
takes transaction-scoped advisory locks on the names it is about to change (a case id,
an account name), in sorted order so two workers never deadlock, without serialising
writes to other names.

A node on SQLite never loads the PostgreSQL driver (it costs some 11 MiB and 80 ms at
start): :mod:`relay.db.pg` loads it when it connects, and the modules that catch
database errors name psycopg's through :func:`database_errors` and
:func:`storage_errors`, which include them once psycopg is loaded (before that nothing
can raise them).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from relay.db import pg
from relay.db.migrations import Connection

if TYPE_CHECKING:
    from relay.config import NodeConfig

__all__ = [
    "RELAY_FILE",
    "connection_for",
    "database_errors",
    "open_connection",
    "row_locks",
    "sqlite_connection",
    "storage_errors",
    "write_transaction",
]

RELAY_FILE = "relay.sqlite3"

ErrorTypes = tuple[type[Exception], ...]


def database_errors(*also: type[Exception]) -> ErrorTypes:
    """Anything the database driver raises, on either backend, and ``also``. Called
    where it is matched (``except database_errors():``), so that psycopg's ``Error`` is
    in it as soon as psycopg is loaded, and a SQLite node need not load it."""
    psycopg = sys.modules.get("psycopg")
    driver = (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)
    return (*also, *driver)


def storage_errors(*also: type[Exception]) -> ErrorTypes:
    """A database error or a failing disk (``OSError``): storage cannot take this now;
    and ``also``."""
    return database_errors(*also, OSError)


def sqlite_connection(path: Path) -> sqlite3.Connection:
    """A SQLite file opened the way every store opens it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def open_connection(
    config: NodeConfig, component: str, *, file_name: str = RELAY_FILE
) -> Connection:
    """A new connection to ``component``'s tables: the configured PostgreSQL database,
    else ``data_dir / file_name``."""
    if config.database.url is not None:
        return pg.connect(config.database.url, application_name=f"tongban-{component}")
    return sqlite_connection(config.data_dir / file_name)


def connection_for(target: Path | Connection) -> Connection:
    """``target`` itself, or a new connection to the SQLite file it names."""
    if isinstance(target, Path):
        return sqlite_connection(target)
    return target


def _key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True
    )


C = TypeVar("C", sqlite3.Connection, pg.PgConnection, Connection)


@contextlib.contextmanager
def write_transaction(conn: C) -> Iterator[C]:
    """One write transaction on ``conn``, committed when the block ends and rolled back
    when it raises (what it raised goes on): ``BEGIN IMMEDIATE`` on SQLite, which holds
    the database for this writer from the start, ``BEGIN`` on PostgreSQL. A commit that
    fails raises too, and leaves no transaction open behind it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        # a commit refused (a deferred constraint, a full disk) can leave the transaction
        # open: ended here, so that the connection takes the next one
        if conn.in_transaction:
            with contextlib.suppress(*database_errors()):
                conn.execute("ROLLBACK")
        raise


def row_locks(conn: Connection, space: int, names: Iterable[str]) -> None:
    """Inside an open transaction on PostgreSQL, hold an advisory lock per name of
    ``names`` in lock space ``space`` (a 32-bit constant per table) until it ends.
    Nothing to do on SQLite, where the writer already holds the database."""
    if not isinstance(conn, pg.PgConnection):
        return
    for key in sorted({_key(n) for n in names}):
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", (space, key))
