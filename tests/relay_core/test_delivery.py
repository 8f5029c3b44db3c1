"""End-to-end delivery between RelayNodes over the FakeNetwork, on real SQLite files."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    NINGJIN,
    WUCHANG,
    Federation,
    drain,
    send,
)

from relay.audit.leaves import AuditLeaf, LeafKind, decode_leaf
from relay.audit.store import AuditStore
from relay.core.errors import NotAuthorized, UnknownNode
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy
from relay.core.receipts import ReceiptStatus, verify_receipt


async def test_a_packet_is_delivered_receipted_and_readable(federation: Federation) -> None:
    [pid] = await send(federation, WUCHANG, DAFENG, "case-1")
    assert await federation.nodes[WUCHANG].deliver_once() == 1
    [item] = federation.nodes[WUCHANG].list_outbox()
    assert item.state is OutboxState.DELIVERED
    receipt = verify_receipt(
        item.receipt or "", federation.pki.bundle, at=federation.clock(), expected_from=DAFENG
    )
    assert receipt.status is ReceiptStatus.ACCEPTED
    assert receipt.packet_digest == item.summary.digest
    assert receipt.log_index == 0
    assert receipt.log_size == 1
    [inbox] = federation.nodes[DAFENG].list_inbox()
    assert inbox.summary.packet_id == pid
    assert inbox.receipt == item.receipt
    opened = federation.nodes[DAFENG].read_packet(pid)
    assert opened.content == {"step": 0, "applicant": "张三"}
    assert federation.nodes[WUCHANG].read_packet(pid).content == opened.content
    # both audit logs record the packet and the receipt, naming the same digests
    received = audit_leaves(federation, DAFENG)
    assert [leaf.kind for leaf in received] == [LeafKind.PACKET_RECEIVED, LeafKind.RECEIPT]
    assert received[0].body.digest == item.summary.digest  # type: ignore[union-attr]
    assert received[1].body.log_index == 0  # type: ignore[union-attr]
    sent = audit_leaves(federation, WUCHANG)
    assert [leaf.kind for leaf in sent] == [LeafKind.PACKET_SENT, LeafKind.RECEIPT]
    assert sent[1].body.direction == "received"  # type: ignore[union-attr]
    assert sent[1].body.digest == received[1].body.digest  # type: ignore[union-attr]


def audit_leaves(fed: Federation, node: str) -> list[AuditLeaf]:
    store = AuditStore(fed.stores[node].connection)
    return [decode_leaf(store.leaf(i)) for i in range(store.size())]


async def test_lossy_slow_links_deliver_every_packet_exactly_once_in_case_order(
    federation: Federation,
) -> None:
    net = federation.network
    net.loss, net.reply_loss, net.rng = 0.3, 0.3, random.Random(11)
    sent: dict[tuple[str, str], list[str]] = defaultdict(list)
    for case in ("case-a", "case-b", "case-c"):
        for sender, to in ((WUCHANG, DAFENG), (NINGJIN, DAFENG), (WUCHANG, NINGJIN)):
            sent[(to, case)] += await send(federation, sender, to, case, n=5)
    await drain(federation, WUCHANG, NINGJIN)
    for to in (DAFENG, NINGJIN):
        inbox = federation.nodes[to].list_inbox()
        ids = [i.summary.packet_id for i in inbox]
        assert len(ids) == len(set(ids))
        for case in ("case-a", "case-b", "case-c"):
            by_sender: dict[str, list[int]] = defaultdict(list)
            for i in inbox:
                if i.summary.case_id == case:
                    by_sender[i.summary.sender].append(i.summary.seq)
            for seqs in by_sender.values():
                assert seqs == [1, 2, 3, 4, 5]
            assert {i.summary.packet_id for i in inbox if i.summary.case_id == case} == set(
                sent[(to, case)]
            )
    for sender in (WUCHANG, NINGJIN):
        for item in federation.nodes[sender].list_outbox():
            assert item.state is OutboxState.DELIVERED
            verify_receipt(
                item.receipt or "",
                federation.pki.bundle,
                at=federation.clock(),
                expected_from=item.summary.receiver,
            )


async def test_the_outbox_task_sends_new_packets_and_stops_when_told(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]
    stop = asyncio.Event()
    task = asyncio.create_task(node.run_outbox(stop))
    await asyncio.sleep(0)  # the task is now idle, waiting (30 s idle poll)
    ids = await send(federation, WUCHANG, DAFENG, "case-t", n=1)
    ids += await send(federation, WUCHANG, NINGJIN, "case-t", n=1)
    # The new packets wake the task: both arrive well before its 30 s idle poll would.
    async with asyncio.timeout(20):
        while not all(i.state is OutboxState.DELIVERED for i in node.list_outbox()):
            await asyncio.sleep(0.01)
    assert [i.state for i in node.list_outbox()] == [OutboxState.DELIVERED] * 2
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert task.done()


async def test_own_copies_are_sealed_at_rest_and_older_hpke_copies_still_open(
    federation: Federation,
) -> None:
    """The sender's own copy is sealed with a key derived from its HPKE private key
    (signing.at_rest, issue 12: a second KEM encapsulation per packet cost a tenth of
    the node's CPU); copies HPKE-sealed to its own key before still read."""
    from signing.encoding import b64url
    from signing.hpke import hpke_seal, seal_info

    node = federation.nodes[WUCHANG]
    [new, old] = await send(federation, WUCHANG, DAFENG, "copies", n=2)
    own = federation.pki.keys[WUCHANG].hpke_keys[0]
    stored = federation.stores[WUCHANG].outgoing(new)
    assert stored is not None
    assert stored.own_copy.startswith(f"r1.{own.public_key().kid}.")
    assert node.read_packet(new).content == {"step": 0, "applicant": "张三"}
    inner = node.read_packet(old).content_jws
    info = seal_info("packet-copy", {"id": old})
    hpke_copy = (
        f"{own.public_key().kid}.{b64url(hpke_seal(inner.encode(), own.public_key(), info=info))}"
    )
    federation.stores[WUCHANG].connection.execute(  # autocommit, on either backend
        "UPDATE outbox_bodies SET own_copy = ?"
        " WHERE ord = (SELECT ord FROM outbox WHERE packet_id = ?)",
        (hpke_copy, old),
    )
    assert node.read_packet(old).content == {"step": 1, "applicant": "张三"}
    assert node.read_packet(old).content_jws == inner


async def test_a_clock_stepped_past_the_planned_pass_still_lets_a_new_packet_wake_the_outbox(
    federation: Federation,
) -> None:
    """The outbox sleeps on a timer, but plans its pass as a reading of the clock: after
    the clock stepped past that reading, a queued packet counted as going "after the
    planned pass" and waited out the whole sleep (30 s in a federation test)."""
    node = federation.nodes[WUCHANG]
    hour = timedelta(hours=1)
    node.set_outbox_policy(
        OutboxPolicy(batch_size=16, base_delay=hour, max_delay=2 * hour, idle_poll=hour)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(node.run_outbox(stop))
    async with asyncio.timeout(20):
        while node.next_outbox_pass is None:  # asleep for an hour
            await asyncio.sleep(0.01)
    federation.clock.advance(hours=2)
    [packet] = await send(federation, WUCHANG, NINGJIN, "after-the-step")
    async with asyncio.timeout(20):
        while node.list_outbox(peer=NINGJIN)[0].state is not OutboxState.DELIVERED:
            await asyncio.sleep(0.01)
    assert [i.summary.packet_id for i in node.list_outbox(peer=NINGJIN)] == [packet]
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_a_packet_for_a_partner_in_backoff_does_not_wake_the_outbox(
    federation: Federation,
) -> None:
    """A wake that can send nothing (the destination waits out a backoff past the
    planned pass) cost a whole outbox pass per created group while a partner was down
    (issue 12); a packet for a reachable partner still wakes it at once."""
    node = federation.nodes[WUCHANG]
    long = timedelta(days=1000)  # full jitter: a backoff surely longer than the run
    node.set_outbox_policy(
        OutboxPolicy(batch_size=16, base_delay=long, max_delay=2 * long, idle_poll=long)
    )
    federation.network.down.add(DAFENG)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run_outbox(stop))

    async def settled(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not (
                done()
                and node.next_outbox_pass is not None
                and not any(node._sender.serving(p) for p in (DAFENG, NINGJIN))
            ):
                await asyncio.sleep(0.01)

    await send(federation, WUCHANG, DAFENG, "case-down")  # fails: DAFENG now in backoff
    await settled(lambda: DAFENG in node.unreachable_partners())
    passes = node.outbox_passes
    down = await send(federation, WUCHANG, DAFENG, "case-down-2", n=5)
    [up] = await send(federation, WUCHANG, NINGJIN, "case-up")
    await settled(lambda: node.list_outbox(peer=NINGJIN)[0].state is OutboxState.DELIVERED)
    # the packet for NINGJIN's, and the one its partner's task asks for as it ends (to
    # plan the next); none for DAFENG's
    assert node.outbox_passes == passes + 2
    assert [i.summary.packet_id for i in node.list_outbox(peer=NINGJIN)] == [up]
    queued = {i.summary.packet_id for i in node.list_outbox(state=OutboxState.QUEUED)}
    assert set(down) <= queued
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_a_packets_further_leaves_are_logged_when_it_is_queued_and_never_if_refused(
    federation: Federation,
) -> None:
    """``create_packet(audit=...)``: the leaves follow the packet's ``packet-sent`` leaf
    in the transaction that queues it (a survey report is logged as sent so); a packet
    the relay refuses queues nothing and logs none of them."""
    node = federation.nodes[WUCHANG]
    log = AuditStore(federation.stores[WUCHANG].connection)
    made = dict(to=DAFENG, matter=MATTER, action=ACTION, mode=MODE, content={"c": 1})
    await node.create_packet(case_id="logged", audit=[b"first", b"second"], **made)
    assert [log.leaf(1), log.leaf(2)] == [b"first", b"second"]
    assert decode_leaf(log.leaf(0)).kind is LeafKind.PACKET_SENT

    with pytest.raises(NotAuthorized):
        await node.create_packet(case_id="refused", audit=[b"never"], **{**made, "matter": "x"})
    with pytest.raises(UnknownNode):
        await node.create_packet(case_id="refused", audit=[b"never"], **{**made, "to": "999999"})
    assert log.size() == 3
    assert [i.summary.case_id for i in node.list_outbox()] == ["logged"]
