"""The cyclic garbage collector's pauses in a long-running node process.

CPython's collector stops the process while it runs. A collection of the oldest
generation walks every container object the process holds: in a ``tongban serve``
process, the ~105,000 objects it holds once started (modules, the directory, the
agreements, the trust bundle, the applications' routes) took 35-40 ms each time, two or
three times a minute under load, the event loop standing still meanwhile. In
``bench relay_http`` that was the tail of the staff API's latency: a run whose 4 seconds
at half rate caught one had its p99 near 50 ms, one that did not about 20-30 ms.

:func:`freeze_startup_objects` moves what the process holds once started out of the
collector's reach (:func:`gc.freeze`): they stay as long as they are referenced, and are
freed by reference counting as before; only cycles among them would no longer be
collected. A collection of the oldest generation then walks what was made since, and
took 1-2 ms in the same benchmark. ``tongban serve`` calls it once its node has
started; tests, which run many nodes in one process, do not. (The crypto helper process
holds ~34,000 objects, a collection there took 8-10 ms: left as is.)

:class:`GcPauses` counts every collection of the process and its pause, per
generation, for the node's metrics (:func:`gc_gauges`)::

    tongban_gc_pause_seconds{generation}     histogram of the collector's pauses
    tongban_gc_frozen_objects                objects out of the collector's reach
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from relay.metrics import BucketCounts

__all__ = ["BUCKETS", "GcPauses", "freeze_startup_objects", "gc_gauges", "pauses"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
"""Upper bounds (seconds) of the pause histogram's buckets (``+Inf`` comes on top)."""


def freeze_startup_objects() -> int:
    """Collect what is garbage now, then put every object left out of the collector's
    reach; returns how many objects are frozen. For a process that has finished
    starting and will run for long (see the module docstring)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Counts of the process's collections and their pauses, per generation, in
    :data:`BUCKETS` (cumulative when read). Installed once per process
    (:func:`pauses`): :data:`gc.callbacks` is the process's, as are its pauses."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: float | None = None
        self._generations = [BucketCounts(BUCKETS) for _ in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """The :data:`gc.callbacks` entry: ``start`` and ``stop`` of a collection."""
        if phase == "start":
            self._started = self._clock()
            return
        if self._started is None:
            return
        self.record(int(info["generation"]), self._clock() - self._started)
        self._started = None

    def record(self, generation: int, seconds: float) -> None:
        self._generations[generation].record(seconds)

    def histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "tongban_gc_pause_seconds",
            "Pauses of the process's cyclic garbage collector, by generation",
            labels=["generation"],
        )
        for generation, counts in enumerate(self._generations):
            buckets, total = counts.series()
            family.add_metric([str(generation)], buckets, total)
        return family


_installed: GcPauses | None = None
_installing = threading.Lock()


def pauses() -> GcPauses:
    """The process's :class:`GcPauses`, installed in :data:`gc.callbacks` at first use."""
    global _installed
    with _installing:
        if _installed is None:
            _installed = GcPauses()
            gc.callbacks.append(_installed)
        return _installed


def gc_gauges() -> Callable[[datetime], list[Metric]]:
    """A gauge source (:meth:`relay.metrics.NodeMetrics.add_gauges`) for the pauses and
    the frozen objects of the process the node runs in."""
    recorder = pauses()

    def source(now: datetime) -> list[Metric]:
        frozen = GaugeMetricFamily(
            "tongban_gc_frozen_objects",
            "Objects out of the garbage collector's reach (frozen once the node started)",
            value=float(gc.get_freeze_count()),
        )
        return [recorder.histogram(), frozen]

    return source
