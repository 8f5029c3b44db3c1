"""Timestamp tokens of our checkpoints, on the node's SQLite file (storage layer).

::

    audit_timestamps       size PK, response BLOB (DER TimeStampResp), gen_time, at
    audit_leaf_timestamps  idx PK, response BLOB, gen_time, at

A row exists only for a checkpoint in ``audit_checkpoints`` (or, in the second table,
for a ``survey-report`` or ``licence-event`` leaf of ``audit_leaves``: a token over the
leaf's exact bytes) and only once its token verified
(:func:`relay.timestamps.tokens.check_response`). Each write is one short transaction
on this module's own connection.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["TimestampStore"]

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
_STAMPED_KINDS = ("survey-report", "licence-event")  # leaves stamped on their own


class TimestampStore:
    """Which checkpoints have a token, and the tokens."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def unstamped(self) -> list[tuple[int, bytes, datetime]]:
        """(size, note, signed_at) of every checkpoint without a token, oldest first."""
        rows = self._conn.execute(
            "SELECT c.size, c.note, c.signed_at FROM audit_checkpoints c"
            " LEFT JOIN audit_timestamps t ON t.size = c.size"
            " WHERE t.size IS NULL ORDER BY c.size"
        ).fetchall()
        return [(int(s), bytes(n), datetime.fromtimestamp(a, UTC)) for s, n, a in rows]

    def put(self, size: int, response: bytes, gen_time: datetime, at: datetime) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO audit_timestamps (size, response, gen_time, at)"
            " VALUES (?, ?, ?, ?)",
            (size, response, gen_time.timestamp(), at.timestamp()),
        )

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
        token of its own, oldest first (none while the node has no audit log yet)."""
        try:
            rows = self._conn.execute(
                "SELECT l.idx, l.data FROM audit_leaves l"
                " LEFT JOIN audit_leaf_timestamps t ON t.idx = l.idx"
                " WHERE t.idx IS NULL AND (instr(l.data, ?) > 0 OR instr(l.data, ?) > 0)"
                " ORDER BY l.idx",
                tuple(f'"kind":"{k}"'.encode() for k in _STAMPED_KINDS),
            ).fetchall()
        except sqlite3.OperationalError:  # no audit_leaves table (yet)
            return []
        return [(int(i), bytes(d)) for i, d in rows]

    def put_leaf(self, index: int, response: bytes, gen_time: datetime, at: datetime) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO audit_leaf_timestamps (idx, response, gen_time, at)"
            " VALUES (?, ?, ?, ?)",
            (index, response, gen_time.timestamp(), at.timestamp()),
        )

    def leaf_response(self, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT response FROM audit_leaf_timestamps WHERE idx = ?", (index,)
        ).fetchone()
        return None if row is None else bytes(row[0])
