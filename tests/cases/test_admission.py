"""Admission (issue 5: no transition outside the state machine is accepted from a
partner): the case layer judges a partner's case packet inside the relay's receive
pipeline, so a forged step gets a signed ``rejected`` receipt
``content-refused:<code>``, is never stored, and the sending office's staff see it as
rejected; the check sees the packets accepted before it, in the same batch and in
earlier batches not yet applied, and agrees with the apply."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from casekit import HANDLING
from casekit_offices import Offices

from relay.cases.model import CaseState, EventKind
from relay.core.model import OutboxState
from relay.core.receipts import ReceiptStatus, verify_receipt

K = EventKind
BOOKS = "publication-retail-licence"


async def submitted_case(offices: Offices) -> str:
    opened = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    await offices.deliver()
    return opened.record.case.header.case_id


async def forge_conclude(offices: Offices, case_id: str, seq: int) -> str:
    """The receiving node claims "concluded" for a case that is only submitted."""
    forged = {
        "format": "tongban-case-event/1", "case": case_id, "event": "conclude",
        "origin": "receiving", "seq": seq, "seen": 0, "at": 1793000000, "details": {},
    }  # fmt: skip
    sent = await offices.r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
        mode="proxy_receipt", content=forged,
    )  # fmt: skip
    return sent.packet_id


def record_batches(offices: Offices, monkeypatch: Any) -> list[int]:
    core = offices.network.nodes[HANDLING]
    inner = core.receive_batch
    sizes: list[int] = []

    async def receive_batch(peer_id: str, packets: Sequence[str]) -> list[str]:
        sizes.append(len(packets))
        return await inner(peer_id, packets)

    monkeypatch.setattr(core, "receive_batch", receive_batch)
    return sizes


async def test_a_forged_step_is_rejected_and_a_legal_one_in_its_batch_accepted(
    offices: Offices, monkeypatch: Any
) -> None:
    r, h = offices.r, offices.h
    other = await submitted_case(offices)
    case_id = await submitted_case(offices)
    batches = record_batches(offices, monkeypatch)
    await r.desk.act(other, K.COMPLAIN, {"text": "两周没有消息"})  # legal
    forged = await forge_conclude(offices, case_id, seq=2)
    await offices.deliver()
    assert batches[0] == 2  # both went in one batch

    outbox = {i.summary.packet_id: i for i in r.relay.list_outbox()}
    [complaint] = [i for p, i in outbox.items() if p != forged and i.summary.action == "complaint"]
    assert complaint.state is OutboxState.DELIVERED
    assert outbox[forged].state is OutboxState.REJECTED
    assert outbox[forged].reason == "content-refused:wrong-state"
    token = outbox[forged].receipt
    assert token is not None
    receipt = verify_receipt(token, offices.pki.bundle, at=offices.clock(), expected_from=HANDLING)
    assert receipt.status is ReceiptStatus.REJECTED
    assert receipt.reason == "content-refused:wrong-state"
    assert receipt.packet_id == forged

    held = {i.summary.packet_id for i in h.relay.list_inbox()}
    assert complaint.summary.packet_id in held
    assert forged not in held
    copy = h.desk.get(case_id).case
    assert copy.state is CaseState.SUBMITTED
    assert [e.kind for e in copy.events] == [K.SUBMIT]
    assert [p.outcome for p in h.desk.packets(case_id)] == ["applied"]  # the submit
    assert [e.kind for e in h.desk.get(other).case.events] == [K.SUBMIT, K.COMPLAIN]


async def test_staff_can_send_a_rejected_step_again_and_it_is_judged_again(
    offices: Offices,
) -> None:
    case_id = await submitted_case(offices)
    forged = await forge_conclude(offices, case_id, seq=2)
    await offices.deliver()
    again = await offices.r.relay.resend(forged)
    await offices.deliver()
    [item] = [i for i in offices.r.relay.list_outbox() if i.summary.packet_id == again.packet_id]
    assert item.state is OutboxState.REJECTED
    assert item.reason == "content-refused:wrong-state"
    assert offices.h.desk.get(case_id).case.state is CaseState.SUBMITTED


@pytest.mark.parametrize("split", [(3,), (1, 1, 1)], ids=["one-batch", "three-batches"])
async def test_a_step_is_judged_after_the_accepted_ones_before_it_not_yet_applied(
    offices: Offices, split: tuple[int, ...]
) -> None:
    r, h = offices.r, offices.h
    case_id = await submitted_case(offices)
    await r.desk.act(case_id, K.COMPLAIN, {"text": "第一次投诉"})  # event 2
    await r.desk.act(case_id, K.COMPLAIN, {"text": "第二次投诉"})  # event 3, needs event 2
    forged = await forge_conclude(offices, case_id, seq=4)
    tokens = [
        r.store.outgoing(i.summary.packet_id).token  # type: ignore[union-attr]
        for i in r.relay.list_outbox(state=OutboxState.QUEUED)
    ]
    assert len(tokens) == 3
    # straight into the bare relay core: nothing is applied in between; the forged
    # step is judged wrong-state (not out-of-order) only if the check counts the
    # complaints accepted before it, in its own batch or in earlier ones
    receipts = []
    for size in split:
        receipts += await h.relay.receive_batch(r.node_id, tokens[:size])
        tokens = tokens[size:]
    verdicts = [
        verify_receipt(x, offices.pki.bundle, at=offices.clock(), expected_from=HANDLING)
        for x in receipts
    ]
    assert [v.status for v in verdicts] == [ReceiptStatus.ACCEPTED] * 2 + [ReceiptStatus.REJECTED]
    assert verdicts[2].reason == "content-refused:wrong-state"
    assert verdicts[2].packet_id == forged
    assert [e.kind for e in h.desk.get(case_id).case.events] == [K.SUBMIT]  # not applied yet
    applied = await h.desk.sync()
    assert [p.outcome for p in applied] == ["applied", "applied"]  # the apply agrees
    assert len(h.desk.get(case_id).case.view.open_complaints) == 2


async def test_a_plain_packet_that_carries_no_case_event_is_still_relayed(
    offices: Offices,
) -> None:
    case_id = await submitted_case(offices)
    sent = await offices.r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
        mode="proxy_receipt", content={"note": "材料原件已寄出"},
    )  # fmt: skip
    await offices.deliver()
    [item] = [i for i in offices.r.relay.list_outbox() if i.summary.packet_id == sent.packet_id]
    assert item.state is OutboxState.DELIVERED
    assert offices.h.desk.get(case_id).case.state is CaseState.SUBMITTED  # moved nothing


async def test_a_plain_packet_is_not_a_warning_in_the_log(
    offices: Offices, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11, finding 5: a plain packet is ordinary traffic, not something an operator
    should look at (it is still logged, at DEBUG)."""
    case_id = await submitted_case(offices)
    caplog.set_level(logging.DEBUG)
    sent = await offices.r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
        mode="proxy_receipt", content={"note": "材料原件已寄出"},
    )  # fmt: skip
    await offices.deliver()
    await offices.h.desk.sync()
    about = [r for r in caplog.records if sent.packet_id in r.getMessage()]
    assert about, "the packet is still mentioned at DEBUG"
    assert [r.getMessage() for r in about if r.levelno >= logging.WARNING] == []
