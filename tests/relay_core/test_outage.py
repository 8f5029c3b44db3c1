"""Outages, crashes, expiry and final rejections: nothing lost, nothing duplicated."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from relay_core_support import ACTION, DAFENG, NINGJIN, WUCHANG, Federation, drain, inbox_ids, send

from relay.core.errors import NotAuthorized
from relay.core.model import OutboxState
from relay.core.outbox import PeerBackoff
from relay.core.packets import peek_facts


async def test_a_partner_that_was_down_gets_everything_in_order_once_back(
    federation: Federation,
) -> None:
    federation.network.down.add(DAFENG)
    sent = await send(federation, WUCHANG, DAFENG, "case-a", n=6)
    sent += await send(federation, WUCHANG, DAFENG, "case-b", n=6)
    waits = []
    for _ in range(12):
        await federation.nodes[WUCHANG].deliver_once()
        backoff = federation.stores[WUCHANG].peer_backoffs()[DAFENG]
        assert backoff.next_attempt_at is not None
        waits.append(backoff.next_attempt_at - federation.clock())
        federation.clock.advance(minutes=5)
    assert all(w <= federation.policy.max_delay for w in waits)
    assert federation.stores[WUCHANG].peer_backoffs()[DAFENG].failures == 12
    assert inbox_ids(federation, DAFENG) == []
    federation.network.down.clear()
    await drain(federation, WUCHANG)
    inbox = federation.nodes[DAFENG].list_inbox()
    assert sorted(inbox_ids(federation, DAFENG)) == sorted(sent)
    for case in ("case-a", "case-b"):
        assert [i.summary.seq for i in inbox if i.summary.case_id == case] == [1, 2, 3, 4, 5, 6]
    assert DAFENG not in federation.stores[WUCHANG].peer_backoffs()  # backoff cleared


async def test_a_case_travels_in_sequence_several_packets_a_request_never_in_two_at_once(
    federation: Federation,
) -> None:
    batches: list[Sequence[str]] = []
    flying: set[str] = set()  # cases in a request not yet answered
    overlapped: list[set[str]] = []  # cases of requests that were in flight together
    link = federation.nodes[WUCHANG]._sender._link
    original = link.deliver

    async def spy(peer: str, packets: Sequence[str]) -> list[str]:
        cases = {peek_facts(t)["case"] for t in packets}  # type: ignore[index]
        assert not cases & flying, "a case is in two requests at once"
        if flying:
            overlapped.append(set(flying))
        batches.append(packets)
        flying.update(cases)
        try:
            return await original(peer, packets)
        finally:
            flying.difference_update(cases)

    link.deliver = spy  # type: ignore[method-assign]
    federation.network.delay = 0.001  # requests overlap as they do over a network
    for case in range(20):
        await send(federation, WUCHANG, DAFENG, f"case-{case}", n=3)
    await drain(federation, WUCHANG)
    assert len(federation.nodes[DAFENG].list_inbox()) == 60
    seen: set[tuple[str, int]] = set()
    for batch in batches:
        assert len(batch) <= federation.policy.batch_size
        for token in batch:
            facts = peek_facts(token)
            assert facts is not None
            if facts["seq"] > 1:
                assert (facts["case"], facts["seq"] - 1) in seen  # k sent before k+1
            seen.add((facts["case"], facts["seq"]))
    # 60 packets in 16-packet requests: four at once in the first pass (the cases cut
    # at a request's end wait for it), then the rest of the three cut cases
    assert len(batches) == 5
    assert overlapped
    inbox = federation.nodes[DAFENG].list_inbox()
    for case in range(20):
        assert [i.summary.seq for i in inbox if i.summary.case_id == f"case-{case}"] == [1, 2, 3]


async def test_a_crash_between_persist_and_receipt_loses_and_duplicates_nothing(
    federation: Federation,
) -> None:
    sent = await send(federation, WUCHANG, DAFENG, "case-a", n=3)
    federation.network.reply_loss = 1.0  # receiver commits, the answer never arrives
    await federation.nodes[WUCHANG].deliver_once()
    assert inbox_ids(federation, DAFENG) == sent  # the case's three went in one request
    originals = [i.receipt for i in federation.nodes[DAFENG].list_inbox()]
    outbox = federation.nodes[WUCHANG].list_outbox()
    assert [i.state for i in outbox] == [OutboxState.IN_FLIGHT] * 3
    # both nodes die and come back on their SQLite files
    federation.start(DAFENG)
    federation.start(WUCHANG)
    federation.network.reply_loss = 0.0
    await drain(federation, WUCHANG)
    assert inbox_ids(federation, DAFENG) == sent
    outbox = federation.nodes[WUCHANG].list_outbox()
    assert [i.state for i in outbox] == [OutboxState.DELIVERED] * 3
    assert [i.receipt for i in outbox] == originals  # the duplicates got the originals


async def test_expired_packets_and_their_successors_become_dead_letters(
    federation: Federation,
) -> None:
    federation.network.down.add(DAFENG)
    node = federation.nodes[WUCHANG]
    first = await node.create_packet(
        to=DAFENG, case_id="c", matter="food-business-licence", action=ACTION,
        mode="proxy_receipt", content={}, expires_in=timedelta(minutes=10),
    )  # fmt: skip
    [later] = await send(federation, WUCHANG, DAFENG, "c")
    [other_case] = await send(federation, WUCHANG, DAFENG, "d")
    await node.deliver_once()
    federation.clock.advance(minutes=11)
    federation.network.down.clear()
    # the first pass after the outage probes with the oldest head: the expired packet
    # (refused, its successor dead with it); the next pass sends the other case
    assert await node.deliver_once() == 2
    assert await node.deliver_once() == 1
    dead = {i.summary.packet_id: i.reason for i in node.list_outbox(state=OutboxState.DEAD)}
    assert dead == {first.packet_id: "expired", later: "predecessor-dead"}
    assert inbox_ids(federation, DAFENG) == [other_case]


async def test_a_final_rejection_is_kept_and_blocks_the_rest_of_the_case(
    federation: Federation,
) -> None:
    ids = await send(federation, WUCHANG, NINGJIN, "case-x", n=3)
    federation.agreement.denied_actions.add(ACTION)
    await drain(federation, WUCHANG)
    items = {i.summary.packet_id: i for i in federation.nodes[WUCHANG].list_outbox()}
    assert items[ids[0]].state is OutboxState.REJECTED
    assert items[ids[0]].reason == "agreement-denied:action-not-granted"
    assert items[ids[0]].receipt is not None
    assert [items[i].state for i in ids[1:]] == [OutboxState.DEAD, OutboxState.DEAD]
    assert inbox_ids(federation, NINGJIN) == []


async def test_a_case_continues_after_a_dead_letter(federation: Federation) -> None:
    node = federation.nodes[WUCHANG]
    [first] = await send(federation, WUCHANG, DAFENG, "c")
    await node.deliver_once()
    federation.network.down.add(DAFENG)
    dead = await node.create_packet(
        to=DAFENG, case_id="c", matter="food-business-licence", action=ACTION,
        mode="proxy_receipt", content={}, expires_in=timedelta(minutes=10),
    )  # fmt: skip
    federation.clock.advance(minutes=11)
    await node.deliver_once()  # past expiry, but the partner could not answer yet
    assert node.list_outbox()[1].state is not OutboxState.DEAD
    federation.clock.advance(minutes=60)  # unreachable through the grace: given up
    await node.deliver_once()
    assert [i.state for i in node.list_outbox()] == [OutboxState.DELIVERED, OutboxState.DEAD]
    federation.network.down.clear()
    [again] = await send(federation, WUCHANG, DAFENG, "c")  # staff send the step anew
    await drain(federation, WUCHANG)
    inbox = federation.nodes[DAFENG].list_inbox()
    assert [(i.summary.packet_id, i.summary.seq) for i in inbox] == [(first, 1), (again, 2)]
    assert dead.seq == 2


async def test_an_expired_packet_the_partner_did_accept_ends_delivered_not_dead(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]
    summary = await node.create_packet(
        to=DAFENG, case_id="c", matter="food-business-licence", action=ACTION,
        mode="proxy_receipt", content={}, expires_in=timedelta(minutes=10),
    )  # fmt: skip
    federation.network.reply_loss = 1.0  # accepted there, the answer lost
    await node.deliver_once()
    assert inbox_ids(federation, DAFENG) == [summary.packet_id]
    federation.network.reply_loss = 0.0
    federation.clock.advance(minutes=11)  # now expired
    await node.deliver_once()
    [item] = node.list_outbox()
    assert item.state is OutboxState.DELIVERED  # its last chance brought the original receipt
    assert item.receipt == federation.nodes[DAFENG].list_inbox()[0].receipt


async def test_staff_resend_a_dead_letter_as_a_new_packet_that_arrives(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]
    federation.network.down.add(DAFENG)
    dead = await node.create_packet(
        to=DAFENG, case_id="c", matter="food-business-licence", action=ACTION,
        mode="proxy_receipt", content={"form": "申请书"}, expires_in=timedelta(minutes=10),
    )  # fmt: skip
    with pytest.raises(NotAuthorized):
        await node.resend(dead.packet_id)  # still queued: nothing to act on yet
    federation.clock.advance(minutes=71)
    await node.deliver_once()
    federation.network.down.clear()
    again = await node.resend(dead.packet_id)
    assert again.packet_id != dead.packet_id
    assert again.seq == 1  # the case continues from its last live packet
    await drain(federation, WUCHANG)
    [item] = federation.nodes[DAFENG].list_inbox()
    assert item.summary.packet_id == again.packet_id
    assert federation.nodes[DAFENG].read_packet(again.packet_id).content == {"form": "申请书"}


async def test_the_outbox_lists_one_case_without_the_others(federation: Federation) -> None:
    """A case page reads its own packets through an index, not the whole outbox."""
    federation.network.down.add(DAFENG)
    a = await send(federation, WUCHANG, DAFENG, "case-a", n=3)
    await send(federation, WUCHANG, DAFENG, "case-b", n=2)
    node = federation.nodes[WUCHANG]
    assert [i.summary.packet_id for i in node.list_outbox(case_id="case-a")] == a
    assert node.list_outbox(case_id="case-c") == []
    assert len(node.list_outbox()) == 5


async def test_a_failing_partner_is_probed_with_one_packet_until_it_answers(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]

    def attempts() -> int:
        return sum(i.attempts for i in node.list_outbox())

    federation.network.down.add(DAFENG)
    for case in ("p-1", "p-2", "p-3"):
        await send(federation, WUCHANG, DAFENG, case, n=4)
    await node.deliver_once()  # not known to fail yet: every batch is tried
    assert attempts() == 12
    for tried in range(1, 4):  # backing off: each attempt is one packet
        federation.clock.advance(minutes=5)
        await node.deliver_once()
        assert attempts() == 12 + tried
    federation.network.down.clear()
    federation.clock.advance(minutes=5)
    assert await node.deliver_once() == 1  # the probe gets through, the backoff ends
    assert DAFENG not in federation.stores[WUCHANG].peer_backoffs()
    assert await node.deliver_once() == 11  # then full batches again


async def test_a_partner_that_reaches_us_is_retried_at_once_not_at_the_end_of_its_backoff(
    federation: Federation,
) -> None:
    """After an outage the backoff may be minutes long; a request from the partner
    (it is back) makes the next attempt due now — a one-packet probe, the failures kept
    — and wakes the outbox. At most once per base delay; a partner not in backoff
    costs nothing."""
    sender, store = federation.nodes[WUCHANG], federation.stores[WUCHANG]
    federation.network.down.add(DAFENG)
    sent = await send(federation, WUCHANG, DAFENG, "case-back", n=3)
    for _ in range(6):
        federation.clock.advance(minutes=5)  # past any backoff so far
        await sender.deliver_once()  # fails: the next backoff starts now
    failures = store.peer_backoffs()[DAFENG].failures
    assert failures == 6
    # the jitter may draw a short wait: the backoff as a long one would stand
    before = PeerBackoff(failures, federation.clock() + timedelta(minutes=4))
    store.set_peer_backoff(DAFENG, before)
    federation.network.down.clear()
    sender._wake.clear()
    sender.partner_reachable(DAFENG)
    after = store.peer_backoffs()[DAFENG]
    assert after.next_attempt_at == federation.clock()
    assert after.failures == before.failures  # the next attempt is the probe
    assert sender._wake.is_set()
    # a second request within the base delay does not cut again
    store.set_peer_backoff(DAFENG, before)
    sender._wake.clear()
    sender.partner_reachable(DAFENG)
    assert store.peer_backoffs()[DAFENG] == before
    assert not sender._wake.is_set()
    federation.clock.advance(seconds=federation.policy.base_delay.total_seconds())
    sender.partner_reachable(DAFENG)
    assert store.peer_backoffs()[DAFENG].next_attempt_at == federation.clock()
    await sender.deliver_once()  # the probe: one packet, then the rest at once
    await sender.deliver_once()
    assert sorted(inbox_ids(federation, DAFENG)) == sorted(sent)
    assert DAFENG not in store.peer_backoffs()
    sender._wake.clear()
    sender.partner_reachable(DAFENG)  # no backoff: nothing to do
    assert not sender._wake.is_set()
    sender.partner_reachable(NINGJIN)  # never in backoff
    assert not sender._wake.is_set()
