"""kill -9 of the receiver and of the sender at random points while a backlog of packets
in many cases drains between two ``tongban serve`` processes: afterwards every packet is
in B's inbox exactly once, with the digest A signed, in per-case order.

The kill points come from a seeded generator; the seed is printed (shown on failure) and
``CHAOS_SEED`` replays it. ``CHAOS_SCALE`` (default 1, ``make chaos`` uses more) multiplies
the cases and the kills.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
from chaoskit import (
    Federation,
    Proc,
    assert_exactly_once,
    delivered_count,
    send_backlog,
    wait_drained,
)

SCALE = int(os.environ.get("CHAOS_SCALE", "1"))
CASES, PER_CASE = 60 * SCALE, 10  # about a second of delivery: the kills land within it
RECEIVER_KILLS, SENDER_KILLS = 4 * SCALE, 2 * SCALE


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_either_side_at_random_points(federation: Federation):
    seed = int(os.environ.get("CHAOS_SEED", random.SystemRandom().randrange(2**32)))
    print(f"CHAOS_SEED={seed} (replay with this environment variable)")
    rng = random.Random(seed)
    node_a, node_b = Proc(federation.config_a), Proc(federation.config_b)
    await node_a.start()
    try:
        sent = await send_backlog(federation.config_a, CASES, PER_CASE, filler=2000)
        total = len(sent)
        await node_b.start()
        victims = ["b"] * RECEIVER_KILLS + ["a"] * SENDER_KILLS
        rng.shuffle(victims)
        mid_delivery = 0
        for victim in victims:
            await asyncio.sleep(rng.uniform(0.02, 0.4))  # a random point of the delivery
            done = await delivered_count(federation.config_a)
            mid_delivery += done is not None and done < total
            proc = node_b if victim == "b" else node_a
            await proc.kill9()
            await asyncio.sleep(rng.uniform(0, 0.5))  # down for a while, A keeps retrying
            await proc.start()
        assert mid_delivery, f"everything was delivered before the first kill (seed {seed})"
        last_fault = time.monotonic()
        await wait_drained(federation.config_a, total)
        drain = time.monotonic() - last_fault
        await assert_exactly_once(federation, sent)
        print(
            f"kills survived: {len(victims)} ({RECEIVER_KILLS} receiver, {SENDER_KILLS} sender,"
            f" {mid_delivery} mid-delivery); packets: {total};"
            f" drained {drain:.1f}s after the last fault"
        )
    finally:
        await node_a.stop()
        await node_b.stop()
