"""Packets refused for good (issue 12: nothing polled may read what grows with history).

A refusal *stands* until a later packet of its case is queued to that partner: the staff
alerts read the standing ones only. The integration scan reads the refusals it has not
*noticed* only. Both are partial indexes of ``outbox_refusals`` (relay schema step 4),
so neither read grows with the refusals kept over the years."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from relay_core_support import DAFENG, NINGJIN, WUCHANG, Federation, send
from test_flat_costs import OUTBOX_BODIES, OUTBOX_ROWS, STEP, seed

from relay.core.model import OutboxState
from relay.core.sqlite_schema import MIGRATIONS
from relay.core.store import OutboxUpdate
from relay.db.migrations import migrate, schema_version
from relay.http.staff import delivery_alerts


def ids(items: list) -> list[str]:  # type: ignore[type-arg]
    return [i.summary.packet_id for i in items]


async def test_a_refusal_stands_until_a_later_packet_of_its_case_is_queued(
    federation: Federation,
) -> None:
    fed, store = federation, federation.stores[WUCHANG]
    [rejected] = await send(fed, WUCHANG, DAFENG, "rejected")
    [parked, successor] = await send(fed, WUCHANG, DAFENG, "parked", 2)
    [expired] = await send(fed, WUCHANG, DAFENG, "expired")
    [other_peer] = await send(fed, WUCHANG, NINGJIN, "rejected")
    store.update_outbox(
        [
            OutboxUpdate(rejected, OutboxState.REJECTED, reason="content-refused:x"),
            OutboxUpdate(parked, OutboxState.DEAD, reason="attachment-digest-mismatch"),
            OutboxUpdate(successor, OutboxState.DEAD, reason="predecessor-dead"),
            OutboxUpdate(expired, OutboxState.DEAD, reason="expired"),
            OutboxUpdate(other_peer, OutboxState.REJECTED, reason="content-refused:y"),
        ]
    )
    assert ids(store.standing_rejections()) == [other_peer, rejected]  # newest first
    assert ids(store.parked()) == [expired, successor, parked]  # an expiry never arrived
    alerts = {a.subject: a.code for a in delivery_alerts(fed.nodes[WUCHANG], fed.clock())}
    assert alerts == {
        parked: "packet-parked", successor: "packet-parked", expired: "packet-expired",
        rejected: "packet-rejected", other_peer: "packet-rejected",
    }  # fmt: skip

    await send(fed, WUCHANG, DAFENG, "rejected")  # the case moves on to that partner
    await fed.nodes[WUCHANG].resend(parked)  # sent again
    await fed.nodes[WUCHANG].resend(expired)
    assert ids(store.standing_rejections()) == [other_peer]  # its partner got nothing new
    assert store.parked() == []
    alerts = {a.subject for a in delivery_alerts(fed.nodes[WUCHANG], fed.clock())}
    assert alerts == {other_peer}

    # the integration scan's view: every refusal once, in order, until noticed
    assert ids(store.unnoticed_refusals(10)) == [rejected, parked, successor, expired, other_peer]
    assert ids(store.unnoticed_refusals(2)) == [rejected, parked]
    store.notice_refusals([rejected, successor])
    assert ids(store.unnoticed_refusals(10)) == [parked, expired, other_peer]
    store.notice_refusals([parked, expired, other_peer])
    assert store.unnoticed_refusals(10) == []


def _steps(conn: sqlite3.Connection, read: object) -> int:
    counter = [0]

    def tick() -> int:
        counter[0] += 1
        return 0

    conn.set_progress_handler(tick, STEP)
    try:
        read()  # type: ignore[operator]
    finally:
        conn.set_progress_handler(None, STEP)
    return counter[0]


@pytest.mark.parametrize("backend", ["sqlite"])  # counts SQLite's instructions
async def test_the_alerts_and_the_scan_read_the_same_with_thousands_of_old_refusals(
    federation: Federation,
) -> None:
    fed, node = federation, federation.nodes[WUCHANG]
    [standing] = await send(fed, WUCHANG, DAFENG, "now")
    fed.stores[WUCHANG].update_outbox(
        [OutboxUpdate(standing, OutboxState.DEAD, reason="attachment-digest-mismatch")]
    )

    def reads() -> None:
        assert ids(node.parked_packets()) == [standing]
        assert node.standing_rejections() == []
        assert ids(node.unnoticed_refusals(500)) == [standing]

    before = _steps(fed.stores[WUCHANG].connection, reads)
    out = fed.stores[WUCHANG].outgoing(standing)
    assert out is not None
    conn = fed.stores[WUCHANG].connection
    summary = conn.execute("SELECT summary FROM outbox").fetchone()[0]
    expires = out.item.summary.expires.timestamp()
    old = [
        (str(uuid.uuid4()), DAFENG, f"old-{i}", 1, "d" * 64, summary, state, expires)
        for i in range(4_000)
        for state in ("dead", "rejected")
    ]  # fmt: skip
    seed(
        fed, WUCHANG,
        (OUTBOX_ROWS, old),
        (OUTBOX_BODIES, [(out.token, r[0]) for r in old]),
        ("UPDATE outbox SET reason = 'content-refused:old' WHERE state != 'queued'", [()]),
        ("INSERT INTO outbox_refusals (ord, peer, case_id, standing, noticed)"
         " SELECT ord, peer, case_id, 0, 1 FROM outbox WHERE packet_id = ?",
         [(r[0],) for r in old]),
    )  # fmt: skip
    node = fed.nodes[WUCHANG]
    assert node.list_outbox(state=OutboxState.REJECTED, limit=1)  # they are there
    after = _steps(fed.stores[WUCHANG].connection, reads)
    assert after <= before + 1, (before, after)


def test_step_4_finds_the_refusals_of_a_store_written_before_it(tmp_path: Path) -> None:
    """Rows written before step 4: a refusal stands unless a later packet of its case to
    that partner is queued, in flight or delivered (as the alert board judged before);
    none is noticed yet, an expiry or a delivered packet is no refusal."""
    conn = sqlite3.connect(tmp_path / "relay.sqlite3", isolation_level=None)
    migrate(conn, "relay", MIGRATIONS[:3])
    rows = [  # (packet, peer, case, state, reason)
        ("resent", DAFENG, "a", "dead", "attachment-digest-mismatch"),
        ("again", DAFENG, "a", "delivered", None),
        ("alone", DAFENG, "b", "rejected", "content-refused:x"),
        ("after-dead", DAFENG, "b", "dead", "predecessor-rejected"),
        ("elsewhere", NINGJIN, "a", "rejected", "content-refused:x"),
        ("expired", DAFENG, "c", "dead", "expired"),
        ("sent", DAFENG, "c", "delivered", None),
    ]
    conn.executemany(
        "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state, expires,"
        " reason) VALUES (?,?,?,1,'d','{}',?,0,?)",
        rows,
    )
    migrate(conn, "relay", MIGRATIONS)
    assert schema_version(conn, "relay") == len(MIGRATIONS)
    found = conn.execute(
        "SELECT o.packet_id, r.standing, r.noticed FROM outbox_refusals r"
        " JOIN outbox o ON o.ord = r.ord ORDER BY r.ord"
    ).fetchall()
    assert found == [
        ("resent", 0, 0), ("alone", 1, 0), ("after-dead", 1, 0), ("elsewhere", 1, 0),
    ]  # fmt: skip
    assert (
        conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_parked'").fetchone() is None
    )
    conn.close()
