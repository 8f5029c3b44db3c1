"""A step is stored with the packets it sends (their ids chosen with it) until the relay
has queued them: a node stopped in between queues them at its next start, none twice,
and a step the relay refuses leaves nothing to send. Each test runs on SQLite and on
PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from casekit import HANDLING
from casekit_offices import Offices
from dbkit import Database

from relay.cases.desk import UNSENT_AFTER
from relay.cases.errors import CaseError
from relay.cases.model import CaseState, EventKind
from relay.cases.sqlite_store import SqliteCaseStore
from relay.core.errors import NotAuthorized
from relay.db.open import write_transaction

BOOKS = "publication-retail-licence"


class NodeStopped(BaseException):
    """The node stops here (a kill: no handler runs)."""


def stop(*_: Any, **__: Any) -> Any:
    raise NodeStopped


@pytest.fixture
def case_database(database: Database) -> Database:
    return database


def _unsent(store: SqliteCaseStore) -> list[Any]:
    return store.connection.execute("SELECT case_id, version FROM case_unsent").fetchall()


async def _submitted(offices: Offices) -> str:
    opened = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    await offices.deliver()
    return opened.record.case.header.case_id


async def _accepted_then_stopped(office: Any, case_id: str) -> None:
    """The office accepts the case and stops before the relay queues the packet."""

    async def stopped(**_: Any) -> Any:
        raise NodeStopped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(office.desk._relay, "create_packet", stopped)
        with pytest.raises(NodeStopped):
            await office.desk.act(case_id, EventKind.ACCEPT, {})


def _accepts_sent(offices: Offices, case_id: str) -> list[str]:
    return [
        i.summary.packet_id
        for i in offices.h.relay.list_outbox(case_id=case_id)
        if i.summary.action == "accept"
    ]


async def test_a_step_whose_packet_a_stop_left_unqueued_is_sent_at_the_next_start(
    offices: Offices,
) -> None:
    r, h = offices.r, offices.h
    case_id = await _submitted(offices)
    await _accepted_then_stopped(h, case_id)
    assert h.desk.get(case_id).case.state is CaseState.ACCEPTED  # our copy has the step
    assert _accepts_sent(offices, case_id) == []
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.SUBMITTED  # the partner's has not

    assert await h.desk.send_unsent(h.desk.now()) == [case_id]  # the next start
    assert len(_accepts_sent(offices, case_id)) == 1
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.ACCEPTED
    assert await h.desk.send_unsent(h.desk.now()) == []


async def test_a_packet_queued_before_the_stop_is_not_queued_again(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes after the relay queued the packet, before the step was marked
    sent: the start finds the packet under the id chosen with the step."""
    r, h = offices.r, offices.h
    case_id = await _submitted(offices)
    monkeypatch.setattr(h.desk._store, "sent", stop)
    with pytest.raises(NodeStopped):
        await h.desk.act(case_id, EventKind.ACCEPT, {})
    monkeypatch.undo()
    [queued] = _accepts_sent(offices, case_id)

    assert await h.desk.send_unsent(h.desk.now()) == [case_id]
    assert _accepts_sent(offices, case_id) == [queued]
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.ACCEPTED
    assert [i.summary.packet_id for i in r.relay.list_inbox(case_id=case_id)
            if i.summary.action == "accept"] == [queued]  # fmt: skip
    assert _unsent(h.desk._store) == []


async def test_a_step_the_relay_refuses_is_undone_with_nothing_left_to_send(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = offices.h
    case_id = await _submitted(offices)

    async def refused(**_: Any) -> Any:
        raise NotAuthorized("no-agreement")

    monkeypatch.setattr(h.desk._relay, "create_packet", refused)
    with pytest.raises(NotAuthorized):
        await h.desk.act(case_id, EventKind.ACCEPT, {})
    monkeypatch.undo()
    assert h.desk.get(case_id).case.state is CaseState.SUBMITTED
    assert _unsent(h.desk._store) == []
    assert await h.desk.send_unsent(h.desk.now()) == []
    assert _accepts_sent(offices, case_id) == []


def test_a_step_is_claimed_by_one_worker_and_again_only_after_a_while(
    case_database: Database,
) -> None:
    """Two workers looking at once: one claims the step, the other gets nothing; a step
    claimed is claimed again only by a look that takes steps claimed before it (the
    claimer stopped too)."""
    one, two = (SqliteCaseStore(case_database.connect()) for _ in range(2))
    stored = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with write_transaction(one.connection):
        one.connection.execute(
            "INSERT INTO case_unsent (case_id, version, packets, at) VALUES (?, ?, ?, ?)",
            ("c-1", 2, "{}", stored.timestamp()),
        )
    now = stored + UNSENT_AFTER * 2
    assert one.claim_unsent(now - UNSENT_AFTER, now) == [("c-1", 2, "{}")]
    assert two.claim_unsent(now - UNSENT_AFTER, now) == []  # claimed: at is now
    later = now + UNSENT_AFTER * 2
    assert two.claim_unsent(later - UNSENT_AFTER, later) == [("c-1", 2, "{}")]
    two.sent("c-1", 2)
    assert _unsent(one) == []


def _sent_in_order(offices: Offices, case_id: str) -> list[str]:
    """The actions the handling office queued for the case, by their sequence number."""
    items = offices.h.relay.list_outbox(case_id=case_id)
    return [i.summary.action for i in sorted(items, key=lambda i: i.summary.seq)]


async def test_a_step_taken_while_the_cases_step_before_is_being_queued_is_queued_after_it(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clerks at once: the second step waits until the first one's packet is queued,
    so the partner gets them in the order they were taken (the first one's sealing held
    back here, as a large attachment would)."""
    r, h = offices.r, offices.h
    case_id = await _submitted(offices)
    create, hold = h.desk._relay.create_packet, asyncio.Event()

    async def slow_accept(**kw: Any) -> Any:
        if kw["action"] == "accept":
            await hold.wait()
        return await create(**kw)

    monkeypatch.setattr(h.desk._relay, "create_packet", slow_accept)
    accept = asyncio.create_task(h.desk.act(case_id, EventKind.ACCEPT, {}))
    await asyncio.sleep(0.05)
    decide = asyncio.create_task(h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"}))
    await asyncio.sleep(0.05)
    hold.set()
    await asyncio.gather(accept, decide)

    assert _sent_in_order(offices, case_id)[-2:] == ["accept", "decide"]
    await offices.deliver()
    assert r.desk.get(case_id).case.state is h.desk.get(case_id).case.state
    assert r.desk.get(case_id).case.state is CaseState.APPROVED


async def test_a_step_after_one_a_stop_left_unsent_queues_that_one_first(offices: Offices) -> None:
    """On a node of several workers, a step younger than UNSENT_AFTER may be on its way at
    another worker: the next step of its case is refused (retry later) and nothing is
    stored; once the while has passed, the next step queues the step before first."""
    r, h = offices.r, offices.h
    case_id = await _submitted(offices)
    await _accepted_then_stopped(h, case_id)
    version = h.desk.get(case_id).version

    with pytest.raises(CaseError) as refused:
        await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    assert refused.value.code == "step-in-flight"
    assert h.desk.get(case_id).version == version
    assert _sent_in_order(offices, case_id) == []  # nothing queued by H

    offices.clock.advance(seconds=UNSENT_AFTER.total_seconds())
    await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    assert _sent_in_order(offices, case_id) == ["accept", "decide"]
    assert _unsent(h.desk._store) == []
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.APPROVED


async def test_on_a_node_of_one_worker_the_step_after_an_unsent_one_sends_both_at_once(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker: every step on its way is held by this process, so one left unsent is
    one a failure left, and the next step queues it first without waiting."""
    r, h = offices.r, offices.h
    h.desk.unsent_before = h.desk.now  # as CaseServices sets it on SQLite
    case_id = await _submitted(offices)

    async def failed(**_: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(h.desk._relay, "create_packet", failed)
    with pytest.raises(OSError, match="disk full"):
        await h.desk.act(case_id, EventKind.ACCEPT, {})
    monkeypatch.undo()

    await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    assert _sent_in_order(offices, case_id) == ["accept", "decide"]
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.APPROVED


async def test_a_step_after_one_the_relay_now_refuses_to_send_is_refused_with_the_reason(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step left unsent cannot be queued now (the agreement no longer grants it): the
    next step is refused, says why, stores nothing, and the earlier step stays to send."""
    h = offices.h
    h.desk.unsent_before = h.desk.now
    case_id = await _submitted(offices)
    create = h.desk._relay.create_packet
    await _accepted_then_stopped(h, case_id)
    version = h.desk.get(case_id).version

    async def refused(**kw: Any) -> Any:
        if kw["action"] == "accept":
            raise NotAuthorized("expired")
        return await create(**kw)

    monkeypatch.setattr(h.desk._relay, "create_packet", refused)
    with pytest.raises(CaseError) as earlier:
        await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    assert earlier.value.code == "earlier-step-unsent"
    assert "expired" in str(earlier.value)
    assert h.desk.get(case_id).version == version
    assert _sent_in_order(offices, case_id) == []
    assert [v for _, v in _unsent(h.desk._store)] == [version]
