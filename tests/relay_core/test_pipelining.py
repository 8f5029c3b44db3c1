"""The running outbox keeps its batches in flight pipelined (relay.core.sender,
"Pipelining"): a lane whose batch came back sends the next due batch while the other
lanes' batches are still at the partner, never two batches of one case at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from relay_core_support import DAFENG, WUCHANG, Federation, send

from relay.core.fakes import FakeNetwork, FakePeerLink
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy
from relay.core.packets import peek_facts

DEADLINE = 60.0
"""Seconds a test waits for a condition before it fails (generous: a loaded machine)."""


@dataclass
class GatedNetwork(FakeNetwork):
    """A FakeNetwork whose links hold the first batch at the receiver's door until
    ``release_after`` batches were started, and record which cases each batch held and
    which batches overlapped."""

    release_after: int = 3
    started: list[list[str]] = field(default_factory=list)
    in_flight: dict[int, set[str]] = field(default_factory=dict)
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    held_until_release: bool | None = None

    def link(self, sender_id: str) -> FakePeerLink:
        return _GatedLink(self, sender_id)


class _GatedLink(FakePeerLink):
    def __init__(self, network: GatedNetwork, sender_id: str) -> None:
        super().__init__(network, sender_id)
        self._gated = network

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        net = self._gated
        cases = {str((peek_facts(p) or {}).get("case")) for p in packets}
        number = len(net.started)
        for other in net.in_flight.values():
            net.overlaps += [(case, "twice in flight") for case in cases & other]
        net.started.append(sorted(cases))
        net.in_flight[number] = cases
        if len(net.started) >= net.release_after:
            net.released.set()
        try:
            if number == 0:
                try:
                    await asyncio.wait_for(net.released.wait(), DEADLINE)
                    net.held_until_release = True
                except TimeoutError:
                    net.held_until_release = False
            return await super().deliver(peer, packets)
        finally:
            del net.in_flight[number]


@pytest.fixture
def gated(federation: Federation) -> GatedNetwork:
    """The federation's nodes on a GatedNetwork, two lanes of two packets each."""
    net = GatedNetwork(rng=federation.network.rng)
    federation.network = net
    federation.policy = OutboxPolicy(batch_size=2, batches_in_flight=2)
    federation.start(WUCHANG)
    federation.start(DAFENG)
    return net


async def _run_until_delivered(fed: Federation, expected: int) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(fed.nodes[WUCHANG].run_outbox(stop))
    try:
        async with asyncio.timeout(DEADLINE * 2):
            while len(fed.nodes[WUCHANG].list_outbox(state=OutboxState.DELIVERED)) < expected:
                await asyncio.sleep(0.01)  # the condition, checked again
    finally:
        stop.set()
        await task


async def test_a_lane_sends_its_next_batch_while_another_batch_is_still_out(
    federation: Federation, gated: GatedNetwork
) -> None:
    for case in range(8):
        await send(federation, WUCHANG, DAFENG, f"case-{case}")
    await _run_until_delivered(federation, 8)
    # the first batch was held until a third batch had started: only a lane that
    # refilled while the first batch was out can have started it
    assert gated.held_until_release is True
    assert len(gated.started) >= 4
    assert gated.overlaps == []


async def test_pipelined_lanes_keep_every_case_in_order_and_one_batch_at_a_time(
    federation: Federation, gated: GatedNetwork
) -> None:
    gated.release_after = 2
    sent = {
        f"case-{c}": await send(federation, WUCHANG, DAFENG, f"case-{c}", n=5) for c in range(4)
    }
    await _run_until_delivered(federation, 20)
    assert gated.overlaps == []  # a case never in two batches in flight at once
    received = [i.summary for i in federation.nodes[DAFENG].list_inbox()]
    for case, ids in sent.items():
        assert [s.packet_id for s in received if s.case_id == case] == ids
    assert all(i.state is OutboxState.DELIVERED for i in federation.nodes[WUCHANG].list_outbox())
