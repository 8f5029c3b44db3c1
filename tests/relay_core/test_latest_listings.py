"""The console's outbox page asks for the latest packets each way (``order=desc`` and a
``limit``): on SQLite and PostgreSQL they come newest first, as many as asked, and on
SQLite the statement walks the end of the key, however many packets the node ever
exchanged (no scan, no sort of the whole table)."""

from __future__ import annotations

import sqlite3

from relay_core_support import DAFENG, WUCHANG, Federation, drain, send

from relay.core.model import OutboxState


async def test_the_latest_packets_each_way_come_newest_first(federation: Federation) -> None:
    fed = federation
    sent = await send(fed, WUCHANG, DAFENG, "case-latest", n=6)
    await drain(fed, WUCHANG)
    node, store = fed.nodes[WUCHANG], fed.stores[WUCHANG]
    everything = [i.summary.packet_id for i in node.list_outbox()]
    assert everything == sent
    latest = node.list_outbox(limit=4, newest_first=True)
    assert [i.summary.packet_id for i in latest] == sent[::-1][:4]
    delivered = node.list_outbox(state=OutboxState.DELIVERED, limit=2, newest_first=True)
    assert [i.summary.packet_id for i in delivered] == sent[::-1][:2]
    assert [i.summary.packet_id for i in node.list_outbox(limit=2)] == sent[:2]
    received = fed.nodes[DAFENG].list_inbox(limit=3, newest_first=True)
    assert [i.summary.packet_id for i in received] == sent[::-1][:3]

    conn = store.connection
    if isinstance(conn, sqlite3.Connection):
        ran: list[str] = []
        conn.set_trace_callback(ran.append)
        node.list_outbox(limit=4, newest_first=True)
        conn.set_trace_callback(None)
        [statement] = ran
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
        assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort of every row
        assert any(step.startswith("SCAN outbox") for step in plan)  # the key, from its end


async def test_the_inbox_after_a_number_comes_a_page_at_a_time(federation: Federation) -> None:
    """``inbox_after``: what a reader keeping the last number it handled reads next (the
    survey layer's catch-up at start), in arrival order, on both backends; on SQLite an
    index range from the number on, however many packets came before."""
    fed = federation
    sent = await send(fed, WUCHANG, DAFENG, "case-after", n=5)
    await drain(fed, WUCHANG)
    node = fed.nodes[DAFENG]
    first = node.inbox_after(0, 2)
    assert [item.summary.packet_id for _, item in first] == sent[:2]
    numbers = [n for n, _ in first]
    assert numbers[0] < numbers[1]
    rest = node.inbox_after(numbers[-1], 10)
    assert [item.summary.packet_id for _, item in rest] == sent[2:]
    assert node.inbox_after(rest[-1][0], 10) == []
    assert [i.summary.packet_id for i in node.list_inbox()] == sent  # the same packets
    assert rest[0][1] == node.list_inbox()[2]  # and the same items

    conn = fed.stores[DAFENG].connection
    if isinstance(conn, sqlite3.Connection):
        ran: list[str] = []
        conn.set_trace_callback(ran.append)
        node.inbox_after(numbers[-1], 10)
        conn.set_trace_callback(None)
        [statement] = ran
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
        assert any("SEARCH inbox USING INTEGER PRIMARY KEY" in step for step in plan), plan
