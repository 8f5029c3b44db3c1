"""The audit log: append-only leaves plus every complete subtree hash, on SQLite or
PostgreSQL.

Two tables live in the node's database (the SQLite file, or the PostgreSQL database
its workers share)::

    audit_leaves(idx INTEGER PRIMARY KEY, data BLOB)           -- leaf bytes, 0, 1, 2, ...
    audit_nodes(level, idx, hash) PRIMARY KEY (level, idx)     -- WITHOUT ROWID

``audit_nodes`` holds the hash of every *complete* subtree: ``(0, i)`` is leaf ``i``'s
hash, ``(l, i)`` covers leaves ``[i * 2**l, (i + 1) * 2**l)``. A complete subtree never
changes once its last leaf is appended, so every historical root and every proof for
any tree size is made of such rows plus hashing: O(log n) primary-key reads (see
:func:`relay.audit.merkle.range_hash`). Appending leaf ``n`` writes the leaf, its hash
and one row per subtree it completes (the trailing one bits of ``n``): two rows
amortized, one read amortized. Storage is about ``2 * 32`` bytes of hashes per leaf.

The tree hash is the log's, fixed once: ``audit_tree_hash`` holds its name (``sha256``,
or ``sm3`` for an SM-profile node, RFC 9162 hashing with SM3 in place of SHA-256). The
node declares it when it opens its store (:func:`declare_tree_hash`, from its seal key);
a log with no declaration hashes with SHA-256, as every log did before the SM profile.
Appends and proofs read the declared hash, so every writer of the file agrees.

Appends run **inside the caller's transaction** so a leaf is durable exactly when the
event it records is; this module never commits. Triggers refuse UPDATE and DELETE on
both tables (and TRUNCATE on PostgreSQL): the log is append-only at the database level
too.

**One appender at a time.** On SQLite the caller's ``BEGIN IMMEDIATE`` already makes
its transaction the only writer. On PostgreSQL several workers of the node append to
the same log: :func:`append` first takes the transaction-level advisory lock
:data:`APPEND_LOCK` (held to commit or rollback), then reads the size in a new
statement, so it sees every leaf its predecessor committed, and indexes are gap-free
and never handed out twice. Everything the caller's transaction did before its first
append runs concurrently with other workers; from the first append to the commit, the
node's appends queue. A caller that takes row locks in the same transaction takes them
after its first append (or calls :func:`lock_for_append` first), so no worker waits for
a row while holding the log.

The schema is the ``audit`` component's :data:`MIGRATIONS` (:mod:`relay.db.migrations`).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relay.audit.errors import LogStoreError
from relay.audit.merkle import (
    SHA256_TREE,
    TREE_HASHES,
    SubtreeSource,
    TreeHash,
    consistency_proof,
    inclusion_proof,
    range_hash,
)
from relay.db.migrations import Migration
from relay.db.open import write_transaction
from relay.db.pg import PgConnection

__all__ = [
    "APPEND_LOCK",
    "MIGRATIONS",
    "AuditStore",
    "append",
    "append_many",
    "create_schema",
    "declare_tree_hash",
    "lock_for_append",
    "open_database",
    "tree_hash_of",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx  INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_tree_hash (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    name TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_tree_hash_no_update BEFORE UPDATE ON audit_tree_hash
BEGIN SELECT RAISE(ABORT, 'the audit log tree hash is fixed'); END;
CREATE TRIGGER IF NOT EXISTS audit_tree_hash_no_delete BEFORE DELETE ON audit_tree_hash
BEGIN SELECT RAISE(ABORT, 'the audit log tree hash is fixed'); END;
"""

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx  BIGINT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_leaves_append_only BEFORE UPDATE OR DELETE ON audit_leaves
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_leaves_no_truncate BEFORE TRUNCATE ON audit_leaves
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TABLE IF NOT EXISTS audit_tree_hash (
    one  BIGINT PRIMARY KEY CHECK (one = 1),
    name TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_tree_hash_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log tree hash is fixed'; END $$;
CREATE TRIGGER audit_tree_hash_fixed BEFORE UPDATE OR DELETE ON audit_tree_hash
FOR EACH ROW EXECUTE FUNCTION audit_tree_hash_fixed();
CREATE TRIGGER audit_tree_hash_no_truncate BEFORE TRUNCATE ON audit_tree_hash
FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_hash_fixed();
"""

MIGRATIONS = [Migration(1, "the log: leaves and complete subtree hashes", _SCHEMA, _PG_SCHEMA)]
"""Steps of the ``audit`` component (step 1: the tables SQLite files already have)."""

APPEND_LOCK = 0x7462_6175_6469_746C  # pg_advisory_xact_lock key: "tbauditl"

Executor = sqlite3.Connection | sqlite3.Cursor | PgConnection


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a database file in WAL mode with the audit schema."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    create_schema(conn)
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables and triggers if missing (commits: call at startup)."""
    conn.executescript(_SCHEMA)


def tree_hash_of(executor: Executor) -> TreeHash:
    """The log's declared tree hash (SHA-256 when none was declared)."""
    row = executor.execute("SELECT name FROM audit_tree_hash WHERE one = 1").fetchone()
    if row is None:
        return SHA256_TREE
    try:
        return TREE_HASHES[str(row[0])]
    except KeyError:
        raise LogStoreError(f"the audit log names an unknown tree hash {row[0]!r}") from None


def declare_tree_hash(conn: sqlite3.Connection | PgConnection, tree_hash: TreeHash) -> None:
    """Fix the log's tree hash (commits). Declaring the hash already declared is a
    no-op; :class:`LogStoreError` when the log already hashes another way (a declared
    other hash, or leaves appended under the SHA-256 default)."""
    if conn.in_transaction:
        raise LogStoreError("declare the tree hash outside any open transaction")
    with write_transaction(conn):
        lock_for_append(conn)  # several workers declaring at once: one at a time
        current = conn.execute("SELECT name FROM audit_tree_hash WHERE one = 1").fetchone()
        if current is not None and current[0] != tree_hash.name:
            raise LogStoreError(
                f"the audit log hashes with {current[0]}, not {tree_hash.name}: "
                "a node keeps its profile for the life of its log"
            )
        if current is None and _size(conn) and tree_hash is not SHA256_TREE:
            raise LogStoreError(
                f"the audit log already holds leaves hashed with sha256; it cannot turn to "
                f"{tree_hash.name}"
            )
        if current is None:
            conn.execute("INSERT INTO audit_tree_hash (one, name) VALUES (1, ?)", (tree_hash.name,))


def _connection(executor: Executor) -> sqlite3.Connection | PgConnection:
    return executor.connection if isinstance(executor, sqlite3.Cursor) else executor


def lock_for_append(executor: Executor) -> None:
    """Make the caller's transaction the log's only appender until it ends (PostgreSQL;
    nothing to do on SQLite, whose write transactions are exclusive). Idempotent."""
    _require_transaction(executor)
    if isinstance(executor, PgConnection):
        executor.execute("SELECT pg_advisory_xact_lock(?)", (APPEND_LOCK,))


def _size(executor: Executor) -> int:
    row: Any = executor.execute("SELECT MAX(idx) FROM audit_leaves").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def _require_transaction(executor: Executor) -> None:
    if not _connection(executor).in_transaction:
        raise LogStoreError("append must run inside the caller's open transaction")


def append(conn: Executor, data: bytes) -> int:
    """Append one leaf inside the caller's transaction; return its index. Never commits."""
    return Appender(conn).append(data)


def _frontier(conn: Executor, size: int) -> list[tuple[int, bytes]]:
    """The complete subtrees on the right edge of a tree of ``size``, largest first
    (read in one statement: each point on the primary key)."""
    wanted: list[tuple[int, int]] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            wanted.append((level, start >> level))
            start += 1 << level
    if not wanted:
        return []
    terms = " OR ".join(["(level = ? AND idx = ?)"] * len(wanted))
    rows = conn.execute(
        f"SELECT level, idx, hash FROM audit_nodes WHERE {terms}",  # noqa: S608
        [v for point in wanted for v in point],
    ).fetchall()
    found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
    out: list[tuple[int, bytes]] = []
    for level, idx in wanted:
        if (level, idx) not in found:
            raise LogStoreError(f"audit tree is missing node ({level}, {idx})")
        out.append((level, found[level, idx]))
    return out


def append_many(conn: Executor, leaves: Iterable[bytes]) -> range:
    """Append leaves in order inside the caller's transaction; return their indexes."""
    return Appender(conn).extend(leaves)


class Appender:
    """Appends leaves in order inside the caller's open transaction, reading the log's
    tree hash, size and right edge once: the transaction holds the log (SQLite's writer,
    the append lock on PostgreSQL), so nothing else moves them until it ends. After a
    rollback to a savepoint that undid appends, :meth:`forget` what was read."""

    def __init__(self, conn: Executor) -> None:
        self._conn = conn
        self._tree_hash: TreeHash = SHA256_TREE
        self._size: int | None = None  # None: not read yet in this transaction
        self._frontier: list[tuple[int, bytes]] = []

    def forget(self) -> None:
        """Read the log again at the next append."""
        self._size = None

    def append(self, data: bytes) -> int:
        """Append one leaf; its index."""
        return self.extend((data,))[0]

    def extend(self, leaves: Iterable[bytes]) -> range:
        """Append ``leaves`` in order; their indexes."""
        if self._size is None:
            lock_for_append(self._conn)
            self._tree_hash = tree_hash_of(self._conn)
            size = _size(self._conn)
            self._frontier = _frontier(self._conn, size)
            self._size = size
        first = index = self._size
        frontier = list(self._frontier)
        tree_hash = self._tree_hash
        leaf_rows: list[tuple[int, bytes]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        for data in leaves:
            h = tree_hash.leaf(data)
            leaf_rows.append((index, data))
            node_rows.append((0, index, h))
            level, i = 0, index
            while frontier and frontier[-1][0] == level:
                h = tree_hash.node(frontier.pop()[1], h)
                level, i = level + 1, i >> 1
                node_rows.append((level, i, h))
            frontier.append((level, h))
            index += 1
        try:
            self._conn.executemany("INSERT INTO audit_leaves (idx, data) VALUES (?, ?)", leaf_rows)
            self._conn.executemany(
                "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", node_rows
            )
        except BaseException:
            self.forget()
            raise
        self._size, self._frontier = index, frontier
        return range(first, index)


class AuditStore:
    """Read side of the log: size, leaves, roots and proofs for any size, O(log n) reads."""

    def __init__(self, conn: sqlite3.Connection | PgConnection) -> None:
        self._conn = conn

    @property
    def tree_hash(self) -> TreeHash:
        """The log's tree hash (see :func:`declare_tree_hash`)."""
        return tree_hash_of(self._conn)

    def size(self) -> int:
        """Number of leaves committed (or appended in this connection's transaction)."""
        return _size(self._conn)

    def leaf(self, index: int) -> bytes:
        row = self._conn.execute("SELECT data FROM audit_leaves WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise LogStoreError(f"no leaf at index {index}")
        return bytes(row[0])

    def leaf_hash(self, index: int) -> bytes:
        return self._subtree(0, index)

    def _subtree(self, level: int, index: int) -> bytes:
        row = self._conn.execute(
            "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            raise LogStoreError(f"audit tree has no node ({level}, {index})")
        return bytes(row[0])

    def _source(self) -> SubtreeSource:
        """A subtree reader memoized for one query (ranges on the right edge repeat)."""
        return functools.cache(self._subtree)

    def _check_size(self, size: int) -> None:
        current = self.size()
        if not 0 <= size <= current:
            raise LogStoreError(f"tree size {size} is not between 0 and {current}")

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: the whole log)."""
        size = self.size() if size is None else size
        self._check_size(size)
        return range_hash(self._source(), 0, size, tree_hash=self.tree_hash)

    def head(self) -> tuple[int, bytes]:
        """(size, root) of one consistent view, for signing a checkpoint.

        The root is computed for the size read first, so an append committed meanwhile
        cannot mix in (complete subtrees never change once written).
        """
        size = self.size()
        return size, self.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= index < size:
            raise LogStoreError(f"leaf index {index} outside a tree of {size} leaves")
        return inclusion_proof(self._source(), index, size, tree_hash=self.tree_hash)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check_size(new)
        if not 0 < old <= new:
            raise LogStoreError(f"no consistency proof from size {old} to size {new}")
        return consistency_proof(self._source(), old, new, tree_hash=self.tree_hash)
