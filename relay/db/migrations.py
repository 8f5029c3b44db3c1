"""Versioned schemas, applied at start and by ``tongban db migrate``.

Each component of a node (``relay``, ``cases``, ``audit``, ``staff`` …) owns a list of
:class:`Migration` steps numbered from 1, with its SQL for each backend. The table
``schema_versions`` records the step each component is at. :func:`migrate` applies the
missing steps in order, each in its own transaction with its version row, so a crash
leaves the database at a whole step; a database at a step this code does not know (a
newer release wrote it) is refused with :class:`SchemaTooNew` and left untouched.

On PostgreSQL the steps run under an advisory lock, so several workers starting at the
same moment migrate once: the others wait, then find nothing to do.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relay.db.pg import PgConnection

__all__ = [
    "Connection",
    "Migration",
    "SchemaBehind",
    "SchemaTooNew",
    "dialect_of",
    "migrate",
    "require_current",
    "schema_version",
]

Connection = sqlite3.Connection | PgConnection
Dialect = Literal["sqlite", "postgresql"]

_LOCK_KEY = 0x7468_6D69  # pg_advisory_lock key of "tongban migrations"

_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_versions ("
    " component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at REAL NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    """Step ``version`` of a component: ``sqlite`` and ``postgresql`` are scripts of
    statements without parameters (the PostgreSQL one may use :func:`relay.db.pg.pg_ddl`)."""

    version: int
    description: str
    sqlite: str
    postgresql: str


class _SchemaMismatch(Exception):
    """A component's tables at another schema version than this release's."""

    def __init__(self, component: str, found: int, known: int, message: str) -> None:
        super().__init__(message)
        self.component = component
        self.found = found
        self.known = known


class SchemaTooNew(_SchemaMismatch):
    """The database was written by a newer release than this one."""

    def __init__(self, component: str, found: int, known: int) -> None:
        super().__init__(
            component, found, known,
            f"the {component} tables are at schema version {found}, newer than the"
            f" {known} this release knows; run the release that wrote them, or restore"
            " a backup taken before the upgrade",
        )  # fmt: skip


def dialect_of(conn: Connection) -> Dialect:
    return "postgresql" if isinstance(conn, PgConnection) else "sqlite"


def _run_script(conn: Connection, script: str) -> None:
    if isinstance(conn, PgConnection):
        conn.executescript(script)
        return
    pending = ""  # executescript would COMMIT our transaction: one statement at a time
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # a trigger body holds ';' of its own
            if pending.strip(" \n\t;"):
                conn.execute(pending)
            pending = ""
    if pending.strip(" \n\t;"):
        conn.execute(pending)


class SchemaBehind(_SchemaMismatch):
    """The database has not been migrated to this release yet (a tool that only reads
    does not migrate it: an older node may still be running on it)."""

    def __init__(self, component: str, found: int, known: int) -> None:
        super().__init__(
            component, found, known,
            f"the {component} tables are at schema version {found} and this release reads"
            f" version {known}: start the node of this release once, or run"
            " `tongban db migrate --config node.toml`, then try again",
        )  # fmt: skip


def require_current(conn: Connection, component: str, steps: Sequence[Migration]) -> None:
    """For a tool that reads ``component``'s tables without migrating them: raise
    :class:`SchemaBehind` or :class:`SchemaTooNew` unless they are at the last of
    ``steps``."""
    found = schema_version(conn, component)
    if found < len(steps):
        raise SchemaBehind(component, found, len(steps))
    if found > len(steps):
        raise SchemaTooNew(component, found, len(steps))


def schema_version(conn: Connection, component: str) -> int:
    """The step ``component`` is at (0: none applied)."""
    conn.execute(_TABLE)
    row: Any = conn.execute(
        "SELECT version FROM schema_versions WHERE component = ?", (component,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: Connection, component: str, steps: Sequence[Migration]) -> int:
    """Bring ``component`` to the last of ``steps``; return how many steps ran."""
    known = len(steps)
    if [s.version for s in steps] != list(range(1, known + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..{known} in order")
    postgres = isinstance(conn, PgConnection)
    if postgres:
        conn.execute("SELECT pg_advisory_lock(?)", (_LOCK_KEY,))
    try:
        found = schema_version(conn, component)
        if found > known:
            raise SchemaTooNew(component, found, known)
        for step in steps[found:]:
            conn.execute("BEGIN" if postgres else "BEGIN IMMEDIATE")
            try:
                _run_script(conn, step.postgresql if postgres else step.sqlite)
                conn.execute(
                    "INSERT INTO schema_versions (component, version, applied_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (component) DO UPDATE"
                    " SET version = excluded.version, applied_at = excluded.applied_at",
                    (component, step.version, time.time()),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return known - found
    finally:
        if postgres:
            conn.execute("SELECT pg_advisory_unlock(?)", (_LOCK_KEY,))
