"""Issue 12: every statement the relay and the case layer run per packet or per batch
reads through an index, none scans a table that grows with history (outbox, inbox and
their side tables, outbox_bodies included, the audit log, cases, case_packets).

The statements are recorded as they run (SQLite's trace callback, with their values)
while two offices take the per-packet paths: creating a step, sending, receiving,
judging (admission), applying and settling, receipts both ways, a plain packet, a
forged step refused, a duplicate batch, a partner down and back. Each is then
explained (``EXPLAIN QUERY PLAN``). A new statement that scans a growing table fails
here; an index range that grows (every packet of a case) is what the VM-step tests of
tests/relay_core/test_flat_costs.py catch.
"""

from __future__ import annotations

import re
import sqlite3

from casekit import HANDLING
from casekit_offices import Offices
from test_admission import BOOKS, forge_conclude

from relay.cases.model import EventKind

BOUNDED = {"peers"}  # one row per partner that is backing off
_SCAN = re.compile(r"^SCAN (\w+)")
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b", re.IGNORECASE)


class Recorder:
    """The distinct statements run on some connections (by text, values bound)."""

    def __init__(self, conns: list[sqlite3.Connection]) -> None:
        self.statements: dict[str, sqlite3.Connection] = {}
        self._conns = conns
        for conn in conns:
            conn.set_trace_callback(lambda sql, conn=conn: self.statements.setdefault(sql, conn))

    def stop(self) -> None:
        for conn in self._conns:
            conn.set_trace_callback(None)

    def scans(self) -> list[tuple[str, str]]:
        """(table scanned, statement) for every scan of a table that is not bounded."""
        found = []
        for sql, conn in self.statements.items():
            if _CONTROL.match(sql):
                continue
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
                m = _SCAN.match(row[3])
                if m and m.group(1) in tables and m.group(1) not in BOUNDED:
                    found.append((m.group(1), sql[:300]))
        return found


async def test_no_per_packet_statement_scans_a_growing_table(offices: Offices) -> None:
    r, h, network = offices.r, offices.h, offices.network

    async def deliver() -> None:  # index probes only, as the outbox does
        for _ in range(50):
            if not (r.store.head_due(HANDLING)[0] or h.store.head_due(r.node_id)[0]):
                return
            await r.relay.deliver_once()
            await h.relay.deliver_once()
        raise AssertionError("still open after 50 passes")

    conns = [c for o in (r, h) for c in (o.store.connection, o.store.writer_connection)]
    conns += [o.cases.connection for o in (r, h)]  # new packets go through the writer
    assert all(isinstance(c, sqlite3.Connection) for c in conns)
    recorder = Recorder(conns)  # type: ignore[arg-type]
    try:
        opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
        case_id = opened.record.case.header.case_id
        await deliver()
        await h.desk.act(case_id, EventKind.ACCEPT, {})  # and a packet back
        await deliver()
        for n in range(2):
            await r.desk.act(case_id, EventKind.COMPLAIN, {"text": f"第{n}次催办"})
        await r.relay.create_packet(
            to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
            mode="proxy_receipt", content={"note": "材料已寄出"},
        )  # fmt: skip
        await deliver()
        await forge_conclude(offices, case_id, seq=9)  # refused: rejected, the case rewinds
        await deliver()
        [sent] = r.relay.list_outbox(case_id=case_id)[-2:-1]  # delivered before: a duplicate
        token = r.store.outgoing(sent.summary.packet_id).token  # type: ignore[union-attr]
        await network.nodes[HANDLING].receive_batch(r.node_id, [token])
        network.down.add(HANDLING)
        await r.desk.act(case_id, EventKind.COMPLAIN, {"text": "对方系统暂停"})
        await r.relay.deliver_once()  # fails: the partner backs off
        network.down.discard(HANDLING)
        offices.clock.advance(hours=1)
        await deliver()
    finally:
        recorder.stop()
    assert len(h.desk.get(case_id).case.view.complaints) == 3
    assert len(recorder.statements) > 40, "the paths were not taken"
    bodies = [sql for sql in recorder.statements if "outbox_bodies" in sql]
    assert any(sql.startswith("INSERT INTO outbox_bodies") for sql in bodies), bodies
    assert any("JOIN outbox_bodies" in sql for sql in bodies), bodies  # a batch is read
    assert recorder.scans() == []
