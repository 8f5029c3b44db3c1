"""Every component of a node that keeps tables, and its migrations.

``tongban db migrate`` applies them all, in this order; each store also applies its
own at start. A component is ``(name, steps)``: ``steps()`` imports and returns its
:class:`relay.db.migrations.Migration` list (imported late, so this registry depends
on nothing above :mod:`relay.db`). Add a component by appending one line to
:data:`COMPONENTS`. On SQLite a component lives in ``relay.sqlite3`` unless
:data:`SQLITE_FILES` names another file of the data directory (the staff directory's
``staff.sqlite``); on PostgreSQL all share the one database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relay.db.migrations import Connection, Migration, migrate, schema_version

__all__ = ["COMPONENTS", "SQLITE_FILES", "Applied", "migrate_all"]


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
