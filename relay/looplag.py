"""How late the node's event loop runs.

A ``tongban serve`` process answers every request, delivers every batch and renews
every lease on one thread: while something holds that thread (a commit waiting on a
slow disk, a long computation, the process paged out), everything waits. :class:`LoopLag`
asks to be woken every ``every`` seconds and records how much later than asked it was,
a histogram the node serves as a metric::

    tongban_event_loop_lag_seconds     how late the loop woke a timer

On an idle or busy but healthy node nearly every look falls in the first buckets
(``bench relay_http``'s creation at half rate probes the same from outside:
``GET /healthz`` answered within 14-32 ms at the 99th percentile). Looks in the 0.1 s
bucket and above are stalls an office should look into: what else the host ran then,
and the disk's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client.core import HistogramMetricFamily, Metric

from relay.metrics import BucketCounts

__all__ = ["BUCKETS", "LoopLag"]

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the histogram's buckets (``+Inf`` comes on top)."""


class LoopLag:
    """The event loop's lateness, looked at every ``every`` seconds (module docstring);
    ``clock`` is monotonic, injected in tests."""

    def __init__(self, *, every: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self._clock = clock
        self._lags = BucketCounts(BUCKETS)

    def record(self, lag: float) -> None:
        self._lags.record(lag)

    async def run(self, stop: asyncio.Event) -> None:
        """Look every ``every`` seconds until ``stop`` is set."""
        while not stop.is_set():
            asked = self._clock() + self.every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            if not stop.is_set():
                self.record(max(self._clock() - asked, 0.0))

    def gauges(self, now: datetime) -> list[Metric]:
        """A gauge source (:meth:`relay.metrics.NodeMetrics.add_gauges`)."""
        family = HistogramMetricFamily(
            "tongban_event_loop_lag_seconds",
            "How much later than asked the node's event loop woke a timer (relay.looplag)",
        )
        buckets, total = self._lags.series()
        family.add_metric([], buckets, total)
        return [family]
