"""Resident memory of two real nodes as packets pass (issue 12: what a node keeps per
packet must not grow with its history, in memory as on disk).

Two ``tongban serve`` nodes, A and B, set up as in ``bench relay_http`` (mutual TLS on
loopback, each with its crypto helper). In each of ``MEMORY_ROUNDS`` rounds (default 12)
16 clients create ``MEMORY_PER_ROUND`` packets at A (default 5,000, over the same 2,000
cases round after round) and A delivers them to B; then both nodes are left quiet for
:data:`QUIET` seconds, in which each hands the heap freed by the burst back to the
system (``relay.heaptrim``), and each node's resident memory is read from
``/proc/<pid>/status`` (``VmRSS``, and its anonymous part ``RssAnon``: the heap and the
other private mappings, where anything kept per packet would be).

One row a round: both nodes' MiB and their ratio to the first round. The caches (SQLite's
pages, the verifier's memo) fill during the first rounds: both nodes grow by 100-150
bytes a packet up to about the 30,000th, then stay flat. The last row gives the growth
of the anonymous memory over the second half of the rounds, in bytes per packet passed: a
node that kept some bytes for each packet would show them there. Measured: 100,000 packets
in 20 rounds, A 91 to 94 MiB and B 87 to 91 MiB: over the second half, +17 and -3 bytes
a packet; with the default 12 rounds, +3 and +21.
``MEMORY_PER_ROUND`` and ``MEMORY_ROUNDS`` make it smaller (the tests' smoke run) or
longer.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.bench_relay_http import (
    REQUEST,
    _client,
    _create_concurrently,
    _federation,
    _start,
    _status_mib,
    _stop,
    _wait_drained,
)

ROUNDS = int(os.environ.get("MEMORY_ROUNDS", "12"))
PER_ROUND = int(os.environ.get("MEMORY_PER_ROUND", "5000"))
QUIET = 2.5
"""Seconds both nodes are left idle after a round (a node trims its heap in its first
quiet second after a burst)."""
MIB = 1 << 20


async def _scenario(work: Path) -> list[dict[str, object]]:
    from relay.staff_auth import StaffRole

    fed = _federation(work)
    nodes = {"A": await _start(fed.cfg_a)}
    rows: list[dict[str, object]] = []
    try:
        nodes["B"] = await _start(fed.cfg_b)
        db_a = fed.cfg_a.parent / "data" / "relay.sqlite3"
        first: dict[str, float] = {}
        series: dict[str, list[float]] = {"A": [], "B": []}
        async with _client(fed.cfg_a, StaffRole.CLERK) as staff_a:
            for done in range(PER_ROUND, PER_ROUND * ROUNDS + 1, PER_ROUND):
                await _create_concurrently(staff_a, REQUEST, PER_ROUND)
                await _wait_drained(db_a)
                await asyncio.sleep(QUIET)
                row: dict[str, object] = {"packets passed": f"{done:,}"}
                for name, proc in nodes.items():
                    rss, anon = _status_mib(proc.pid, "VmRSS"), _status_mib(proc.pid, "RssAnon")
                    first.setdefault(name, rss)
                    series[name].append(anon)
                    row[f"{name} MiB"] = rss
                    row[f"{name} anon MiB"] = anon
                    row[f"{name} vs first"] = rss / first[name]
                rows.append(row)
        half = ROUNDS // 2
        if ROUNDS - half >= 2:
            passed = PER_ROUND * (ROUNDS - 1 - half)
            growth = {n: (s[-1] - s[half]) * MIB / passed for n, s in series.items()}
            rows.append(
                {
                    "packets passed": f"growth, round {half + 1} to {ROUNDS}",
                    "A anon MiB": f"{growth['A']:+.1f} bytes/packet",
                    "B anon MiB": f"{growth['B']:+.1f} bytes/packet",
                }
            )
    finally:
        await _stop(list(nodes.values()))
    return rows


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-node-memory-") as tmp:
        return asyncio.run(_scenario(Path(tmp)))


if __name__ == "__main__":
    for row in run():
        print(row)
