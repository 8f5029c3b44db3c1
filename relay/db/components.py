"""The components of a node's database and their migrations.

Each :class:`Component` names the module whose ``MIGRATIONS`` list holds its steps
(imported only when asked, so this registry imports no store) and the SQLite file it
lives in when the node has no ``[database] url``. Every store migrates its own component
when it opens; ``tongban db migrate`` runs :func:`migrate_all` for all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import RELAY_FILE

__all__ = ["COMPONENTS", "Component", "component", "migrate_all"]


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    sqlite_file: str = RELAY_FILE

    def steps(self) -> Sequence[Migration]:
        steps: Sequence[Migration] = importlib.import_module(self.module).MIGRATIONS
        return steps


COMPONENTS: list[Component] = [
    Component("cases", "relay.cases.sqlite_store"),
    Component("short_links", "relay.cases.short_links"),
    Component("staff", "relay.signin.store", sqlite_file="staff.sqlite"),
    Component("integration", "relay.integration.store"),
    Component("timestamps", "relay.timestamps.store"),
    Component("survey_cases", "relay.http.survey_cases"),
    Component("audit_state", "relay.audit.state"),
]


def component(name: str) -> Component:
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise KeyError(name)


def migrate_all(conn: Connection, *, sqlite_file: str | None = None) -> dict[str, int]:
    """Migrate every component (on SQLite: those living in ``sqlite_file``); the
    number of steps each ran."""
    ran: dict[str, int] = {}
    for c in COMPONENTS:
        if sqlite_file is not None and c.sqlite_file != sqlite_file:
            continue
        ran[c.name] = migrate(conn, c.name, c.steps())
    return ran
