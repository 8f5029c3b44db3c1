"""The timestamp token tables on both backends (SQLite and a real PostgreSQL): which
checkpoints and leaves still need a token, one token kept per checkpoint."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbkit import Database

from relay.db.migrations import migrate, schema_version
from relay.timestamps.store import MIGRATIONS, TimestampStore

AT = datetime(2026, 9, 1, 2, tzinfo=UTC)  # a stamp written as data, never compared to now


def test_checkpoints_get_one_token_each(database: Database) -> None:
    store = TimestampStore(database.connect())
    conn = database.connect()
    assert schema_version(conn, "timestamps") == len(MIGRATIONS)
    for size in (3, 8):
        conn.execute(
            "INSERT INTO audit_checkpoints (size, note, signed_at) VALUES (?, ?, ?)",
            (size, f"note {size}".encode(), AT.timestamp()),
        )
    assert [s for s, _, _ in store.unstamped()] == [3, 8]
    assert store.stamped_covering(2) is None
    store.put(3, b"\x30\x03first", AT, AT)
    other = TimestampStore(database.connect())  # another worker stamps it again
    other.put(3, b"\x30\x03second", AT, AT)
    assert store.response(3) == b"\x30\x03first"
    assert store.unstamped() == [(8, b"note 8", AT)]
    assert store.stamped_covering(2) == (3, b"note 3", b"\x30\x03first")
    assert store.stamped_covering(3) is None  # leaf 3 is in the size-8 checkpoint only
    store.close()
    other.close()


def test_survey_and_licence_leaves_are_stamped_on_their_own(database: Database) -> None:
    store = TimestampStore(database.connect())
    assert store.unstamped_leaves() == []  # no audit log yet
    conn = database.connect()
    blob = "BYTEA" if database.postgresql else "BLOB"
    conn.execute(f"CREATE TABLE audit_leaves (idx INTEGER PRIMARY KEY, data {blob} NOT NULL)")
    leaves = [b'{"kind":"packet"}', b'{"kind":"survey-report"}', b'{"kind":"licence-event"}']
    conn.executemany("INSERT INTO audit_leaves (idx, data) VALUES (?, ?)", list(enumerate(leaves)))
    assert store.unstamped_leaves() == [(1, leaves[1]), (2, leaves[2])]
    store.put_leaf(1, b"token", AT, AT)
    assert store.unstamped_leaves() == [(2, leaves[2])]
    assert store.leaf_response(1) == b"token"
    assert store.leaf_response(2) is None
    # the log grows: only the leaves appended since are read (the checkpoint task asks
    # every interval; the log holds every packet ever exchanged), by this store or
    # another worker's
    conn.execute("UPDATE audit_leaves SET data = ? WHERE idx = 0", (b'{"kind":"survey-report"}',))
    more = [b'{"kind":"packet"}', b'{"kind":"survey-report","n":2}']
    conn.executemany(
        "INSERT INTO audit_leaves (idx, data) VALUES (?, ?)", [(3, more[0]), (4, more[1])]
    )
    other = TimestampStore(database.connect())
    assert other.unstamped_leaves() == [(2, leaves[2]), (4, more[1])]  # leaf 0 not read again
    other.put_leaf(2, b"token 2", AT, AT)
    assert store.unstamped_leaves() == [(4, more[1])]
    assert conn.execute("SELECT idx FROM audit_leaf_stamps_due").fetchall() == [(4,)]
    store.close()
    other.close()


def test_a_dossier_looks_for_a_case_s_leaves_from_where_the_case_began(
    database: Database,
) -> None:
    """The dossier finds the leaves of a case's receipts, licences and reports by walking
    the log from the case's first packet leaf (found through the packet index), not from
    the node's first leaf: leaves before ``start`` are never read."""
    from relay.dossier.export import _leaf_of

    conn = database.connect()
    blob = "BYTEA" if database.postgresql else "BLOB"
    conn.execute(f"CREATE TABLE audit_leaves (idx INTEGER PRIMARY KEY, data {blob} NOT NULL)")
    same = b'{"kind":"licence-event","credential_digest":"ab12"}'
    conn.executemany(
        "INSERT INTO audit_leaves (idx, data) VALUES (?, ?)",
        [(0, same), (1, b'{"kind":"packet"}'), (2, same)],
    )
    assert _leaf_of(conn, "credential_digest", "ab12") == 0
    assert _leaf_of(conn, "credential_digest", "ab12", start=1) == 2
    assert _leaf_of(conn, "credential_digest", "ffff", start=1) is None


def _checkpoints(conn: Any, sizes: range) -> None:
    conn.executemany(
        "INSERT INTO audit_checkpoints (size, note, signed_at) VALUES (?, ?, ?)",
        [(size, b"note", AT.timestamp()) for size in sizes],
    )


def test_finding_the_checkpoints_to_stamp_reads_the_new_ones_not_every_one(
    tmp_path: Path,
) -> None:
    """The stamper and the alert board ask for the checkpoints without a token often: the
    same SQLite instructions with 5,000 stamped checkpoints behind as with 3."""
    conn = sqlite3.connect(tmp_path / "relay.sqlite3", isolation_level=None)
    store = TimestampStore(conn)
    counter = [0]

    def steps() -> int:
        counter[0] = 0
        conn.set_progress_handler(lambda: counter.__setitem__(0, counter[0] + 1) or 0, 20)
        try:
            assert [s for s, _, _ in store.unstamped()] == [10_000_000]
        finally:
            conn.set_progress_handler(None, 20)
        return counter[0]

    def stamp_all() -> None:
        for size, _, _ in store.unstamped():
            store.put(size, b"token", AT, AT)

    _checkpoints(conn, range(1, 4))
    stamp_all()
    _checkpoints(conn, range(10_000_000, 10_000_001))
    store.unstamped()  # found once
    before = steps()
    conn.execute("DELETE FROM audit_checkpoints WHERE size = 10000000")
    _checkpoints(conn, range(4, 5_004))
    stamp_all()
    _checkpoints(conn, range(10_000_000, 10_000_001))
    store.unstamped()
    # a deeper B-tree costs a few instructions more; every checkpoint read, thousands
    assert steps() <= before + 5
    store.close()


def test_a_store_from_before_step_3_finds_the_checkpoints_left_without_a_token(
    database: Database,
) -> None:
    conn = database.connect()
    migrate(conn, "timestamps", MIGRATIONS[:2])
    _checkpoints(conn, range(1, 6))
    conn.executemany(
        "INSERT INTO audit_timestamps (size, response, gen_time, at) VALUES (?, ?, ?, ?)",
        [(size, b"token", AT.timestamp(), AT.timestamp()) for size in (1, 2, 4)],
    )
    store = TimestampStore(database.connect())
    assert [s for s, _, _ in store.unstamped()] == [3, 5]
    _checkpoints(conn, range(6, 7))
    assert [s for s, _, _ in store.unstamped()] == [3, 5, 6]
    store.put(5, b"token", AT, AT)
    assert [s for s, _, _ in store.unstamped()] == [3, 6]
    store.close()
