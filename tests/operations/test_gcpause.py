"""The collector's pauses of a node process (relay.gcpause): counted per generation in
cumulative buckets, and the objects a process holds once started frozen out of the
collector's walks (in a process of its own: freezing pytest's would outlive the test)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from relay.gcpause import BUCKETS, GcPauses


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _collection(pauses: GcPauses, clock: _Clock, generation: int, seconds: float) -> None:
    pauses("start", {"generation": generation})
    clock.now += seconds
    pauses("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


def _samples(pauses: GcPauses) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels["generation"], s.labels.get("le", "")): s.value
        for s in pauses.histogram().samples
    }


def test_pauses_are_counted_per_generation_in_cumulative_buckets() -> None:
    clock = _Clock()
    pauses = GcPauses(clock)
    _collection(pauses, clock, 0, 0.0004)
    _collection(pauses, clock, 2, 0.037)  # a collection of the oldest generation, unfrozen
    _collection(pauses, clock, 2, 0.2)
    got = _samples(pauses)
    assert got["tongban_gc_pause_seconds_bucket", "0", "0.001"] == 1
    assert got["tongban_gc_pause_seconds_count", "0", ""] == 1
    assert got["tongban_gc_pause_seconds_bucket", "2", "0.025"] == 0
    assert got["tongban_gc_pause_seconds_bucket", "2", "0.05"] == 1
    assert got["tongban_gc_pause_seconds_bucket", "2", "0.1"] == 1
    assert got["tongban_gc_pause_seconds_bucket", "2", "+Inf"] == 2
    assert got["tongban_gc_pause_seconds_count", "2", ""] == 2
    assert abs(got["tongban_gc_pause_seconds_sum", "2", ""] - 0.237) < 1e-9
    assert got["tongban_gc_pause_seconds_count", "1", ""] == 0
    buckets = [k for k in got if k[0] == "tongban_gc_pause_seconds_bucket" and k[1] == "1"]
    assert len(buckets) == len(BUCKETS) + 1


def test_a_stop_without_its_start_is_not_counted() -> None:
    clock = _Clock()
    pauses = GcPauses(clock)  # installed while a collection ran: its stop comes alone
    pauses("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    assert _samples(pauses)["tongban_gc_pause_seconds_count", "2", ""] == 0


_FROZEN = """
import gc, json
from relay.gcpause import freeze_startup_objects, pauses
held = [[i] for i in range(100_000)]  # what a node holds once started (tracked: lists)
recorder = pauses()
frozen = freeze_startup_objects()
walked = len(gc.get_objects())  # what a collection now walks
gc.collect()
young = [[i] for i in range(1_000)]
gc.collect()
counts = {s.labels["generation"]: s.value for s in recorder.histogram().samples
          if s.name == "tongban_gc_pause_seconds_count"}
print(json.dumps({"frozen": frozen, "walked": walked, "held": sum(d[0] for d in held),
                  "counts": counts}))
"""


def test_the_objects_held_once_started_are_frozen_out_of_the_collectors_walks() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FROZEN], capture_output=True, text=True, timeout=120, check=True
    )
    got: dict[str, Any] = json.loads(run.stdout)
    assert got["frozen"] >= 100_000
    assert got["walked"] < 10_000  # without the freeze: more than 100,000
    assert got["held"] == sum(range(100_000))  # frozen objects stay, and stay usable
    assert got["counts"]["2"] >= 2  # the two full collections after the freeze
