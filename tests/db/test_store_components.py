"""The stores' components in the registry ``tongban db migrate`` runs: every one
migrates on both backends, once, and the staff directory keeps its own SQLite file."""

from __future__ import annotations

from dbkit import Database

from relay.db.components import COMPONENTS, SQLITE_FILES, migrate_all
from relay.db.migrations import schema_version

MINE = ["cases", "short_links", "staff", "integration", "timestamps"]


def test_every_store_component_migrates_once(database: Database) -> None:
    assert set(MINE) <= {name for name, _ in COMPONENTS}
    conn = database.connect()
    first = {a.component: a for a in migrate_all(conn)}
    if database.postgresql:  # one database for all
        assert set(MINE) <= set(first)
    else:  # relay.sqlite3 holds all but the staff directory
        assert "staff" not in first
        staff = migrate_all(database.connect("staff"), sqlite_file=SQLITE_FILES["staff"])
        assert [a.component for a in staff] == ["staff"]
    assert all(a.ran == a.version >= 1 for a in first.values())
    assert all(a.ran == 0 for a in migrate_all(conn))
    for name in set(MINE) & set(first):
        assert schema_version(conn, name) == first[name].version
