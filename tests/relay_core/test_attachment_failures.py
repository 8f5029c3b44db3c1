"""A packet whose attachment cannot go now waits on its own: the partner's other cases
keep moving, whether the partner answered about that one blob, could not be reached
while it went, or this node lost the blob (then the packet is parked)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    NINGJIN,
    WUCHANG,
    Federation,
    send,
    stage,
)  # fmt: skip

from relay.core.errors import PeerRefused, PeerUnavailable
from relay.core.model import OutboxState
from relay.core.service import RelayNode
from relay.core.store import OutboxUpdate
from relay.http.staff import delivery_alerts


class Through:
    """The sender's link, passing every request on (the classes below change one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        return await self.inner.deliver(peer, packets)

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: Any) -> None:
        await self.inner.upload_attachment(peer, digest, size, open_at)


class FailingBlob(Through):
    """The link, except that uploading blob ``digest`` raises ``fail()`` each time."""

    def __init__(self, inner: Any, digest: str, fail: Callable[[], Exception]) -> None:
        super().__init__(inner)
        self.digest, self.fail, self.uploads = digest, fail, 0

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: Any) -> None:
        if digest == self.digest:
            self.uploads += 1
            raise self.fail()
        await self.inner.upload_attachment(peer, digest, size, open_at)


async def _with_attachment(sender: RelayNode, case_id: str, size: int) -> Any:
    """A packet to DAFENG carrying one attachment of ``size`` random bytes."""
    digest = await stage(sender, os.urandom(size))
    return await sender.create_packet(
        to=DAFENG, case_id=case_id, matter=MATTER, action=ACTION, mode=MODE,
        content={"photos": 1}, attachments=[digest],
    )  # fmt: skip


async def _blocked_case(federation: Federation) -> tuple[RelayNode, str, str, list[str]]:
    """A case whose first packet carries an attachment, and another case of 3 packets."""
    sender = federation.nodes[WUCHANG]
    bad = await _with_attachment(sender, "a-bad", 5000)
    [behind] = await send(federation, WUCHANG, DAFENG, "a-bad", 1)
    others = await send(federation, WUCHANG, DAFENG, "b-good", 3)
    return sender, bad.packet_id, behind, others


def _states(node: RelayNode) -> dict[str, tuple[OutboxState, str | None]]:
    return {i.summary.packet_id: (i.state, i.reason) for i in node.list_outbox()}


@pytest.mark.parametrize(
    "fail",
    [
        lambda: PeerRefused("500 on it", status=500, kind="blob-upload", code="internal-error"),
        lambda: PeerRefused("a proxy's 404", status=404, kind="blob-upload"),
        lambda: PeerUnavailable("connection reset while uploading"),
        lambda: PeerRefused("busy", status=503, kind="blob-upload", code="service-unavailable"),
    ],
    ids=["partner-answered-500", "no-problem-code", "no-answer", "partner-busy"],
)
async def test_one_packets_failing_blob_never_holds_the_partners_other_cases(
    federation: Federation, fail: Callable[[], Exception]
) -> None:
    sender, bad, behind, others = await _blocked_case(federation)
    blob = sender.list_outbox()[0].summary.attachments[0].digest
    link = FailingBlob(sender._sender._link, blob, fail)
    sender._sender._link = link
    for _ in range(6):  # a partner backoff, if any, is over after 300 s
        await sender.deliver_once()
        federation.clock.advance(seconds=300)
    seen = _states(sender)
    assert all(seen[p][0] is OutboxState.DELIVERED for p in others)
    assert seen[bad][0] is OutboxState.QUEUED  # retry-later: it waits, and is tried again
    assert seen[behind][0] is OutboxState.QUEUED  # behind it in its case, never before it
    assert link.uploads >= 2
    inbox = [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()]
    assert inbox == others
    # once the blob goes through, the case follows in order
    sender._sender._link = link.inner
    for _ in range(3):
        await sender.deliver_once()
        federation.clock.advance(seconds=300)
    assert _states(sender)[behind][0] is OutboxState.DELIVERED
    inbox = [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()]
    assert inbox[-2:] == [bad, behind]


async def test_a_blob_this_node_lost_parks_its_packet_with_an_alert(
    federation: Federation,
) -> None:
    sender, bad, behind, others = await _blocked_case(federation)
    blob = sender.list_outbox()[0].summary.attachments[0].digest
    federation.stores[WUCHANG].blob_path(blob).unlink()
    await sender.deliver_once()
    seen = _states(sender)
    assert seen[bad] == (OutboxState.DEAD, "attachment-lost")
    assert seen[behind] == (OutboxState.DEAD, "predecessor-dead")
    assert all(seen[p][0] is OutboxState.DELIVERED for p in others)
    alerts = {a.subject: a for a in delivery_alerts(sender, federation.clock())}
    assert alerts[bad].code == "packet-parked"
    assert "attachment-lost" in alerts[bad].detail


class WrongAddressOnce(Through):
    """The link, except that the first batch meets a web server that is not a tongban
    node (a 404 with no problem code)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.refused = 0

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        if not self.refused:
            self.refused += 1
            raise PeerRefused("404 Not Found", status=404, kind="batch")
        return await self.inner.deliver(peer, packets)


async def test_a_refusal_that_is_not_a_tongban_nodes_is_retried_not_parked(
    federation: Federation,
) -> None:
    sender = federation.nodes[WUCHANG]
    sent = await send(federation, WUCHANG, DAFENG, "c", 3)
    sender._sender._link = WrongAddressOnce(sender._sender._link)
    await sender.deliver_once()
    assert {state for state, _ in _states(sender).values()} <= {
        OutboxState.QUEUED, OutboxState.IN_FLIGHT,
    }  # fmt: skip
    federation.clock.advance(seconds=300)
    await sender.deliver_once()
    federation.clock.advance(seconds=300)
    await sender.deliver_once()
    assert all(_states(sender)[p][0] is OutboxState.DELIVERED for p in sent)


async def test_a_packet_sent_again_twice_is_sent_once(federation: Federation) -> None:
    """A double click, or a request retried after its answer was lost: the second resend
    answers the packet the first one queued; two at once make one packet too."""
    sender = federation.nodes[WUCHANG]
    refused = await send(federation, WUCHANG, DAFENG, "twice", 2)
    federation.stores[WUCHANG].update_outbox(
        [
            OutboxUpdate(refused[0], OutboxState.REJECTED, reason="content-refused:x"),
            OutboxUpdate(refused[1], OutboxState.REJECTED, reason="content-refused:y"),
        ]
    )
    first = await sender.resend(refused[0])
    again = await sender.resend(refused[0])
    assert again.packet_id == first.packet_id
    both = await asyncio.gather(sender.resend(refused[1]), sender.resend(refused[1]))
    assert both[0].packet_id == both[1].packet_id
    queued = [i.summary.packet_id for i in sender.list_outbox() if i.state is OutboxState.QUEUED]
    assert sorted(queued) == sorted([first.packet_id, both[0].packet_id])


async def test_a_blob_complete_but_never_published_is_sent_again_and_the_packet_accepted(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver stops (here: its storage fails) after the last byte of a blob was
    recorded and before the blob was published: its next ``HEAD`` does not call the blob
    complete, so it is sent again, and the packet goes through."""
    sender = federation.nodes[WUCHANG]
    packet = await _with_attachment(sender, "gap", 200_000)
    store = federation.stores[DAFENG]

    def storage_failed(*_: Any, **__: Any) -> None:
        raise OSError(5, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(store, "publish_blob", storage_failed)
        with pytest.raises(OSError, match="I/O error"):  # in-process: the receiver's fault
            await sender.deliver_once()
    federation.start(DAFENG)  # the receiver again, on its files
    blob = packet.attachments[0]
    assert federation.nodes[DAFENG].blob_offset(blob.digest) == 0
    for _ in range(4):
        await sender.deliver_once()
        federation.clock.advance(seconds=300)
    assert _states(sender)[packet.packet_id][0] is OutboxState.DELIVERED


async def test_a_blob_the_partner_says_it_lacks_is_asked_about_again(
    federation: Federation,
) -> None:
    """The sender noted a blob as uploaded that the partner does not hold (restored from
    an older backup, say): the ``attachment-missing`` receipt makes it ask again."""
    sender = federation.nodes[WUCHANG]
    packet = await _with_attachment(sender, "lacks", 20_000)
    blob = packet.attachments[0].digest
    federation.stores[WUCHANG].mark_uploaded(DAFENG, blob)
    await sender.deliver_once()
    assert _states(sender)[packet.packet_id] == (OutboxState.QUEUED, "attachment-missing")
    assert not federation.stores[WUCHANG].uploaded(DAFENG, blob)
    federation.clock.advance(seconds=300)
    await sender.deliver_once()
    assert _states(sender)[packet.packet_id][0] is OutboxState.DELIVERED


class SlowBlob(Through):
    """The link, except that uploading blob ``digest`` waits until ``go`` is set (a
    large attachment on a slow line)."""

    def __init__(self, inner: Any, digest: str) -> None:
        super().__init__(inner)
        self.digest, self.go, self.started = digest, asyncio.Event(), asyncio.Event()

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: Any) -> None:
        if digest == self.digest:
            self.started.set()
            await self.go.wait()
        await self.inner.upload_attachment(peer, digest, size, open_at)


async def test_a_long_upload_to_one_partner_holds_no_other_partner(
    federation: Federation,
) -> None:
    """The running outbox: while a packet's attachment is still going to DAFENG, a
    packet queued for NINGJIN goes at once, and so does a packet of another case to
    DAFENG once the long one's lane ends."""
    sender = federation.nodes[WUCHANG]
    big = await _with_attachment(sender, "big", 5000)
    link = SlowBlob(sender._sender._link, big.attachments[0].digest)
    sender._sender._link = link
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run_outbox(stop))
    try:
        async with asyncio.timeout(10):
            await link.started.wait()
            [quick] = await send(federation, WUCHANG, NINGJIN, "quick")
            while _states(sender)[quick][0] is not OutboxState.DELIVERED:
                await asyncio.sleep(0.01)
        assert _states(sender)[big.packet_id][0] is OutboxState.QUEUED  # still uploading
        link.go.set()
        async with asyncio.timeout(10):
            while _states(sender)[big.packet_id][0] is not OutboxState.DELIVERED:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        link.go.set()  # a pass waiting for the upload ends too
        await task


class BusyOnce(Through):
    """The link, except that the first batch is answered 503 with ``Retry-After``."""

    def __init__(self, inner: Any, seconds: float) -> None:
        super().__init__(inner)
        self.seconds, self.refused = seconds, 0

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        if not self.refused:
            self.refused += 1
            raise PeerRefused(
                "busy", status=503, kind="batch", code="service-unavailable",
                retry_after=self.seconds,
            )  # fmt: skip
        return await self.inner.deliver(peer, packets)


async def test_a_partner_that_says_when_to_come_back_is_not_asked_before(
    federation: Federation,
) -> None:
    sender = federation.nodes[WUCHANG]
    [packet] = await send(federation, WUCHANG, DAFENG, "busy")
    sender._sender._link = BusyOnce(sender._sender._link, 120)
    await sender.deliver_once()
    backoff = federation.stores[WUCHANG].peer_backoffs()[DAFENG]
    assert backoff.next_attempt_at is not None
    assert backoff.next_attempt_at >= federation.clock() + timedelta(seconds=120)
    federation.clock.advance(seconds=119)
    await sender.deliver_once()
    assert _states(sender)[packet][0] is not OutboxState.DELIVERED  # not asked before
    federation.clock.advance(seconds=2)
    await sender.deliver_once()
    assert _states(sender)[packet][0] is OutboxState.DELIVERED


async def test_a_partner_that_says_to_come_back_in_a_thousand_years_is_asked_within_max_delay(
    federation: Federation,
) -> None:
    """``Retry-After: 99999999999999999999`` once made a timedelta too large to exist:
    the error ended the running outbox for every partner."""
    sender = federation.nodes[WUCHANG]
    [packet] = await send(federation, WUCHANG, DAFENG, "far")
    sender._sender._link = BusyOnce(sender._sender._link, 10**20)
    await sender.deliver_once()
    backoff = federation.stores[WUCHANG].peer_backoffs()[DAFENG]
    assert backoff.next_attempt_at is not None
    assert backoff.next_attempt_at <= federation.clock() + federation.policy.max_delay
    federation.clock.advance(seconds=federation.policy.max_delay.total_seconds() + 1)
    await sender.deliver_once()
    assert _states(sender)[packet][0] is OutboxState.DELIVERED


class TwoAtOnce(Through):
    """A partner that takes two requests of ours at once and answers 429 to a third."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.now, self.refused = 0, 0

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        if self.now >= 2:
            self.refused += 1
            raise PeerRefused("busy", status=429, kind="batch", code="too-many-requests")
        self.now += 1
        try:
            await asyncio.sleep(0.01)  # the lanes overlap at the partner
            return await self.inner.deliver(peer, packets)
        finally:
            self.now -= 1


async def test_a_partner_that_takes_fewer_requests_at_once_gets_fewer_lanes(
    federation: Federation,
) -> None:
    """Its 429s take lanes away until it takes every batch: the backlog drains, and
    later passes meet no more 429s (before, every pass after a probe opened all four
    lanes again)."""
    sender = federation.nodes[WUCHANG]
    sender._policy = dataclasses.replace(sender._policy, batch_size=2)
    sender._sender.set_policy(sender._policy)
    for case in range(12):
        await send(federation, WUCHANG, DAFENG, f"lane-{case}", 4)
    link = TwoAtOnce(sender._sender._link)
    sender._sender._link = link
    for _ in range(40):
        await sender._sender.deliver_once(refill=True)
        federation.clock.advance(seconds=300)
        if all(state is OutboxState.DELIVERED for state, _ in _states(sender).values()):
            break
    assert all(state is OutboxState.DELIVERED for state, _ in _states(sender).values())
    assert link.refused <= 3  # learned at once, not met again pass after pass
    assert sender._sender._lanes_for(DAFENG) <= 2


class AnswerLost(Through):
    """The partner takes the first batch, but its answer is lost; then it is away until
    ``back`` is set."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.lost, self.back = False, False

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        if self.lost and not self.back:
            raise PeerUnavailable("away")
        receipts = await self.inner.deliver(peer, packets)
        if not self.lost:
            self.lost = True
            raise PeerUnavailable("the answer was lost (a timeout)")
        return receipts


async def test_a_packet_the_partner_may_hold_is_not_expired_before_it_answers(
    federation: Federation,
) -> None:
    """Its answer lost, the partner away past the packet's expiry: taken for dead, the
    packet's sequence number went to the case's next packet, which the partner, holding
    the first, refused as out of order, and every later one after it. Now the packet
    stays in flight until the partner answers its second sending (here: its original
    receipt), and the case goes on in order."""
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    first = await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE,
        content={"step": 1}, expires_in=timedelta(hours=2),
    )  # fmt: skip
    link = AnswerLost(sender._sender._link)
    sender._sender._link = link
    await sender.deliver_once()
    assert [i.summary.packet_id for i in receiver.list_inbox()] == [first.packet_id]
    federation.clock.advance(hours=3, seconds=10)  # past its expiry and the grace
    await sender.deliver_once()
    assert _states(sender)[first.packet_id][0] is OutboxState.IN_FLIGHT  # not dead
    [second] = await send(federation, WUCHANG, DAFENG, "c", 1)
    link.back = True
    for _ in range(4):
        await sender.deliver_once()
        federation.clock.advance(seconds=300)
    seen = _states(sender)
    assert seen[first.packet_id][0] is OutboxState.DELIVERED  # the original receipt
    assert seen[second][0] is OutboxState.DELIVERED
    assert [i.summary.packet_id for i in receiver.list_inbox()] == [first.packet_id, second]
