"""The optional content check (docs/protocol.md §8.5 step 9): the application refuses a
packet for what its opened content says, before anything is stored; the refusal is a
signed ``rejected`` receipt ``content-refused:<code>`` that settles the sender's outbox
entry as rejected; the check sees the packets accepted before it in the same batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    Federation,
    audit_size,
    drain,
    inbox_ids,
)

from relay.core.model import OutboxState
from relay.core.ports import OpenedPacket
from relay.core.receipts import ReceiptStatus, verify_receipt


class Ledger:
    """Accepts ``{"step": n}`` only when n is one past the last accepted step of its
    case (counting the accepted packets of the batch before it), like a state machine."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, tuple[int, ...]]] = []

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        before = tuple(
            e.body["step"] for e in earlier if e.summary.case_id == packet.summary.case_id
        )
        self.seen.append((packet.body["step"], before))
        last = before[-1] if before else 0
        return None if packet.body["step"] == last + 1 else "wrong-step"


async def queue(fed: Federation, steps: Sequence[int], case: str = "case-1") -> list[str]:
    ids = []
    for step in steps:
        summary = await fed.nodes[WUCHANG].create_packet(
            to=DAFENG, case_id=case, matter=MATTER, action=ACTION, mode=MODE,
            content={"step": step},
        )  # fmt: skip
        ids.append(summary.packet_id)
    return ids


async def test_a_packet_the_content_check_refuses_gets_a_signed_rejected_receipt_and_is_not_stored(
    federation: Federation,
) -> None:
    ledger = Ledger()
    federation.nodes[DAFENG].install_content_check(ledger)
    first, wrong = await queue(federation, [1, 5])
    tokens = [federation.stores[WUCHANG].outgoing(p).token for p in (first, wrong)]  # type: ignore[union-attr]
    receipts = await federation.nodes[DAFENG].receive_batch(WUCHANG, tokens)
    ok, refused = (
        verify_receipt(r, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
        for r in receipts
    )
    assert ok.status is ReceiptStatus.ACCEPTED
    assert refused.status is ReceiptStatus.REJECTED
    assert refused.reason == "content-refused:wrong-step"
    assert refused.packet_id == wrong
    assert refused.log_index is None
    assert inbox_ids(federation, DAFENG) == [first]
    assert audit_size(federation, DAFENG) == 2  # packet-received + receipt of the first only
    # the check was told the first packet was accepted before it
    assert ledger.seen == [(1, ()), (5, (1,))]


async def test_the_sender_sees_a_content_refusal_as_rejected_in_its_outbox(
    federation: Federation,
) -> None:
    federation.nodes[DAFENG].install_content_check(Ledger())
    first, wrong = await queue(federation, [1, 3])
    await drain(federation, WUCHANG)
    states = {i.summary.packet_id: i for i in federation.nodes[WUCHANG].list_outbox()}
    assert states[first].state is OutboxState.DELIVERED
    assert states[wrong].state is OutboxState.REJECTED
    assert states[wrong].reason == "content-refused:wrong-step"
    assert federation.nodes[WUCHANG].list_outbox(state=OutboxState.REJECTED) == [states[wrong]]
    assert inbox_ids(federation, DAFENG) == [first]


async def test_a_replayed_packet_gets_its_original_receipt_without_asking_the_check_again(
    federation: Federation,
) -> None:
    ledger = Ledger()
    federation.nodes[DAFENG].install_content_check(ledger)
    [first] = await queue(federation, [1])
    token = federation.stores[WUCHANG].outgoing(first).token  # type: ignore[union-attr]
    [receipt] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    [again] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    assert again == receipt
    assert len(ledger.seen) == 1


async def test_a_node_takes_one_content_check_only(federation: Federation) -> None:
    federation.nodes[DAFENG].install_content_check(Ledger())
    with pytest.raises(RuntimeError):
        federation.nodes[DAFENG].install_content_check(Ledger())


class Saying:
    def __init__(self, code: str) -> None:
        self.code = code

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        return self.code


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("wrong-state", "content-refused:wrong-state"),
        ("Wrong State", "content-refused:refused"),
        ("x" * 65, "content-refused:refused"),
        ("", "content-refused:refused"),
    ],
)
async def test_a_refusal_code_outside_the_documented_alphabet_is_sent_as_refused(
    federation: Federation, code: str, reason: str
) -> None:
    federation.nodes[DAFENG].install_content_check(Saying(code))
    [pid] = await queue(federation, [1])
    token = federation.stores[WUCHANG].outgoing(pid).token  # type: ignore[union-attr]
    [receipt] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    r = verify_receipt(receipt, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
    assert r.reason == reason
