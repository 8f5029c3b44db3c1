"""The case heads (``outbox_heads``: per destination and case, its open packet of the
lowest sequence number, and when that one is due) are updated only when a head changes.
A batch going in flight leaves its cases' heads as they were; they were updated all the
same, one UPDATE per case of the batch (``bench flat_costs``, open cases)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from relay_core_support import ACTION, DAFENG, MATTER, MODE, WUCHANG, Federation, heads

from relay.core.model import OutboxState, PacketSummary
from relay.core.store import OutboxUpdate


@pytest.fixture
def backend() -> str:
    return "sqlite"  # a trigger on the node's own connection counts the writes


def head_writes(conn: sqlite3.Connection) -> Callable[[], dict[str, int]]:
    """Counts of the rows inserted, updated and deleted in ``outbox_heads`` through
    ``conn`` from now on (temporary triggers: this connection only, nothing on disk)."""
    conn.execute("CREATE TEMP TABLE head_writes (event TEXT NOT NULL)")
    for event in ("INSERT", "UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TEMP TRIGGER head_{event.lower()} AFTER {event} ON main.outbox_heads"
            f" BEGIN INSERT INTO head_writes VALUES ('{event.lower()}'); END"
        )

    def counts() -> dict[str, int]:
        rows = conn.execute("SELECT event, COUNT(*) FROM head_writes GROUP BY event")
        return dict(rows.fetchall())

    return counts


async def create(fed: Federation, case: str) -> PacketSummary:
    return await fed.nodes[WUCHANG].create_packet(
        to=DAFENG, case_id=case, matter=MATTER, action=ACTION, mode=MODE, content={"c": case}
    )


def update(
    fed: Federation,
    made: list[PacketSummary],
    state: OutboxState,
    *,
    next_attempt_at: datetime | None = None,
    receipt: str | None = None,
    attempted: bool = False,
) -> None:
    fed.stores[WUCHANG].update_outbox(
        [
            OutboxUpdate(s.packet_id, state, next_attempt_at, receipt=receipt, attempted=attempted)
            for s in made
        ]
    )


async def test_a_batch_going_in_flight_leaves_its_cases_heads_unwritten(
    federation: Federation,
) -> None:
    made = [await create(federation, f"case-{i}") for i in range(5)]
    kept_before, _ = heads(federation)
    counts = head_writes(federation.stores[WUCHANG].connection)

    update(federation, made, OutboxState.IN_FLIGHT, attempted=True)
    assert counts() == {}
    kept, implied = heads(federation)
    assert kept == implied == kept_before

    # the partner was unavailable: back to queued, due later: every head says when
    later = federation.clock() + timedelta(minutes=5)
    update(federation, made, OutboxState.QUEUED, next_attempt_at=later, attempted=True)
    assert counts() == {"update": 5}
    due = {r[0] for r in federation.stores[WUCHANG].connection.execute(
        "SELECT due FROM outbox_heads")}  # fmt: skip
    assert due == {later.timestamp()}

    # delivered: each case has nothing open left, its head goes
    update(federation, made, OutboxState.DELIVERED, receipt="r")
    assert counts() == {"update": 5, "delete": 5}
    assert heads(federation) == (set(), set())


async def test_a_delivered_head_hands_over_to_the_next_packet_of_its_case(
    federation: Federation,
) -> None:
    first, second = await create(federation, "a"), await create(federation, "a")
    counts = head_writes(federation.stores[WUCHANG].connection)
    update(federation, [first], OutboxState.IN_FLIGHT, attempted=True)
    assert counts() == {}
    update(federation, [first], OutboxState.DELIVERED, receipt="r")
    assert counts() == {"update": 1}
    kept, implied = heads(federation)
    assert kept == implied
    [(_, case, order)] = kept
    assert case == "a"
    row = (
        federation.stores[WUCHANG]
        .connection.execute("SELECT packet_id FROM outbox WHERE ord = ?", (order,))
        .fetchone()
    )
    assert row[0] == second.packet_id
