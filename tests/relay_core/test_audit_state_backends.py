"""The node's witnessing state (relay/audit/state.py) on both backends: it reads the log
the relay store appended to, indexes its packet leaves, and keeps checkpoints,
cosignatures (latest wins), partner states and alerts."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from relay_core_support import DAFENG, NINGJIN, WUCHANG, Federation, drain, send

from relay.audit.state import AuditState
from relay.audit.witness import ForkEvidence, ForkReason, PartnerState, PartnerStatus
from relay.db.pg import PgConnection


def state_of(fed: Federation, node: str) -> AuditState:
    """A second connection to ``node``'s database, as the node's audit service opens."""
    conn = fed.stores[node].connection
    if isinstance(conn, PgConnection):
        return AuditState(PgConnection(psycopg.connect(conn.raw.info.dsn, autocommit=True)))
    return AuditState(fed.root / node / "relay.sqlite3")


async def test_the_witnessing_state_reads_the_stores_log_and_keeps_what_it_is_given(
    federation: Federation,
) -> None:
    fed = federation
    sent = await send(fed, WUCHANG, DAFENG, "case-w", n=3)
    await send(fed, WUCHANG, NINGJIN, "case-n")
    await drain(fed, WUCHANG)
    state = state_of(fed, WUCHANG)
    try:
        assert state.log.size() == 8  # four packets sent, four receipts back
        assert [e.packet_id for e in state.exchanged_with(DAFENG)] == sent
        assert [e.packet_id for e in state.packets_by_id(sent[1])] == [sent[1]]
        at = fed.clock()
        assert state.put_checkpoint(8, b"note 8", at) == b"note 8"
        # signed once: another worker's later note for the same size gets the first back
        assert state.put_checkpoint(8, b"another note 8", at) == b"note 8"
        assert state.checkpoint(8) == b"note 8"
        state.put_cosignature(8, DAFENG, b"cosigned", at)
        state.put_cosignature(8, DAFENG, b"cosigned again", at + timedelta(seconds=1))
        assert state.cosignatures(8) == {DAFENG: b"cosigned again"}
        assert state.last_cosignature_at() == at + timedelta(seconds=1)
        state.put_partner(PartnerState(DAFENG, cosigned=b"a"))
        state.put_partner(PartnerState(DAFENG, cosigned=b"b"))
        assert state.partner(DAFENG).cosigned == b"b"
        evidence = ForkEvidence(DAFENG, ForkReason.ROLLBACK, b"first", b"second")
        halted = PartnerState(DAFENG, PartnerStatus.HALTED, b"b", evidence)
        first = state.halt_partner(halted, "rolled back", at)
        second = state.halt_partner(halted, "again", at)
        assert (first.id, second.id) == (1, 2)
        assert [a.detail for a in state.alerts()] == ["rolled back", "again"]
        assert state.partner(DAFENG).status is PartnerStatus.HALTED
    finally:
        state.close()


def test_the_last_cosignature_is_found_through_an_index(tmp_path) -> None:
    """Every metrics scrape asks when a partner last cosigned: one row per checkpoint per
    witness is kept for ever, so the statement must not scan them."""
    import sqlite3
    from datetime import UTC, datetime

    state = AuditState(tmp_path / "relay.sqlite3")
    conn = state.connection
    assert isinstance(conn, sqlite3.Connection)
    at = datetime(2026, 9, 1, tzinfo=UTC)  # written as data, never compared to now
    for size in range(1, 50):
        state.put_cosignature(size, DAFENG, b"cosigned", at + timedelta(minutes=size))
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    assert state.last_cosignature_at() == at + timedelta(minutes=49)
    conn.set_trace_callback(None)
    [statement] = ran
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
    assert not any(step.startswith("SCAN") for step in plan), plan
    state.close()
