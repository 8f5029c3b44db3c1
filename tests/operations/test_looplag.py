"""How late the event loop runs (relay.looplag): the histogram, and a real stall seen."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from relay.looplag import LoopLag


def _buckets(lag: LoopLag) -> dict[str, float]:
    (family,) = lag.gauges(datetime.now(UTC))
    return {
        sample.labels.get("le", sample.name): sample.value
        for sample in family.samples
        if sample.name != "tongban_event_loop_lag_seconds_created"
    }


def test_lags_fall_in_cumulative_buckets_with_their_sum() -> None:
    lag = LoopLag()
    for seconds in (0.0005, 0.003, 0.2, 2.0):
        lag.record(seconds)
    got = _buckets(lag)
    assert got["0.001"] == 1
    assert got["0.005"] == 2
    assert got["0.1"] == 2
    assert got["0.25"] == 3
    assert got["1.0"] == 3
    assert got["+Inf"] == 4
    assert got["tongban_event_loop_lag_seconds_count"] == 4
    assert abs(got["tongban_event_loop_lag_seconds_sum"] - 2.2035) < 1e-9


def test_a_callback_that_holds_the_loop_shows_as_lag() -> None:
    lag = LoopLag(every=0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        looking = asyncio.ensure_future(lag.run(stop))
        await asyncio.sleep(0.1)  # a few looks on a free loop
        time.sleep(0.3)  # the stall under test: nothing else runs meanwhile
        await asyncio.sleep(0.1)
        stop.set()
        await looking

    asyncio.run(scenario())
    got = _buckets(lag)
    assert got["+Inf"] >= 3
    assert got["+Inf"] - got["0.1"] >= 1  # the stall: a look at least 0.1 s late
    assert 0.2 <= got["tongban_event_loop_lag_seconds_sum"] < 5  # the 0.3 s it was held
