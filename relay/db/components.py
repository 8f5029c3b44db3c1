"""Every component of a node that keeps tables, and its migrations.

``tongban db migrate`` applies them all, in this order; each store also applies its
own at start. A component is ``(name, steps)``: ``steps()`` imports and returns its
:class:`relay.db.migrations.Migration` list (imported late, so this registry depends
on nothing above :mod:`relay.db`). Add a component by appending one line to
:data:`COMPONENTS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.db.migrations import Connection, Migration, migrate, schema_version
from relay.db.pg import connect
from relay.db.settings import DatabaseSettings

__all__ = ["COMPONENTS", "Applied", "migrate_all", "open_database"]


def _relay() -> Sequence[Migration]:
    from relay.core.sqlite_schema import MIGRATIONS

    return MIGRATIONS


def _audit() -> Sequence[Migration]:
    from relay.audit.store import MIGRATIONS

    return MIGRATIONS


def _witnessing() -> Sequence[Migration]:
    from relay.audit.state import MIGRATIONS

    return MIGRATIONS


COMPONENTS: list[tuple[str, Callable[[], Sequence[Migration]]]] = [
    ("relay", _relay),
    ("audit", _audit),
    ("witnessing", _witnessing),
]


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


def migrate_all(conn: Connection) -> list[Applied]:
    """Bring every component to its last step, in registry order (stops at the first
    :class:`relay.db.migrations.SchemaTooNew`, the components before it applied)."""
    out = []
    for name, steps in COMPONENTS:
        ran = migrate(conn, name, steps())
        out.append(Applied(name, ran, schema_version(conn, name)))
    return out
