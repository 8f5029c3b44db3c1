"""Issue 11: delivery never wedges. A packet that can never be delivered is parked
(dead, with its reason) and the rest of the outbox to that partner keeps moving; a
batch over the partner's limits is split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import pytest
from relay_core_support import ACTION, DAFENG, MATTER, MODE, WUCHANG, Federation, drain, send
from test_attachments import stage

from relay.core.errors import PacketTooLarge, PeerRefused
from relay.core.model import OutboxState
from relay.core.outbox import Refusal, classify_refusal
from relay.core.service import RelayNode
from relay.http.api import problem_from_core
from relay.http.staff import delivery_alerts


def states(node: RelayNode) -> dict[str, tuple[OutboxState, str | None]]:
    return {i.summary.packet_id: (i.state, i.reason) for i in node.list_outbox()}


async def test_a_flipped_byte_in_a_blob_parks_its_packet_and_others_move_on(
    federation: Federation,
) -> None:
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    digest = await stage(sender, os.urandom(10_000))
    bad = await sender.create_packet(
        to=DAFENG, case_id="bad", matter=MATTER, action=ACTION, mode=MODE,
        content={"photos": 1}, attachments=[digest],
    )  # fmt: skip
    after_bad = await send(federation, WUCHANG, DAFENG, "bad", 1)
    others = await send(federation, WUCHANG, DAFENG, "good", 3)
    blob = federation.stores[WUCHANG].blob_path(bad.attachments[0].digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    await drain(federation, WUCHANG)

    seen = states(sender)
    assert seen[bad.packet_id] == (OutboxState.DEAD, "attachment-digest-mismatch")
    assert seen[after_bad[0]] == (OutboxState.DEAD, "predecessor-dead")
    assert all(seen[p][0] is OutboxState.DELIVERED for p in others)
    assert [i.summary.packet_id for i in receiver.list_inbox()] == others

    alerts = {a.subject: a for a in delivery_alerts(sender, federation.clock())}
    assert {bad.packet_id, after_bad[0]} <= set(alerts)
    parked = alerts[bad.packet_id]
    assert (parked.source, parked.code) == ("outbox", "packet-parked")
    assert "attachment-digest-mismatch" in parked.detail
    # staff fix the blob and resend: the packet goes through, its alert goes away
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    again = await sender.resend(bad.packet_id)
    await drain(federation, WUCHANG)
    assert states(sender)[again.packet_id][0] is OutboxState.DELIVERED
    still = {a.subject for a in delivery_alerts(sender, federation.clock())}
    assert bad.packet_id not in still


async def test_a_partner_failing_for_an_hour_raises_an_alert(federation: Federation) -> None:
    sender = federation.nodes[WUCHANG]
    await send(federation, WUCHANG, DAFENG, "c", 1)
    federation.network.down.add(DAFENG)
    await sender.deliver_once()
    [item] = sender.list_outbox()
    assert item.state is OutboxState.QUEUED  # no connection: nothing reached it
    assert item.reason == "peer-unavailable"
    assert item.attempts == 1
    assert delivery_alerts(sender, federation.clock()) == []
    federation.clock.advance(hours=1, seconds=1)
    await sender.deliver_once()
    [alert] = delivery_alerts(sender, federation.clock())
    assert (alert.code, alert.subject) == ("partner-unreachable", DAFENG)
    assert alert.to_json()["peer"] == DAFENG  # the console names the partner by it
    federation.network.down.clear()
    await drain(federation, WUCHANG)
    assert delivery_alerts(sender, federation.clock()) == []


class _Limited:
    """A link in front of the fake network that refuses batches over ``most`` packets
    with 413 and the limit as an extension member, as the federation listener does."""

    def __init__(self, inner: object, most: int) -> None:
        self._inner = inner
        self.most = most
        self.sizes: list[int] = []

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        self.sizes.append(len(packets))
        if len(packets) > self.most:
            raise PeerRefused(
                "413", status=413, code="batch-too-large", limits={"max_batch_size": self.most}
            )
        return await self._inner.deliver(peer, packets)  # type: ignore[attr-defined,no-any-return]

    async def upload_attachment(self, *args: object) -> None:
        await self._inner.upload_attachment(*args)  # type: ignore[attr-defined]


async def test_a_batch_over_the_partner_limit_is_split_and_the_limit_learned(
    federation: Federation,
) -> None:
    sender = federation.nodes[WUCHANG]
    limited = _Limited(sender._sender._link, most=3)
    sender._sender._link = limited  # type: ignore[assignment]
    ids = []
    for case in range(10):
        ids += await send(federation, WUCHANG, DAFENG, f"case-{case}", 1)
    await drain(federation, WUCHANG)
    assert all(state is OutboxState.DELIVERED for state, _ in states(sender).values())
    assert [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()] == ids
    # once learned, later batches are cut to the limit before sending
    limited.sizes.clear()
    for case in range(7):
        await send(federation, WUCHANG, DAFENG, f"later-{case}", 1)
    await drain(federation, WUCHANG)
    assert limited.sizes
    assert max(limited.sizes) <= 3


async def test_a_partner_announcing_a_small_batch_size_never_receives_a_bigger_batch(
    federation: Federation,
) -> None:
    """Issue 14: the limits of a partner's directory entry apply from the first batch,
    not only after a 413 taught them."""
    sender = federation.nodes[WUCHANG]
    limited = _Limited(sender._sender._link, most=3)
    sender._sender._link = limited  # type: ignore[assignment]
    sender.announce_partner_limits({DAFENG: {"max_batch_size": 3, "max_body_bytes": 1 << 20}})
    ids = []
    for case in range(10):
        ids += await send(federation, WUCHANG, DAFENG, f"case-{case}", 1)
    await drain(federation, WUCHANG)
    assert all(state is OutboxState.DELIVERED for state, _ in states(sender).values())
    assert [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()] == ids
    assert len(limited.sizes) >= 4
    assert max(limited.sizes) <= 3  # no 413 was needed to learn it
    # a refusal tighter than the announcement wins; an announcement never loosens it
    limited.most = 2
    limited.sizes.clear()
    for case in range(6):
        await send(federation, WUCHANG, DAFENG, f"later-{case}", 1)
    await drain(federation, WUCHANG)
    assert sender._sender.limits(DAFENG)["max_batch_size"] == 2
    sender.announce_partner_limits({DAFENG: {"max_batch_size": 5, "max_body_bytes": 1 << 20}})
    assert sender._sender.limits(DAFENG)["max_batch_size"] == 2


def test_announced_limits_that_are_not_positive_are_ignored(federation: Federation) -> None:
    sender = federation.nodes[WUCHANG]._sender
    sender.announce_limits({DAFENG: {"max_body_bytes": 2048, "max_batch_size": 0}})
    assert sender.limits(DAFENG) == {"max_body_bytes": 2048}


@pytest.mark.parametrize(
    ("kind", "status", "code", "verdict"),
    [
        ("batch", 413, "batch-too-large", Refusal.SPLIT),
        ("batch", 413, None, Refusal.SPLIT),
        ("batch", 400, "bad-request", Refusal.PERMANENT),
        ("batch", 422, "invalid-request", Refusal.PERMANENT),
        # no such route (a wrong URL, a node being redeployed): the partner's, never a
        # packet's (taken per packet, one such pass parked every packet)
        ("batch", 404, "not-found", Refusal.RETRY),
        ("batch", 405, "method-not-allowed", Refusal.RETRY),
        ("batch", 408, "request-timeout", Refusal.RETRY),
        ("batch", 429, "too-many-requests", Refusal.RETRY),
        ("batch", 500, "internal-error", Refusal.RETRY),
        ("batch", 503, None, Refusal.RETRY),
        ("blob-upload", 422, "digest-mismatch", Refusal.PERMANENT),
        ("blob-upload", 413, "body-too-large", Refusal.PERMANENT),
        ("blob-upload", 409, "offset-mismatch", Refusal.RETRY),
        ("blob-offset", 404, None, Refusal.RETRY),
        ("blob-offset", 400, None, Refusal.PERMANENT),  # HEAD: no body, the status decides
        # no problem code: not a tongban node's answer (a proxy, a wrong address)
        ("batch", 404, None, Refusal.RETRY),
        ("batch", 405, None, Refusal.RETRY),
        ("batch", 400, None, Refusal.RETRY),
        ("blob-upload", 404, None, Refusal.RETRY),
    ],
)
def test_every_partner_status_has_one_meaning(
    kind: str, status: int, code: str | None, verdict: Refusal
) -> None:
    assert classify_refusal(kind, status, code) is verdict


async def test_a_packet_too_large_for_any_batch_is_refused_at_creation(
    federation: Federation,
) -> None:
    sender = federation.nodes[WUCHANG]
    sender._policy = replace(federation.policy, max_packet_bytes=20_000)
    await send(federation, WUCHANG, DAFENG, "small", 1)
    with pytest.raises(PacketTooLarge) as err:
        await sender.create_packet(
            to=DAFENG, case_id="big", matter=MATTER, action=ACTION, mode=MODE,
            content={"notes": "很长的说明" * 3000},
        )  # fmt: skip
    assert err.value.limit == 20_000
    assert err.value.size > 20_000
    assert [i.summary.case_id for i in sender.list_outbox()] == ["small"]
    problem = problem_from_core(err.value)
    assert (problem.status, problem.code) == (413, "packet-too-large")
    assert "20000" in str(problem)
    # the case did not consume a sequence number: its first packet is still seq 1
    ok = await sender.create_packet(
        to=DAFENG, case_id="big", matter=MATTER, action=ACTION, mode=MODE,
        content={"notes": "短"},
    )  # fmt: skip
    assert ok.seq == 1
