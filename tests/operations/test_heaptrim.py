"""Handing the heap's free memory back after a burst of work (relay.heaptrim): when it
trims, and that glibc's ``malloc_trim`` gives back what ``free`` kept."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

from relay.heaptrim import HeapTrimmer, libc_malloc_trim


class _Process:
    """A process's CPU clock and resident memory, moved by the test."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.resident = 100 << 20
        self.trims = 0

    def trim(self) -> None:
        self.trims += 1
        self.resident -= 8 << 20


def _trimmer(process: _Process) -> HeapTrimmer:
    return HeapTrimmer(
        trim=process.trim, burst=1.0, quiet=0.05, cpu=lambda: process.cpu,
        resident=lambda: process.resident,
    )  # fmt: skip


def test_trims_in_the_first_quiet_look_after_a_burst_and_not_again_while_idle() -> None:
    process = _Process()
    trimmer = _trimmer(process)
    assert not trimmer.due()  # idle since start: nothing to give back
    for _ in range(3):  # busy: 0.6 CPU-seconds a second, 1.8 in all, no trim meanwhile
        process.cpu += 0.6
        assert not trimmer.due()
    process.cpu += 0.01  # the first quiet second
    assert trimmer.due()
    assert trimmer.trim() == 8 << 20
    for _ in range(5):  # idle afterwards: once is enough
        process.cpu += 0.01
        assert not trimmer.due()
    assert (trimmer.trims, trimmer.trimmed_bytes) == (1, 8 << 20)


def test_a_little_work_now_and_then_is_no_burst() -> None:
    process = _Process()
    trimmer = _trimmer(process)
    for _ in range(19):  # 0.05 CPU-seconds a second: 0.95 in all, under the burst
        process.cpu += 0.05
        assert not trimmer.due()
    process.cpu += 0.05  # the twentieth: a whole CPU-second of quiet work since the start
    assert trimmer.due()


def test_without_malloc_trim_nothing_is_due_and_run_returns() -> None:
    process = _Process()
    trimmer = HeapTrimmer(trim=None, cpu=lambda: process.cpu)
    process.cpu += 5
    assert not trimmer.due()
    asyncio.run(asyncio.wait_for(trimmer.run(asyncio.Event()), 5))


def test_run_trims_off_the_loop_and_the_metrics_count_it() -> None:
    process = _Process()
    trimmer = HeapTrimmer(
        trim=process.trim, every=0.01, cpu=lambda: process.cpu, resident=lambda: process.resident
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.ensure_future(trimmer.run(stop))
        process.cpu += 2.0  # a burst, then quiet
        async with asyncio.timeout(10):
            while process.trims == 0:
                await asyncio.sleep(0.01)
        stop.set()
        await running

    asyncio.run(scenario())
    assert process.trims == 1
    got = {
        sample.name: sample.value
        for family in trimmer.gauges(datetime.now(UTC))
        for sample in family.samples
    }
    assert got["tongban_heap_trims_total"] == 1.0
    assert got["tongban_heap_trimmed_bytes_total"] == 8 << 20
    assert 0 <= got["tongban_heap_trim_seconds_total"] < 5


def test_glibc_malloc_trim_gives_back_what_free_kept() -> None:
    """60 MiB of 1 KiB buffers (each from malloc, above Python's small-object allocator),
    one in 16 kept: ``free`` returns none of the rest to the system, the trim does."""
    assert libc_malloc_trim() is not None  # glibc: the platform this runs on
    script = """
from relay.heaptrim import libc_malloc_trim, resident_bytes
held = [bytes(1024) for _ in range(60 * 1024)]
kept = held[::16]
before = resident_bytes()
del held
freed = before - resident_bytes()
libc_malloc_trim()()
trimmed = before - resident_bytes()
print(freed >> 20, trimmed >> 20)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    freed, trimmed = map(int, done.stdout.split())
    assert freed < 10  # what free() alone gave back, in MiB
    assert trimmed > 30  # what the trim gave back on top


def test_a_failing_trim_ends_the_trimming_not_the_node() -> None:
    process = _Process()

    def broken() -> None:
        raise OSError("no such symbol")

    trimmer = HeapTrimmer(trim=broken, every=0.01, cpu=lambda: process.cpu)

    async def scenario() -> None:
        process.cpu += 2.0
        await asyncio.wait_for(trimmer.run(asyncio.Event()), 10)  # returns: no more trims

    asyncio.run(scenario())
    assert trimmer.trims == 0
