"""Timestamp tokens of our checkpoints, on the node's database (storage layer).

::

    audit_timestamps       size PK, response BLOB (DER TimeStampResp), gen_time, at
    audit_leaf_timestamps  idx PK, response BLOB, gen_time, at
    audit_leaf_stamps_due  idx PK: survey-report and licence-event leaves found by the
                           scan, until their token is stored
    audit_stamps_due       size PK: checkpoints found by the scan, until their token
                           is stored
    timestamps_meta        key PK, value: ``scanned`` = the last leaf index scanned,
                           ``checkpoints_scanned`` = the largest checkpoint looked at

A row exists only for a checkpoint in ``audit_checkpoints`` (or, in the second table,
for a ``survey-report`` or ``licence-event`` leaf of ``audit_leaves``: a token over the
leaf's exact bytes) and only once its token verified
(:func:`relay.timestamps.tokens.check_response`). Each write is one short transaction
on this module's own connection, and an insert that finds the row there already keeps
the first (two workers stamping the same checkpoint store one token). The schema is the
``timestamps`` migration; ``audit_checkpoints`` is the audit log's table, declared here
too (if missing) so the join works before the first checkpoint is signed.

The leaves to stamp are found by scanning only the leaves appended since the last scan
(``scanned``; the log only grows at its end): the checkpoint task looks for them every
interval, and a scan of the whole log each time would grow with every packet the node
ever exchanged (issue 12). Those found wait in ``audit_leaf_stamps_due`` until stamped.
The checkpoints to stamp are found the same way (``audit_stamps_due``): the stamper and
the alert board ask for them often, and a node signs a checkpoint every interval.
"""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from relay.db.migrations import Connection, Migration, dialect_of, migrate
from relay.db.open import connection_for
from relay.db.pg import pg_ddl

__all__ = ["MIGRATIONS", "TimestampStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY, note BLOB NOT NULL, signed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_timestamps (
    size INTEGER PRIMARY KEY, response BLOB NOT NULL, gen_time REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_leaf_timestamps (
    idx INTEGER PRIMARY KEY, response BLOB NOT NULL, gen_time REAL NOT NULL, at REAL NOT NULL
);
"""
# step 2: the leaves to stamp found so far, and how far the log was scanned for them
_DUE = """
CREATE TABLE IF NOT EXISTS audit_leaf_stamps_due (idx INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS timestamps_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# step 3: the checkpoints to stamp found so far (``checkpoints_scanned`` in
# ``timestamps_meta`` = the largest checkpoint looked at; none yet: the first look finds
# every checkpoint without a token, once)
_CHECKPOINTS_DUE = """
CREATE TABLE IF NOT EXISTS audit_stamps_due (size INTEGER PRIMARY KEY);
"""
MIGRATIONS = [
    Migration(1, "RFC 3161 timestamp tokens", _SCHEMA, pg_ddl(_SCHEMA)),
    Migration(2, "leaves to stamp, scanned once", _DUE, pg_ddl(_DUE)),
    Migration(3, "checkpoints to stamp, found once", _CHECKPOINTS_DUE, pg_ddl(_CHECKPOINTS_DUE)),
]
_STAMPED_KINDS = ("survey-report", "licence-event")  # leaves stamped on their own
_CONTAINS = {"sqlite": "instr(data, ?) > 0", "postgresql": "position(? in data) > 0"}


def _missing_table() -> tuple[type[Exception], ...]:
    """What reading a table that does not exist raises, on either backend (psycopg's
    once it is loaded: a node on SQLite never loads it)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.OperationalError,)
    return (sqlite3.OperationalError, psycopg.errors.UndefinedTable)


class TimestampStore:
    """Which checkpoints have a token, and the tokens."""

    def __init__(self, target: Path | Connection) -> None:
        """On ``target``: a connection (:func:`relay.db.open.open_connection`) or the
        path of the relay's SQLite file."""
        self._conn = connection_for(target)
        migrate(self._conn, "timestamps", MIGRATIONS)
        contains = _CONTAINS[dialect_of(self._conn)]
        self._new_leaves = (
            "SELECT idx FROM audit_leaves"  # noqa: S608 - built from constants
            f" WHERE idx > ? AND idx <= ? AND ({contains} OR {contains}) ORDER BY idx"
        )

    def close(self) -> None:
        self._conn.close()

    def _scanned(self, key: str) -> int:
        """How far the scan named ``key`` looked (``timestamps_meta``; -1: not yet)."""
        mark = self._conn.execute(
            "SELECT value FROM timestamps_meta WHERE key = ?", (key,)
        ).fetchone()
        return -1 if mark is None else int(mark[0])

    def _mark_scanned(self, key: str, end: int) -> None:
        self._conn.execute(
            "INSERT INTO timestamps_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(end)),
        )

    def unstamped(self) -> list[tuple[int, bytes, datetime]]:
        """(size, note, signed_at) of every checkpoint without a token, oldest first.
        Reads the checkpoints signed since the last call and those found before and not
        stamped yet, never every checkpoint (the stamper and the alert board ask often;
        a checkpoint is signed every interval for years)."""
        row = self._conn.execute("SELECT max(size) FROM audit_checkpoints").fetchone()
        end = -1 if row is None or row[0] is None else int(row[0])
        scanned = self._scanned("checkpoints_scanned")
        if end > scanned:
            self._conn.execute(
                "INSERT OR IGNORE INTO audit_stamps_due (size)"
                " SELECT c.size FROM audit_checkpoints c"
                " LEFT JOIN audit_timestamps t ON t.size = c.size"
                " WHERE c.size > ? AND c.size <= ? AND t.size IS NULL",
                (scanned, end),
            )
            self._mark_scanned("checkpoints_scanned", end)
        rows = self._conn.execute(
            "SELECT c.size, c.note, c.signed_at FROM audit_stamps_due d"
            " JOIN audit_checkpoints c ON c.size = d.size"
            " LEFT JOIN audit_timestamps t ON t.size = d.size"
            " WHERE t.size IS NULL ORDER BY d.size"
        ).fetchall()
        return [(int(s), bytes(n), datetime.fromtimestamp(a, UTC)) for s, n, a in rows]

    def put(self, size: int, response: bytes, gen_time: datetime, at: datetime) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO audit_timestamps (size, response, gen_time, at)"
            " VALUES (?, ?, ?, ?)",
            (size, response, gen_time.timestamp(), at.timestamp()),
        )
        self._conn.execute("DELETE FROM audit_stamps_due WHERE size = ?", (size,))

    def response(self, size: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT response FROM audit_timestamps WHERE size = ?", (size,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def stamped_covering(self, index: int) -> tuple[int, bytes, bytes] | None:
        """(size, note, response) of the smallest stamped checkpoint holding leaf ``index``."""
        row = self._conn.execute(
            "SELECT c.size, c.note, t.response FROM audit_checkpoints c"
            " JOIN audit_timestamps t ON t.size = c.size WHERE c.size > ?"
            " ORDER BY c.size LIMIT 1",
            (index,),
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    def unstamped_leaves(self) -> list[tuple[int, bytes]]:
        """(index, leaf bytes) of every survey-report and licence-event leaf without a
        token of its own, oldest first (none while the node has no audit log yet). Reads
        the leaves appended since the last call and those found before and not stamped
        yet, never the whole log."""
        try:
            row = self._conn.execute("SELECT max(idx) FROM audit_leaves").fetchone()
        except _missing_table():  # no audit log yet
            return []
        end = -1 if row is None or row[0] is None else int(row[0])
        scanned = self._scanned("scanned")
        if end > scanned:
            kinds = tuple(f'"kind":"{k}"'.encode() for k in _STAMPED_KINDS)
            found = self._conn.execute(self._new_leaves, (scanned, end, *kinds)).fetchall()
            for (index,) in found:
                self._conn.execute(
                    "INSERT OR IGNORE INTO audit_leaf_stamps_due (idx) VALUES (?)", (int(index),)
                )
            self._mark_scanned("scanned", end)
        rows = self._conn.execute(
            "SELECT d.idx, l.data FROM audit_leaf_stamps_due d"
            " JOIN audit_leaves l ON l.idx = d.idx"
            " LEFT JOIN audit_leaf_timestamps t ON t.idx = d.idx"
            " WHERE t.idx IS NULL ORDER BY d.idx"
        ).fetchall()
        return [(int(i), bytes(d)) for i, d in rows]

    def put_leaf(self, index: int, response: bytes, gen_time: datetime, at: datetime) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO audit_leaf_timestamps (idx, response, gen_time, at)"
            " VALUES (?, ?, ?, ?)",
            (index, response, gen_time.timestamp(), at.timestamp()),
        )
        self._conn.execute("DELETE FROM audit_leaf_stamps_due WHERE idx = ?", (index,))

    def leaf_response(self, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT response FROM audit_leaf_timestamps WHERE idx = ?", (index,)
        ).fetchone()
        return None if row is None else bytes(row[0])
