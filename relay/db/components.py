"""Every component of a node that keeps tables, and its migrations.

``tongban db migrate`` applies them all, in this order; each store also applies its
own at start. A component is ``(name, steps)``: ``steps()`` imports and returns its
:class:`relay.db.migrations.Migration` list (imported late, so this registry depends
on nothing above :mod:`relay.db`). Add a component by appending one line to
:data:`COMPONENTS`. On SQLite a component lives in ``relay.sqlite3`` unless
:data:`SQLITE_FILES` names another file of the data directory (the staff directory's
``staff.sqlite``, which its store migrates when it opens); on PostgreSQL all share the
one database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.db.migrations import Connection, Migration, migrate, schema_version
from relay.db.pg import connect
from relay.db.settings import DatabaseSettings

__all__ = ["COMPONENTS", "SQLITE_FILES", "Applied", "migrate_all", "open_database"]


def _relay() -> Sequence[Migration]:
    from relay.core.sqlite_schema import MIGRATIONS

    return MIGRATIONS


def _audit() -> Sequence[Migration]:
    from relay.audit.store import MIGRATIONS

    return MIGRATIONS


def _witnessing() -> Sequence[Migration]:
    from relay.audit.state import MIGRATIONS

    return MIGRATIONS


def _cases() -> Sequence[Migration]:
    from relay.cases.sqlite_store import MIGRATIONS

    return MIGRATIONS


def _short_links() -> Sequence[Migration]:
    from relay.cases.short_links import MIGRATIONS

    return MIGRATIONS


def _staff() -> Sequence[Migration]:
    from relay.signin.store import MIGRATIONS

    return MIGRATIONS


def _integration() -> Sequence[Migration]:
    from relay.integration.store import MIGRATIONS

    return MIGRATIONS


def _timestamps() -> Sequence[Migration]:
    from relay.timestamps.store import MIGRATIONS

    return MIGRATIONS


COMPONENTS: list[tuple[str, Callable[[], Sequence[Migration]]]] = [
    ("relay", _relay),
    ("audit", _audit),
    ("witnessing", _witnessing),
    ("cases", _cases),
    ("short_links", _short_links),
    ("staff", _staff),
    ("integration", _integration),
    ("timestamps", _timestamps),
]

SQLITE_FILES = {"staff": "staff.sqlite"}
"""Components that live in a SQLite file of their own (the others: ``relay.sqlite3``)."""


@dataclass(frozen=True)
class Applied:
    component: str
    ran: int  # steps applied now
    version: int  # the step the component is at


def open_database(data_dir: Path, database: DatabaseSettings) -> Connection:
    """A connection to the node's database: PostgreSQL at ``[database] url``, else the
    SQLite file ``relay.sqlite3`` in the data directory."""
    if database.url is not None:
        return connect(database.url, application_name="tongban db")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(data_dir / "relay.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def migrate_all(conn: Connection, *, sqlite_file: str = "relay.sqlite3") -> list[Applied]:
    """Bring every component to its last step, in registry order (stops at the first
    :class:`relay.db.migrations.SchemaTooNew`, the components before it applied). On
    SQLite only the components living in ``sqlite_file``."""
    out = []
    for name, steps in COMPONENTS:
        if (
            isinstance(conn, sqlite3.Connection)
            and SQLITE_FILES.get(name, "relay.sqlite3") != sqlite_file
        ):
            continue
        ran = migrate(conn, name, steps())
        out.append(Applied(name, ran, schema_version(conn, name)))
    return out
