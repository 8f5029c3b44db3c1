"""The SQLite log (real file, WAL) against the in-memory reference tree."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.audit.errors import LogStoreError
from relay.audit.merkle import MemoryTree, verify_consistency, verify_inclusion
from relay.audit.store import Appender, AuditStore, append, append_many, open_database


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_database(tmp_path / "node.db")
    yield c
    c.close()


def _fill(conn: sqlite3.Connection, n: int) -> list[bytes]:
    data = [f"event {i}".encode() for i in range(n)]
    with conn:
        conn.execute("BEGIN")
        for d in data:
            append(conn, d)
    return data


def test_database_is_in_wal_mode(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_roots_and_proofs_match_the_reference_for_every_size(conn: sqlite3.Connection) -> None:
    data = _fill(conn, 37)
    ref = MemoryTree(data)
    store = AuditStore(conn)
    assert store.size() == 37
    for size in range(38):
        assert store.root(size) == ref.root(size)
    for size in range(1, 38):
        for i in range(size):
            proof = store.inclusion_proof(i, size)
            assert proof == ref.inclusion_proof(i, size)
            verify_inclusion(store.leaf_hash(i), i, size, proof, store.root(size))
        for old in range(1, size + 1):
            proof = store.consistency_proof(old, size)
            assert proof == ref.consistency_proof(old, size)
            verify_consistency(old, size, proof, store.root(old), store.root(size))
    assert [store.leaf(i) for i in range(37)] == data


def test_append_many_equals_one_by_one(tmp_path: Path) -> None:
    a = open_database(tmp_path / "a.db")
    b = open_database(tmp_path / "b.db")
    data = [bytes([i]) * (i + 1) for i in range(100)]
    with a:
        a.execute("BEGIN")
        for d in data:
            append(a, d)
    with b:
        b.execute("BEGIN")
        assert append_many(b, data[:13]) == range(13)
    with b:
        b.execute("BEGIN")
        assert append_many(b, data[13:]) == range(13, 100)
    assert AuditStore(a).root() == AuditStore(b).root() == MemoryTree(data).root()
    a.close()
    b.close()


def test_append_outside_a_transaction_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(LogStoreError, match="transaction"):
        append(conn, b"x")
    with pytest.raises(LogStoreError, match="transaction"):
        append_many(conn, [b"x"])


def test_rolled_back_event_leaves_no_leaf(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")

    def record_event_then_fail() -> None:
        with conn:
            conn.execute("INSERT INTO events (body) VALUES ('packet')")
            append(conn.cursor(), b"packet leaf")
            raise RuntimeError("the event failed after the append")

    with pytest.raises(RuntimeError):
        record_event_then_fail()
    assert AuditStore(conn).size() == 0
    with conn:
        conn.execute("INSERT INTO events (body) VALUES ('packet')")
        assert append(conn.cursor(), b"packet leaf") == 0
    assert AuditStore(conn).size() == 1


def test_leaves_survive_reopening_the_file(tmp_path: Path) -> None:
    c = open_database(tmp_path / "node.db")
    data = _fill(c, 9)
    root = AuditStore(c).root()
    c.close()
    c = open_database(tmp_path / "node.db")
    assert AuditStore(c).root() == root == MemoryTree(data).root()
    with c:
        c.execute("BEGIN")
        assert append(c, b"tenth") == 9
    assert AuditStore(c).root() == MemoryTree([*data, b"tenth"]).root()
    c.close()


def test_the_database_refuses_rewrites_and_deletes(conn: sqlite3.Connection) -> None:
    _fill(conn, 4)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), conn:
        conn.execute("UPDATE audit_leaves SET data = x'00' WHERE idx = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), conn:
        conn.execute("DELETE FROM audit_nodes WHERE level = 0")


def test_requests_beyond_the_log_are_refused(conn: sqlite3.Connection) -> None:
    _fill(conn, 5)
    store = AuditStore(conn)
    with pytest.raises(LogStoreError):
        store.root(6)
    with pytest.raises(LogStoreError):
        store.inclusion_proof(5, 5)
    with pytest.raises(LogStoreError):
        store.consistency_proof(0, 5)
    with pytest.raises(LogStoreError):
        store.leaf(5)


def test_head_is_the_size_and_root_of_one_view(conn: sqlite3.Connection) -> None:
    data = _fill(conn, 11)
    assert AuditStore(conn).head() == (11, MemoryTree(data).root())


def test_an_appender_reads_the_log_once_per_transaction(conn: sqlite3.Connection) -> None:
    """A receive transaction appends two leaves per packet: the log's hash, size and
    right edge are read at the first, then kept, not read again for every leaf."""
    first = _fill(conn, 11)  # an odd size: a right edge of several subtrees
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    more = [f"packet {i}".encode() for i in range(40)]
    with conn:
        conn.execute("BEGIN")
        appender = Appender(conn)
        assert [appender.append(d) for d in more] == list(range(11, 51))
    conn.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 3, reads  # the tree hash, the size, the right edge
    store, ref = AuditStore(conn), MemoryTree(first + more)
    assert store.size() == 51
    assert all(store.root(n) == ref.root(n) for n in range(52))


def test_an_appender_forgets_what_a_rollback_to_a_savepoint_undid(
    conn: sqlite3.Connection,
) -> None:
    """PostgreSQL receives each packet of a batch in a savepoint, and undoes a packet
    another worker accepted first: the appender reads the log again after it, so the
    next leaves follow the ones that stayed, without a gap."""
    kept = [f"kept {i}".encode() for i in range(5)]
    after = [f"after {i}".encode() for i in range(4)]
    with conn:
        conn.execute("BEGIN")
        appender = Appender(conn)
        appender.extend(kept)
        conn.execute("SAVEPOINT packet")
        appender.extend([b"undone 1", b"undone 2", b"undone 3"])
        conn.execute("ROLLBACK TO SAVEPOINT packet")
        appender.forget()
        assert appender.extend(after) == range(5, 9)
    store, ref = AuditStore(conn), MemoryTree(kept + after)
    assert store.size() == 9
    assert all(store.root(n) == ref.root(n) for n in range(10))
