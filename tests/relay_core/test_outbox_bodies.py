"""Issue 12: an outgoing packet's bytes (``token``, ``own_copy``) live in
``outbox_bodies``, written once; a change of state rewrites the small ``outbox`` row
only. Step 3 of the ``relay`` schema moved them there: a node whose database was
written before keeps working (its delivered packets read back, its open ones go out,
once each, in order): on SQLite a file made by the DDL of steps 1 and 2 holding a
node's rows, on PostgreSQL step 3 undone in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relay_core_support import DAFENG, WUCHANG, Federation, drain, send, undo_outbox_bodies

from relay.audit.store import MIGRATIONS as AUDIT_MIGRATIONS
from relay.core.model import OutboxState
from relay.core.sqlite_schema import MIGRATIONS
from relay.db.migrations import Connection, migrate, schema_version
from relay.db.pg import PgConnection

CASE = "case-before-step-3"


def _columns(conn: Connection, table: str) -> list[str]:
    if isinstance(conn, PgConnection):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
            " AND table_schema = current_schema() ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [str(r[0]) for r in rows]
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _sqlite_as_step_2(path: Path) -> None:
    """Replace the (closed) SQLite file at ``path`` with one made by steps 1 and 2 of
    the schema (the DDL the release before step 3 ran) holding the same rows, each
    outgoing packet's body back in its ``outbox`` row."""
    made = path.with_name("step-2.sqlite3")
    conn = sqlite3.connect(made, isolation_level=None)
    migrate(conn, "relay", MIGRATIONS[:2])
    migrate(conn, "audit", AUDIT_MIGRATIONS)
    assert "token" in _columns(conn, "outbox")
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_bodies'").fetchone()
    conn.execute("ATTACH DATABASE ? AS old", (str(path),))
    conn.execute("BEGIN")
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM old.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT IN ('outbox', 'outbox_bodies', 'outbox_refusals', 'outbox_blobs',"
            " 'schema_versions')"
        )
    ]
    for table in tables:
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")
    columns = _columns(conn, "outbox")
    picked = ", ".join(f"b.{c}" if c in ("token", "own_copy") else f"o.{c}" for c in columns)
    conn.execute(
        f"INSERT INTO main.outbox ({', '.join(columns)}) SELECT {picked}"
        " FROM old.outbox o JOIN old.outbox_bodies b ON b.ord = o.ord"
    )
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE old")
    conn.close()
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)  # none after a clean close; never replayed here
    made.replace(path)


async def test_a_node_written_before_step_3_reads_and_delivers_its_packets(
    federation: Federation, backend: str
) -> None:
    fed = federation
    delivered = await send(fed, WUCHANG, DAFENG, CASE, 2)
    await drain(fed, WUCHANG)
    queued = await send(fed, WUCHANG, DAFENG, CASE, 2)
    fed.network.reply_loss = 1.0  # taken there, the answer lost: in flight
    await fed.nodes[WUCHANG].deliver_once()
    fed.network.reply_loss = 0.0
    node, store = fed.nodes[WUCHANG], fed.stores[WUCHANG]
    before = {p: store.outgoing(p) for p in delivered + queued}
    contents = {p: node.read_packet(p).content for p in delivered + queued}
    states = [before[p].item.state for p in delivered + queued]  # type: ignore[union-attr]
    assert states == [OutboxState.DELIVERED] * 2 + [OutboxState.IN_FLIGHT] * 2  # no answer yet

    if backend == "sqlite":
        store.close()
        _sqlite_as_step_2(fed.root / WUCHANG / "relay.sqlite3")
    else:
        conn = store.connection
        conn.execute("BEGIN")
        undo_outbox_bodies(conn)
        conn.execute("UPDATE schema_versions SET version = 2 WHERE component = 'relay'")
        conn.execute("COMMIT")
        assert "token" in _columns(conn, "outbox")
    node = fed.start(WUCHANG)  # opens the store: step 3 runs
    store = fed.stores[WUCHANG]
    conn = store.connection
    assert schema_version(conn, "relay") == len(MIGRATIONS) >= 3
    assert {"token", "own_copy"}.isdisjoint(_columns(conn, "outbox"))
    assert _columns(conn, "outbox_bodies") == ["ord", "token", "own_copy"]

    for packet_id, held in before.items():
        assert store.outgoing(packet_id) == held  # the same bytes, state and receipt
        assert node.read_packet(packet_id).content == contents[packet_id]
    fed.network.down.discard(DAFENG)
    later = await send(fed, WUCHANG, DAFENG, CASE)  # a new packet after the moved ones
    await drain(fed, WUCHANG)
    sent = delivered + queued + later
    inbox = fed.nodes[DAFENG].list_inbox(case_id=CASE)  # once each, in order
    assert [(i.summary.packet_id, i.summary.seq) for i in inbox] == list(
        zip(sent, range(1, 6), strict=True)
    )
    assert {i.summary.packet_id: i.state for i in node.list_outbox(case_id=CASE)} == {
        p: OutboxState.DELIVERED for p in sent
    }
    assert node.read_packet(later[0]).content == {"step": 0, "applicant": "张三"}
