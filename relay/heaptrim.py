"""Handing the memory a burst of work freed back to the system.

A node that has created or relayed thousands of packets has freed nearly all that work
allocated, but glibc's ``malloc`` keeps freed memory inside its heap unless it lies at
the heap's top, and Python's small objects and a packet's buffers leave it scattered. In
``bench relay_http`` node A held 35-50 MiB more after the creation and the catch-up of
10,000 packets than at start, holding no more objects. ``malloc_trim(0)``
hands every free page of the heap back (``madvise``); later allocations fault them in
again as needed.

:class:`HeapTrimmer` calls it once the process is quiet after a burst. Looking every
second, it trims when the process has used at least ``burst`` CPU-seconds since it last
trimmed (or started) and at most ``quiet`` CPU-seconds in the last second: a node under
load does not trim, an idle node does not trim again, a node between bursts trims in
its first quiet second (a trim of ~100 MiB of scattered free memory takes ~20 ms, and
holds ``malloc``'s lock meanwhile: not while requests come in). With a C library
without ``malloc_trim`` (musl) it does nothing. ``tongban serve`` runs one; its
figures are metrics::

    tongban_heap_trims_total             trims done
    tongban_heap_trimmed_bytes_total     resident memory they gave back
    tongban_heap_trim_seconds_total      how long they took
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, Metric

__all__ = ["HeapTrimmer", "libc_malloc_trim", "resident_bytes"]

_log = logging.getLogger("tongban.relay.heaptrim")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def libc_malloc_trim() -> Callable[[], object] | None:
    """The C library's ``malloc_trim(0)``, or None where it has none."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim  # a CDLL call releases the GIL meanwhile
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int:
    """This process's resident memory (``/proc/self/statm``), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class HeapTrimmer:
    """Trims the heap in the first quiet second after a burst (module docstring);
    ``cpu`` is the process's CPU clock, injected with ``trim`` and ``resident`` in
    tests."""

    def __init__(
        self,
        *,
        trim: Callable[[], object] | None,
        burst: float = 1.0,
        quiet: float = 0.05,
        every: float = 1.0,
        cpu: Callable[[], float] = time.process_time,
        resident: Callable[[], int] = resident_bytes,
    ) -> None:
        self._trim, self._cpu, self._resident = trim, cpu, resident
        self.burst, self.quiet, self.every = burst, quiet, every
        self._at_trim = self._last = cpu()
        self.trims = 0
        self.trimmed_bytes = 0
        self.trim_seconds = 0.0

    def due(self) -> bool:
        """One look: whether a burst has ended since the last trim (and take the look's
        CPU reading as the next one's start)."""
        now = self._cpu()
        recent, self._last = now - self._last, now
        return self._trim is not None and now - self._at_trim >= self.burst and recent <= self.quiet

    def trim(self) -> int:
        """Trim now; the resident bytes it gave back (blocking: run it off the loop)."""
        assert self._trim is not None
        before, started = self._resident(), time.perf_counter()
        self._trim()
        self.trim_seconds += time.perf_counter() - started
        freed = max(before - self._resident(), 0)
        self._at_trim = self._last = self._cpu()
        self.trims += 1
        self.trimmed_bytes += freed
        return freed

    async def run(self, stop: asyncio.Event) -> None:
        """Look every ``every`` seconds until ``stop`` is set; trim in a thread when due."""
        if self._trim is None:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            if not stop.is_set() and self.due():
                try:
                    freed = await asyncio.to_thread(self.trim)
                except Exception:  # never the node's end: it only keeps its memory
                    _log.warning("heap trim failed; no more trims", exc_info=True)
                    return
                _log.debug("heap trimmed after a burst: %.1f MiB given back", freed / 2**20)

    def gauges(self, now: datetime) -> list[Metric]:
        """A gauge source (:meth:`relay.metrics.NodeMetrics.add_gauges`) of the trims."""
        trims = CounterMetricFamily(
            "tongban_heap_trims", "Heap trims after a burst of work (relay.heaptrim)"
        )
        trims.add_metric([], float(self.trims))
        freed = CounterMetricFamily(
            "tongban_heap_trimmed_bytes", "Resident memory the heap trims gave back"
        )
        freed.add_metric([], float(self.trimmed_bytes))
        took = CounterMetricFamily(
            "tongban_heap_trim_seconds", "How long the heap trims took (malloc's lock held)"
        )
        took.add_metric([], self.trim_seconds)
        return [trims, freed, took]
