"""Issue 12: applying a partner's case packets after a federation batch costs the same
however much is stored. The desk applies the packets the batch accepted with the
content the relay's pipeline opened: it neither lists the whole inbox nor verifies and
decrypts a packet a second time, and a plain packet is not a warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from casekit import HANDLING, counting_reads
from casekit_offices import Office, Offices

from relay.cases.model import CaseState, EventKind

BOOKS = "publication-retail-licence"


class Reads:
    """Counts the relay reads the desk could make of one office's node."""

    def __init__(self, office: Office, monkeypatch: pytest.MonkeyPatch) -> None:
        self.whole_inbox = 0
        self.reopened: list[str] = []
        relay = office.relay
        list_inbox, read_packet = relay.list_inbox, relay.read_packet

        def counting_list(*, case_id: str | None = None) -> Any:
            if case_id is None:
                self.whole_inbox += 1
            return list_inbox(case_id=case_id)

        def counting_read(packet_id: str) -> Any:
            self.reopened.append(packet_id)
            return read_packet(packet_id)

        monkeypatch.setattr(relay, "list_inbox", counting_list)
        monkeypatch.setattr(relay, "read_packet", counting_read)


@pytest.fixture
def reads(offices: Offices, monkeypatch: pytest.MonkeyPatch) -> dict[str, Reads]:
    return {o.node_id: Reads(o, monkeypatch) for o in (offices.r, offices.h)}


async def test_a_batch_is_applied_from_what_the_relay_opened(
    offices: Offices, reads: dict[str, Reads]
) -> None:
    opened = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    assert offices.h.desk.get(case_id).case.state is CaseState.SUBMITTED  # applied
    await offices.h.desk.act(case_id, EventKind.ACCEPT, {})
    await offices.deliver()
    assert offices.r.desk.get(case_id).case.state is CaseState.ACCEPTED  # and back
    for office in (offices.r, offices.h):
        assert reads[office.node_id].whole_inbox == 0
        assert reads[office.node_id].reopened == []
    [applied] = offices.h.desk.packets(case_id)
    [item] = offices.h.relay.list_inbox(case_id=case_id)
    assert (applied.packet_id, applied.outcome) == (item.summary.packet_id, "applied")


async def test_sync_at_start_still_applies_what_no_batch_applied(
    offices: Offices, reads: dict[str, Reads]
) -> None:
    """A packet accepted while the case layer was not mounted (straight into the core)
    is applied by ``sync``, which reads the packets the relay holds unsettled (not the
    whole inbox) and opens it again."""
    opened = await offices.r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, submit=False
    )
    case_id = opened.record.case.header.case_id
    offices.network.nodes[HANDLING] = offices.h.relay  # no case layer on the way in
    await offices.r.desk.act(case_id, EventKind.SUBMIT, {})
    await offices.deliver()
    assert offices.h.desk.list_cases() == []
    [applied] = await offices.h.desk.sync()
    assert applied.outcome == "applied"
    assert offices.h.desk.get(case_id).case.state is CaseState.SUBMITTED
    assert reads[HANDLING].whole_inbox == 0
    assert reads[HANDLING].reopened == [applied.packet_id]
    assert await offices.h.desk.sync() == []  # once only


async def test_a_plain_packet_is_applied_without_a_warning(
    offices: Offices, caplog: pytest.LogCaptureFixture
) -> None:
    opened = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    caplog.set_level(logging.DEBUG)
    for n in range(3):
        await offices.r.relay.create_packet(
            to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
            mode="proxy_receipt", content={"note": f"第{n}份材料已寄出"},
        )  # fmt: skip
    await offices.deliver()
    outcomes = [p.outcome for p in offices.h.desk.packets(case_id)]
    assert outcomes.count("not-a-case-event") == 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_the_desk_settles_every_packet_it_recorded(offices: Offices) -> None:
    """What the relay keeps unsettled is what admission reads as pending: after a batch
    nothing of it (case and plain packets alike), after a packet that bypassed the case
    layer that packet until ``sync`` applied it."""
    opened = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
        mode="proxy_receipt", content={"note": "材料已寄出"},
    )  # fmt: skip
    await offices.deliver()
    assert len(offices.h.relay.list_inbox(case_id=case_id)) == 2
    assert offices.h.relay.unsettled_inbox() == []

    offices.network.nodes[HANDLING] = offices.h.relay  # no case layer on the way in
    await offices.r.desk.act(case_id, EventKind.COMPLAIN, {"text": "还没受理"})
    await offices.deliver()
    [waiting] = offices.h.relay.unsettled_inbox(case_id=case_id)
    assert [p.packet_id for p in await offices.h.desk.sync()] == [waiting.summary.packet_id]
    assert offices.h.relay.unsettled_inbox() == []


async def test_a_batch_of_one_case_is_judged_in_one_pass(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission takes each case packet of a batch one step from the copy the one before
    it left, instead of walking again every packet of the case before it in the batch."""
    from test_admission import record_batches

    import relay.cases.admission as admission

    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    steps: list[str] = []
    advance = admission.advance

    def counting(old: Any, summary: Any, content: Any, **kw: Any) -> Any:
        steps.append(summary.packet_id)
        return advance(old, summary, content, **kw)

    monkeypatch.setattr(admission, "advance", counting)
    sizes = record_batches(offices, monkeypatch)
    for n in range(8):
        await r.desk.act(case_id, EventKind.COMPLAIN, {"text": f"第{n}次催办"})
    await offices.deliver()
    assert sizes == [8]
    assert len(h.desk.get(case_id).case.view.complaints) == 8
    assert len(steps) == 8  # one step per packet (walking again: 8 + 7 + … + 1 = 36)


async def test_a_live_view_waiting_for_a_case_reads_it_only_when_that_case_changes(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applicants' tracking pages wait for their own case (``CaseDesk.changed``): a change
    of other cases wakes none of them (no read of their copies, however many wait), and
    a change of theirs, from a partner's batch, ends their wait with the new version."""
    import asyncio

    h = offices.h
    watched, other = [
        (
            await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
        ).record.case.header.case_id
        for _ in range(2)
    ]
    await offices.deliver()
    version = h.desk.get(watched).version
    store = h.desk._store
    got = counting_reads(store, monkeypatch)
    waiters = [asyncio.ensure_future(h.desk.changed(watched, version, 30)) for _ in range(20)]
    await asyncio.sleep(0)
    got.clear()
    await h.desk.act(other, EventKind.ACCEPT, {})
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    assert watched not in got  # no waiter read its copy for another case's change
    await offices.r.desk.act(watched, EventKind.WITHDRAW, {"reason": "申请人撤回"})
    await offices.deliver()  # the partner's batch applied on h
    results = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert {r.case.state for r in results} == {CaseState.WITHDRAWN}
    assert h.desk._watchers == {}  # nothing left behind
