"""Answers nobody foresaw, refusals at the door, a bad receipt: delivery never wedges.

A partner's answer decides a packet's state: a refusal given before any packet was taken
leaves a packet as it was (queued, so it expires as any queued one); an answer that may
follow a commit, or no useful answer, leaves it in flight (the partner may hold it). An
error no check foresaw is that partner's failure, never the end of the outbox.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from relay_core_support import DAFENG, NINGJIN, WUCHANG, Federation, send

from relay.core.errors import MalformedPacket, PeerRefused, PeerUnavailable, PeerUnreachable
from relay.core.fields import parse_time
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy, backoff_delay
from relay.core.receipts import Receipt
from relay.http.staff import delivery_alerts


class Through:
    """The sender's link, passing every request on unless ``fail`` says otherwise."""

    def __init__(self, inner: Any, fail: Any = None, peer: str = DAFENG) -> None:
        self.inner, self.fail, self.peer, self.calls = inner, fail, peer, 0

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        if peer == self.peer and self.fail is not None:
            self.calls += 1
            raise self.fail()
        return await self.inner.deliver(peer, packets)

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: Any) -> None:
        await self.inner.upload_attachment(peer, digest, size, open_at)


def _state(fed: Federation, packet_id: str) -> tuple[OutboxState, str | None]:
    [item] = [i for i in fed.nodes[WUCHANG].list_outbox() if i.summary.packet_id == packet_id]
    return item.state, item.reason


async def _passes(fed: Federation, hours: float) -> None:
    for _ in range(int(hours * 12)):  # a pass every five minutes (the largest backoff)
        await fed.nodes[WUCHANG].deliver_once()
        fed.clock.advance(minutes=5)


@pytest.mark.parametrize(
    "refusal",
    [
        lambda: PeerRefused("not a partner", status=403, code="peer-not-partner"),
        lambda: PeerRefused("who are you", status=401),
        lambda: PeerRefused("slow down", status=429, code="too-many-requests"),
        lambda: PeerRefused("no such route", status=404, code="not-found"),
    ],
    ids=["403", "401", "429", "404"],
)
async def test_a_packet_only_ever_refused_at_the_door_expires_with_an_alert(
    federation: Federation, refusal: Any
) -> None:
    """These answers came before the partner took any packet, yet left the packets in
    flight, which never expire: retried for ever, their case blocked, no dead letter."""
    sender = federation.nodes[WUCHANG]
    link = Through(sender._sender._link, refusal)
    sender._sender._link = link
    [p1, p2] = await send(federation, WUCHANG, DAFENG, "door", 2)
    await _passes(federation, 1)  # refused at every try for an hour
    assert link.calls >= 2
    assert _state(federation, p1)[0] is OutboxState.QUEUED
    federation.clock.advance(days=8)  # past the default lifetime and its grace
    await _passes(federation, 1)
    assert _state(federation, p1) == (OutboxState.DEAD, "expired")
    assert _state(federation, p2)[0] is OutboxState.DEAD
    assert p1 in [i.summary.packet_id for i in sender.parked_packets()]  # its alert
    assert federation.nodes[DAFENG].list_inbox() == []


async def test_a_packet_sent_unanswered_stays_in_flight_whatever_the_next_answer(
    federation: Federation,
) -> None:
    """Its first sending went out and got no answer: the partner may hold it, so a later
    refusal at the door does not make it expire (its number would go to the next)."""
    sender = federation.nodes[WUCHANG]
    [p1] = await send(federation, WUCHANG, DAFENG, "held")
    link = Through(sender._sender._link, lambda: PeerUnavailable("reset after sending"))
    sender._sender._link = link
    await sender.deliver_once()
    assert _state(federation, p1)[0] is OutboxState.IN_FLIGHT
    link.fail = lambda: PeerRefused("not a partner", status=403, code="peer-not-partner")
    assert not _unconfirmed(federation)
    federation.clock.advance(days=8)
    await _passes(federation, 1)
    assert _state(federation, p1)[0] is OutboxState.IN_FLIGHT
    # never given up on silently: staff see it, and are told to ask the partner
    [alert] = _unconfirmed(federation)
    assert (alert.subject, alert.extra["peer"], alert.severity) == (p1, DAFENG, "critical")
    assert "对方始终未确认" in alert.title_zh
    link.fail = None  # the partner answers: the packet settles, the alert goes
    await _passes(federation, 0.5)
    assert _state(federation, p1)[0] in (OutboxState.DELIVERED, OutboxState.DEAD)
    assert not _unconfirmed(federation)


def _unconfirmed(fed: Federation) -> list[Any]:
    alerts = delivery_alerts(fed.nodes[WUCHANG], fed.clock())
    return [a for a in alerts if a.code == "packet-unconfirmed"]


async def test_a_receipt_that_does_not_verify_leaves_the_packet_in_flight(
    federation: Federation,
) -> None:
    """It was queued again, so it could expire and give its number to the next packet,
    while the partner holds it (protocol §8.7: such a receipt counts as no answer)."""
    sender = federation.nodes[WUCHANG]
    [p1] = await send(federation, WUCHANG, DAFENG, "garbled")
    inner = sender._sender._link

    class Garbled(Through):
        async def deliver(self, peer: str, packets: list[str]) -> list[str]:
            receipts = await self.inner.deliver(peer, packets)
            return [r[:-8] + ("A" * 8 if not r.endswith("A" * 8) else "B" * 8) for r in receipts]

    sender._sender._link = Garbled(inner)
    await sender.deliver_once()
    assert _state(federation, p1) == (OutboxState.IN_FLIGHT, "bad-receipt")
    assert [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()] == [p1]
    sender._sender._link = inner
    federation.clock.advance(days=8)  # the partner answers its duplicate with the receipt
    await _passes(federation, 0.5)
    assert _state(federation, p1)[0] is OutboxState.DELIVERED


async def test_an_error_nobody_foresaw_backs_off_that_partner_and_the_outbox_runs_on(
    federation: Federation,
) -> None:
    """One partner's lane raising an unforeseen error ended the outbox task for every
    partner (and, its packet left in flight, again after each restart)."""
    sender = federation.nodes[WUCHANG]
    link = Through(sender._sender._link, lambda: ValueError("year 10680 is out of range"))
    sender._sender._link = link
    [stuck] = await send(federation, WUCHANG, DAFENG, "odd")
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run_outbox(stop))
    try:
        async with asyncio.timeout(10):
            while link.calls == 0:
                await asyncio.sleep(0.01)
            [other] = await send(federation, WUCHANG, NINGJIN, "fine")
            while _state(federation, other)[0] is not OutboxState.DELIVERED:
                await asyncio.sleep(0.01)
        assert not task.done()
        assert DAFENG in sender._sender.failing_since()
        assert _state(federation, stuck)[0] is not OutboxState.DELIVERED
    finally:
        stop.set()
        await task


def test_a_large_base_backoff_never_overflows() -> None:
    """base_delay × 2^40 is past what a timedelta holds once base_delay is over 78 s:
    the 41st failure of a partner raised OverflowError and ended the outbox."""
    policy = OutboxPolicy(base_delay=timedelta(minutes=2), max_delay=timedelta(hours=1))
    for failures in (1, 2, 41, 100, 10_000):
        delay = backoff_delay(policy, failures, 1.0)
        assert timedelta(minutes=2) <= delay <= timedelta(hours=1)
    assert backoff_delay(policy, 41, 1.0) == timedelta(hours=1)


def test_receipt_times_past_year_9999_and_overlong_reasons_are_malformed() -> None:
    """A partner's signed receipt with such a time raised ValueError from the date
    library, and an over-long reason an audit error, each outside the receipt check."""
    assert parse_time(253_402_300_799).year == 9999
    with pytest.raises(MalformedPacket):
        parse_time(2**38)
    good = {
        "v": 1, "packet_id": "p", "packet_digest": "a" * 64, "from": DAFENG, "to": WUCHANG,
        "status": "rejected", "reason": "gap", "received_at": 1_800_000_000, "log": None,
    }  # fmt: skip
    assert Receipt.from_json(good).reason == "gap"
    for reason in ("", "x" * 257):
        with pytest.raises(MalformedPacket):
            Receipt.from_json({**good, "reason": reason})
    with pytest.raises(MalformedPacket):
        Receipt.from_json({**good, "received_at": 2**38})


async def test_a_partner_being_served_with_an_expired_packet_does_not_spin_the_outbox(
    federation: Federation,
) -> None:
    """The next wake-up counted the expiries of a partner still being served (left out
    of the passes until its task ends): past due, the loop woke at once, again and
    again, on the event loop every listener shares."""
    sender = federation.nodes[WUCHANG]
    [old] = await send(federation, WUCHANG, DAFENG, "old")
    federation.clock.advance(days=8)  # its expiry and grace are past
    sender._sender._serving[DAFENG] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    try:
        now = federation.clock()
        assert sender._sender.next_wakeup(now) > now
    finally:
        sender._sender._serving.clear()
    assert sender._sender.next_wakeup(federation.clock()) == federation.clock()
    assert _state(federation, old)[0] is OutboxState.QUEUED


async def test_a_packet_the_partner_may_hold_stays_in_flight_when_it_becomes_unreachable(
    federation: Federation,
) -> None:
    """The partner stored the batch and the answer was lost; then it left the directory
    (or presented a certificate we refuse): the packet was queued again, expired, and its
    number went to the case's next packet, refused as out of order for good."""
    sender = federation.nodes[WUCHANG]
    [p1] = await send(federation, WUCHANG, DAFENG, "held")
    inner = sender._sender._link

    class LostAnswer(Through):
        async def deliver(self, peer: str, packets: list[str]) -> list[str]:
            await self.inner.deliver(peer, packets)  # the partner takes and stores it
            raise PeerUnavailable("the answer was lost")

    sender._sender._link = LostAnswer(inner)
    await sender.deliver_once()
    assert _state(federation, p1)[0] is OutboxState.IN_FLIGHT
    sender._sender._link = Through(inner, lambda: PeerUnreachable("no federation URL"))
    federation.clock.advance(days=8)
    await _passes(federation, 1)
    assert _state(federation, p1)[0] is OutboxState.IN_FLIGHT  # never expired
    sender._sender._link = inner  # the partner is back: its duplicate answer settles it
    await _passes(federation, 0.5)
    assert _state(federation, p1)[0] is OutboxState.DELIVERED
