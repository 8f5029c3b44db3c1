"""What an outgoing packet costs the sender's SQLite file (issue 12): bytes written to
the WAL and CPU in the store, from creation to delivery.

One relay node A (``RelayNode`` on a real SQLite file, ``synchronous=FULL``) creates
``OUTBOX_N`` packets (default 800) in groups of 16 over 4 cases (group commit), then
delivers them to B (in-process fake network, batches of 64). Checkpoints are off on A's
connections (``wal_autocheckpoint=0``), so the ``-wal`` file grows by exactly what
each phase writes. Reported per packet, for creation and for delivery (queued → in
flight → delivered with its receipt): WAL bytes, and CPU in A's store calls (thread
time of the calls themselves: B's receiving and the crypto are not counted). The size
of the packet (``token``) and of the sender's own copy are printed for scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.sample import two_node_federation

N = int(os.environ.get("OUTBOX_N", "800"))
GROUP, CASES = 16, 4
A, B = "420106", "320982"


@contextlib.contextmanager
def _no_checkpoints() -> Iterator[None]:
    """``sqlite3.connect`` hands out connections that never checkpoint on their own."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real(*args, **kwargs)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = real


class _StoreClock:
    """Thread CPU time spent inside some methods of one store."""

    def __init__(self, store: Any, names: tuple[str, ...]) -> None:
        self.seconds = 0.0
        for name in names:
            setattr(store, name, self._timed(getattr(store, name)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - t0

        return timed


def _wal(fed: Any) -> int:
    return int((fed.root / A / "relay.sqlite3-wal").stat().st_size)


async def _scenario(base: Path) -> list[dict[str, object]]:
    fed = two_node_federation(base)
    try:
        node = fed.start(A)
        fed.start(B)
        store = fed.stores[A]

        async def create(i: int) -> Any:
            return await node.create_packet(
                to=B, case_id=f"case-{i % CASES}", matter="food-business-licence",
                action="submit", mode="proxy_receipt",
                content={"n": i, "applicant": "张三", "note": "x" * 512},
            )  # fmt: skip

        async def deliver() -> None:
            async with asyncio.timeout(600):
                while store.has_open():
                    await node.deliver_once()

        await asyncio.gather(*(create(i) for i in range(GROUP)))  # warm: connections, caches
        await deliver()
        created = _StoreClock(store, ("enqueue_many",))
        sending = _StoreClock(store, ("due_rows", "outgoing", "update_outbox"))
        groups = max(N // GROUP, 1)
        n = groups * GROUP
        wal0 = _wal(fed)
        for g in range(groups):
            last = await asyncio.gather(*(create(g * GROUP + i) for i in range(GROUP)))
        wal1 = _wal(fed)
        await deliver()
        wal2 = _wal(fed)
        out = store.outgoing(last[-1].packet_id)
        assert out is not None
        assert out.item.receipt is not None
        size = f"packet {len(out.token):,} B, own copy {len(out.own_copy):,} B"
    finally:
        fed.close()
    return [
        {
            "measure": f"create {n} packets (groups of {GROUP}, {CASES} cases)",
            "WAL B/packet": (wal1 - wal0) / n,
            "store CPU ms/packet": created.seconds * 1000 / n,
            "note": size,
        },
        {
            "measure": "deliver them (batches of 64): queued -> in flight -> delivered",
            "WAL B/packet": (wal2 - wal1) / n,
            "store CPU ms/packet": sending.seconds * 1000 / n,
            "note": "due_rows + outgoing + update_outbox",
        },
    ]


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp, _no_checkpoints():
        return asyncio.run(_scenario(Path(tmp)))
