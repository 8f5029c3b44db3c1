"""What a Prometheus scrape costs a busy node: the outbox gauges at scale.

A node's outbox keeps every packet it ever sent (delivered ones included). The gauge
``tongban_outbox_packets`` / ``tongban_outbox_oldest_age_seconds`` is computed at scrape
time by :meth:`relay.core.sqlite_store.SqliteStore.outbox_depth`: a grouped count over the
``outbox_open`` index plus one primary-key read per partner. Rows: a real store in a
temporary directory with ``HISTORY`` delivered packets and ``OPEN`` queued ones spread
over 45 partners; ``outbox_depth`` is timed against a baseline that reads the whole
table (``SELECT peer, state, summary FROM outbox``, what a naive gauge would do) in the
same run; ``ratio`` = baseline time / measured time. Also the full ``/metrics`` body
(registry exposition with every gauge source of a bare relay node).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay.core.sqlite_store import SqliteStore
from relay.metrics import NodeMetrics, outbox_gauges

HISTORY = 200_000
OPEN = 900
PARTNERS = [f"{320900 + i}" for i in range(45)]
REPEAT = 20


def _fill(conn: sqlite3.Connection, now: datetime) -> None:
    summary = {
        "packet_id": "", "digest": "0" * 64, "case_id": "C", "sender": "420106",
        "receiver": "", "matter": "food-business-licence", "action": "submit",
        "mode": "proxy_receipt", "seq": 1, "created": now.timestamp(),
        "expires": (now + timedelta(days=30)).timestamp(), "attachments": [],
    }  # fmt: skip
    rows = []
    for n in range(HISTORY + OPEN):
        peer = PARTNERS[n % len(PARTNERS)]
        state = "queued" if n >= HISTORY else "delivered"
        created = now - timedelta(seconds=HISTORY + OPEN - n)
        text = json.dumps({**summary, "packet_id": f"p{n}", "receiver": peer,
                           "created": created.timestamp()})  # fmt: skip
        rows.append((f"p{n}", peer, f"C{n}", 1, "0" * 64, text, state,
                     (now + timedelta(days=30)).timestamp()))  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state, expires)"
        " VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.execute(
        "INSERT INTO outbox_bodies (ord, token, own_copy) SELECT ord, 'tok', 'own' FROM outbox"
    )
    conn.execute("COMMIT")


def _time(fn: object) -> float:
    start = time.perf_counter()
    for _ in range(REPEAT):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / REPEAT


def run() -> list[dict[str, object]]:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp))
        try:
            _fill(store.connection, now)
            depth = store.outbox_depth()
            assert sum(n for n, _ in depth.values()) == OPEN
            measured = _time(store.outbox_depth)
            baseline = _time(
                lambda: store.connection.execute(
                    "SELECT peer, state, summary FROM outbox"
                ).fetchall()
            )
            metrics = NodeMetrics(lambda: now)
            metrics.add_gauges("outbox", outbox_gauges(store.outbox_depth))
            scrape = _time(metrics.exposition)
            size = len(metrics.exposition())
        finally:
            store.close()
    return [
        {
            "case": f"outbox_depth, {HISTORY:,} delivered + {OPEN} open, 45 partners",
            "ms": measured * 1000,
            "baseline_ms": baseline * 1000,
            "ratio": baseline / measured,
        },
        {
            "case": "whole /metrics body (outbox gauges only)",
            "ms": scrape * 1000,
            "bytes": size,
        },
    ]
