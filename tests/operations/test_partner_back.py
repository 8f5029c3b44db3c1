"""A partner back from an outage gets the backlog at once, not at the end of the backoff:
two real ``tongban serve`` nodes with production-like backoffs (minutes). The partner
greets us when it starts (docs/protocol.md §8.7: ``GET /federation/v1/descriptor``), and
our federation listener takes any authenticated request of a partner in backoff as the
sign that it is back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from chaoskit import B, Pki, Proc, make_federation, send_backlog, wait_drained, wait_for

SLOW_BACKOFF = '[outbox]\nbase_backoff = "5m"\nmax_backoff = "10m"\nbatch_size = 10\n'


def _next_attempt(data: Path) -> float | None:
    """When A plans its next attempt at B, in seconds from now (None: no backoff)."""
    conn = sqlite3.connect(f"file:{data / 'relay.sqlite3'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT next_attempt_at FROM peers WHERE peer = ?", (B,)).fetchone()
    finally:
        conn.close()
    if row is None or row[0] is None:
        return None
    return float(row[0]) - datetime.now(UTC).timestamp()  # stored as a POSIX timestamp


async def test_a_partner_that_comes_back_gets_the_backlog_within_seconds(
    ops_pki: Pki, tmp_path: Path
) -> None:
    fed = make_federation(ops_pki, tmp_path, outbox=SLOW_BACKOFF)
    node_a, node_b = Proc(fed.config_a), Proc(fed.config_b)
    await node_a.start()
    try:
        sent = await send_backlog(fed.config_a, cases=4, per_case=5)

        async def backing_off() -> float | None:
            left = _next_attempt(fed.data_a)
            return left if left is not None and left > 40 else None  # jitter may be short

        # A tried B, failed, and plans its next attempt over 40 s away (a shorter
        # full-jitter draw is simply waited out: that attempt fails too)
        planned = await wait_for(backing_off, "A backing off from B for over 40 s", 300)
        started = time.monotonic()
        await node_b.start()
        await wait_drained(fed.config_a, len(sent), timeout=planned / 2)
        took = time.monotonic() - started
        assert took < 20, f"the backlog took {took:.1f} s after B started"
        assert took < planned - 20, "A waited for its backoff"
    finally:
        await asyncio.gather(node_a.stop(), node_b.stop())
