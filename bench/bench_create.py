"""Packet creation in one process, without HTTP (issue 12): where node A's CPU goes.

One relay node (``RelayNode`` on a real SQLite file, ``synchronous=FULL``) creates
``CREATE_N`` packets (default 1,600) in groups of 16 concurrent creations over 4 cases,
as 16 staff clients do (group commit). Reported, all from the same run:

- CPU of the process per created packet (its worker threads included), and as a
  multiple of the crypto creating one needs (inner JWS, HPKE seal, outer JWS, measured
  here just before): what the relay adds around the crypto;
- SQLite calls (``execute`` / ``executemany`` from Python) per created packet, and
  commits made on the event loop's thread per group: counts, which a busy machine does
  not blur (``bench relay_http`` has the same path through HTTP, TLS and two processes);
- the same creation with the outbox task running while the partner is down (in
  backoff): its CPU, SQLite calls per packet and outbox passes per group (a wake for a
  partner in backoff should not cost a pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.sample import sample_facts, two_node_federation

N = int(os.environ.get("CREATE_N", "1600"))
GROUP, CASES = 16, 4
A, B = "420106", "320982"


class _Counts:
    calls = 0
    loop_commits = 0


class _CountingConnection(sqlite3.Connection):
    """Counts the calls the stores make; commits on the main (event loop) thread."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        _Counts.calls += 1
        if (
            sql.strip().upper() == "COMMIT"
            and threading.current_thread() is threading.main_thread()
        ):
            _Counts.loop_commits += 1
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        _Counts.calls += 1
        return super().executemany(sql, *args)


@contextlib.contextmanager
def _counting() -> Iterator[None]:
    """``sqlite3.connect`` hands out counting connections until the block ends."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real(*args, factory=_CountingConnection, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = real


def _crypto_create(fed: Any, n: int) -> float:
    """CPU seconds of the crypto of creating one packet, one at a time."""
    from relay.core.packets import build_packet

    signer = fed.pki.keys[A].seal
    recipient = fed.pki.keys[B].hpke_keys[0].public_key()
    at = fed.clock()
    cpu0 = time.process_time()
    for i in range(n):
        facts = sample_facts(i, at, A, B)
        build_packet(facts, _content(i), [], signer=signer, recipient=recipient, at=at)
    return (time.process_time() - cpu0) / n


def _content(i: int) -> dict[str, object]:
    return {"n": i, "applicant": "张三", "note": "x" * 512}


async def _scenario(base: Path) -> list[dict[str, object]]:
    fed = two_node_federation(base)
    try:
        node = fed.start(A)
        fed.start(B)

        async def create(i: int) -> object:
            return await node.create_packet(
                to=B, case_id=f"case-{i % CASES}", matter="food-business-licence",
                action="submit", mode="proxy_receipt", content=_content(i),
            )  # fmt: skip

        await asyncio.gather(*(create(i) for i in range(GROUP)))  # warm: connections, caches
        crypto = _crypto_create(fed, 300)
        groups = max(N // GROUP, 1)
        _Counts.calls = _Counts.loop_commits = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for g in range(groups):
            await asyncio.gather(*(create(g * GROUP + i) for i in range(GROUP)))
        cpu = (time.process_time() - cpu0) / (groups * GROUP)
        seconds = time.perf_counter() - t0
        down = await _partner_down(fed, node, create, groups)
    finally:
        fed.close()
    n = groups * GROUP
    return [
        {
            "measure": f"create {n} packets in one process, groups of {GROUP} over {CASES} cases",
            "seconds": seconds,
            "per_s": n / seconds,
            "note": f"CPU {cpu * 1000:.2f} ms/packet = {cpu / crypto:.1f} x the crypto of "
            f"creating one ({crypto * 1000:.2f} ms here)",
        },
        {
            "measure": "SQLite calls per created packet; commits per group on the loop thread",
            "seconds": "",
            "per_s": "",
            "note": f"{_Counts.calls / n:.2f} calls per packet; "
            f"{_Counts.loop_commits / groups:.2f} commits per group on the event loop",
        },
        down,
    ]


async def _partner_down(
    fed: Any, node: Any, create: Callable[[int], Awaitable[object]], groups: int
) -> dict[str, object]:
    """The creation again with ``run_outbox`` running and B down, in a backoff (of
    the fake clock, which stands still) that outlasts the run."""
    from datetime import timedelta

    from relay.core.outbox import OutboxPolicy

    long = timedelta(days=1000)  # full jitter: a backoff surely longer than the run
    node.set_outbox_policy(
        OutboxPolicy(batch_size=64, base_delay=long, max_delay=2 * long, idle_poll=long)
    )
    fed.network.down.add(B)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run_outbox(stop))
    try:
        await asyncio.gather(*(create(i) for i in range(GROUP)))  # this one fails: backoff
        async with asyncio.timeout(60):
            while B not in node.unreachable_partners() or node.next_outbox_pass is None:
                await asyncio.sleep(0.01)
        passes = node.outbox_passes
        _Counts.calls = 0
        cpu0 = time.process_time()
        for g in range(groups):
            await asyncio.gather(*(create(g * GROUP + i) for i in range(GROUP)))
        cpu = (time.process_time() - cpu0) / (groups * GROUP)
        passes = node.outbox_passes - passes
    finally:
        stop.set()
        await task
    n = groups * GROUP
    return {
        "measure": f"the same with the outbox task running and B down (backoff), {n} packets",
        "seconds": "",
        "per_s": "",
        "note": f"CPU {cpu * 1000:.2f} ms/packet; {_Counts.calls / n:.2f} SQLite calls per "
        f"packet; {passes / groups:.2f} outbox passes per group",
    }


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-create-") as tmp, _counting():
        return asyncio.run(_scenario(Path(tmp)))
