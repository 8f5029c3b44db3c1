"""The cost curve (issue 12): CPU per packet as the work around it grows.

Two relay nodes in one process (FakeNetwork, real SQLite files with
``synchronous=FULL``); each measurement creates ``N`` packets at A and delivers them to
B (A's outbox passes, B's acceptance pipeline, receipts committed and verified on both
sides) and reports the process CPU time per packet (both nodes, their worker threads
included). The curve holds the measurement constant and grows one thing at a time:

- **queued**: 0 / 1,000 / 10,000 packets already queued at A for a third node that is
  down (backing off), so they stay in A's outbox while the N go to B;
- **stored**: 0 / 100,000 packets already delivered (A's outbox) and accepted (B's
  inbox) — the history of a node that has run for a while; and the CPU of B's survey
  catch-up at start (``relay.http.survey_cases.collect_reports``, its cursor at the end
  of the inbox) with and without that history, beside the whole-inbox read it replaced;
- **open cases**: with 1,000 cases open (a packet each already sent), the N packets in
  1 case, or spread over the 1,000. The two alternate for ``CASE_ROUNDS`` rounds; each
  row is the median of its rounds and ``vs first`` the median of the rounds' ratios
  (one round of each read 1.11-1.34 in runs of the same code). Spread over many cases,
  the sender writes 23.7 WAL frames a packet instead of 19.5 (the receiver 3.2 instead
  of 3.1), mostly for the case heads: a packet that is its case's only open one gives
  the case a row of ``outbox_heads`` (the table and its three indexes) when it is
  created and takes it away when it is delivered, where one case keeps its head; and a
  batch dirties a page of the case-keyed indexes per case. Bounded by the packets, not
  by the cases open;
- **case history**: two offices with the case layer mounted (real case desks, the
  admission check judging every case packet before the relay accepts it): N case
  events (complaints) in one case that has 0, or 1,000, earlier packets (status notes
  between the offices, sent for real, accepted and applied), or 1,000 earlier events
  (complaints). Each complaint adds an event to the case copy; the store keeps the
  copies it used last decoded and folded and writes the new event's row alone (a case's
  events are rows of their own), so a step costs the same however many events the case
  holds.

The backlog and the history are written into the SQLite files directly (valid rows,
quickly), then the nodes restart on their files. The goal is every row within ±20% of
the first row of its group (``vs first``). ``FLAT_N`` sets N (default 1,000: with 500,
the ~1.3 CPU-seconds a row measured let a 2-core machine put the 100,000-stored row at
1.04-1.30 of its first in runs of the same code; with 1,000 at 0.92-1.07, with 2,000
at 1.02),
``FLAT_SCALE`` divides the sizes (a smoke run uses a large value), ``FLAT_GROUPS``
picks groups by name (comma-separated, default all).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

A, B, C = "420106", "320982", "371422"


GROUPS = ("queued", "stored", "cases", "case history")
CASE_ROUNDS = 3
"""Rounds of the open-cases group (see the module docstring)."""


def _sizes() -> tuple[int, int]:
    return int(os.environ.get("FLAT_N", "1000")), max(1, int(os.environ.get("FLAT_SCALE", "1")))


def _groups() -> set[str]:
    picked = {g.strip() for g in os.environ.get("FLAT_GROUPS", "").split(",") if g.strip()}
    unknown = picked - set(GROUPS)
    if unknown:
        raise ValueError(f"FLAT_GROUPS: no group {sorted(unknown)}; groups: {GROUPS}")
    return picked or set(GROUPS)


def _federation(base: Path) -> Any:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "relay_core"))
    from relay_core_support import FakeAgreement, FakeClock, Federation, make_pki

    from relay.core.fakes import FakeNetwork
    from relay.core.outbox import OutboxPolicy

    fed = Federation(
        pki=make_pki(base / "pki"), root=base, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)), policy=OutboxPolicy(batch_size=64),
    )  # fmt: skip
    for node in (A, B, C):
        fed.start(node)
    return fed


async def _create(fed: Any, to: str, case: str, n: int) -> Any:
    return await fed.nodes[A].create_packet(
        to=to, case_id=case, matter="food-business-licence", action="submit",
        mode="proxy_receipt", content={"n": n, "applicant": "张三", "note": "x" * 256},
    )  # fmt: skip


async def _measure(fed: Any, label: str, n: int, cases: int) -> float:
    """CPU seconds per packet to create ``n`` packets at A over ``cases`` cases and
    deliver them all to B."""
    a = fed.nodes[A]
    start = time.process_time()
    for i in range(n):
        await _create(fed, B, f"{label}-{i % cases}", i)
    while fed.stores[A].head_due(B)[0]:  # an index probe, not a read of the outbox
        await a.deliver_once()
    return (time.process_time() - start) / n


def _seed_rows(fed: Any, node: str, *steps: tuple[str, list[tuple[Any, ...]]]) -> None:
    fed.stores[node].close()
    conn = sqlite3.connect(fed.root / node / "relay.sqlite3")
    with conn:
        for sql, rows in steps:
            conn.executemany(sql, rows)
    conn.close()
    fed.start(node)  # back on its files (the outbox heads are rebuilt at open)


_OUTBOX_ROWS = (
    "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state, expires,"
    " receipt) VALUES (?,?,?,?,?,?,?,?,?)"
)
_OUTBOX_BODIES = (
    "INSERT INTO outbox_bodies (ord, token, own_copy)"
    " SELECT ord, ?, 'own' FROM outbox WHERE packet_id = ?"
)


def _template(fed: Any) -> tuple[str, str]:
    """A real packet's token and summary JSON, to copy into seeded rows."""
    from relay.core.sqlite_schema import summary_json

    [item] = fed.nodes[A].list_outbox(peer=B)[:1]
    out = fed.stores[A].outgoing(item.summary.packet_id)
    return out.token, summary_json(item.summary)


def _seed_backlog(fed: Any, count: int, token: str, summary: str, expires: float) -> None:
    rows = [
        (str(uuid.uuid4()), C, f"backlog-{i // 10}", i % 10 + 1, "d" * 64, summary,
         "queued", expires, None)
        for i in range(count)
    ]  # fmt: skip
    _seed_rows(fed, A, (_OUTBOX_ROWS, rows), (_OUTBOX_BODIES, [(token, r[0]) for r in rows]))


def _seed_history(fed: Any, count: int, token: str, summary: str, at: float) -> None:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    _seed_rows(
        fed, A,
        (_OUTBOX_ROWS, [(p, B, f"old-{i}", 1, "d" * 64, summary, "delivered", at, "r")
                        for i, p in enumerate(ids)]),
        (_OUTBOX_BODIES, [(token, p) for p in ids]),
    )  # fmt: skip
    _seed_rows(
        fed, B,
        ("INSERT INTO inbox (packet_id, sender, case_id, seq, digest, token, summary,"
         " received_at, receipt, log_index) VALUES (?,?,?,?,?,?,?,?,?,?)",
         [(p, A, f"old-{i}", 1, "d" * 64, token, summary, at, "r", None)
          for i, p in enumerate(ids)]),
    )  # fmt: skip


Row = Callable[..., float]


async def _start_catch_up(fed: Any, reports: Path) -> float:
    """CPU seconds of B's survey catch-up at start (in the future enough that every
    packet has settled, so that its cursor moves to the end)."""
    from relay.http.survey_cases import SETTLE, collect_reports

    at = fed.clock() + SETTLE + timedelta(seconds=1)
    cpu0 = time.process_time()
    # no stored packet is a survey report: none is opened, so neither the trust bundle
    # nor the database is used
    await collect_reports(
        fed.nodes[B],
        reports,
        me=B,
        bundle=None,  # type: ignore[arg-type]
        at=at,
        database=None,  # type: ignore[arg-type]
        seen=set(),
    )
    return time.process_time() - cpu0


async def _scenario(base: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def row(
        group: str,
        what: str,
        cpu: float,
        first: float | None,
        unit: str = "cpu ms/packet",
        ratio: float | None = None,
    ) -> float:
        if ratio is None:
            ratio = 1.0 if first is None else cpu / first
        rows.append({"group": group, "measure": what, unit: cpu * 1000, "vs first": ratio})
        return cpu

    groups = _groups()
    if groups & {"queued", "stored", "cases"}:
        await _relay_groups(base / "relay", groups, row)
    if "case history" in groups:
        await _case_history(base / "cases", row)
    return rows


async def _relay_groups(base: Path, groups: set[str], row: Row) -> None:
    n, scale = _sizes()
    fed = _federation(base)
    try:
        fed.network.down.add(C)
        await _measure(fed, "warm", max(n // 5, 10), 10)  # caches, first-time paths
        token, summary = _template(fed)
        expires = (fed.clock() + timedelta(days=30)).timestamp()
        await _create(fed, C, "backlog-probe", 0)  # C is down: A backs off from it
        await fed.nodes[A].deliver_once()

        first = row("queued", "0 queued for a partner that is down", await _measure(
            fed, "q0", n, 50), None)  # fmt: skip
        for queued in (1_000 // scale, 10_000 // scale) if "queued" in groups else ():
            _seed_backlog(fed, queued, token, summary, expires)
            await fed.nodes[A].deliver_once()  # the restarted node learns C is down
            row("queued", f"{queued:,} queued", await _measure(fed, f"q{queued}", n, 50), first)
            _seed_rows(fed, A, *(
                (f"DELETE FROM {table} WHERE ord IN (SELECT ord FROM outbox"
                 " WHERE peer = ? AND case_id LIKE ?)", [(C, "backlog-%")])
                for table in ("outbox_bodies", "outbox")
            ))  # fmt: skip

        if "stored" in groups:
            first = row("stored", "0 stored", await _measure(fed, "s0", n, 50), None)
            reports = base / "survey-reports"
            await _start_catch_up(fed, reports)  # its cursor: the end of the inbox
            start = await _start_catch_up(fed, reports)
            stored = 100_000 // scale
            _seed_history(fed, stored, token, summary, fed.clock().timestamp())
            row("stored", f"{stored:,} stored", await _measure(fed, "s1", n, 50), first)
            once = await _start_catch_up(fed, reports)  # reads the new history once
            again = await _start_catch_up(fed, reports)
            cpu0 = time.process_time()
            fed.nodes[B].list_inbox()
            whole = time.process_time() - cpu0
            starts = (
                ("survey catch-up at start, 0 stored", start, None),
                (f"the first start after {stored:,} more (each read once)", once, start),
                ("the next start", again, start),
                (f"reading the whole inbox of {stored:,}, as a start did before", whole, start),
            )
            for what, cpu, base_cpu in starts:
                row("stored", what, cpu, base_cpu, unit="cpu ms/start")

        if "cases" in groups:
            many = 1_000 // scale
            await _measure(fed, "cN", many, many)  # every case opened: one packet each
            one, spread = [], []
            for r in range(CASE_ROUNDS):  # in turn: a machine that drifts favours neither
                one.append(await _measure(fed, f"c1-{r}", n, 1))
                spread.append(await _measure(fed, "cN", n, many))
            first = row("cases", "1 open case", statistics.median(one), None)
            ratio = statistics.median(s / o for o, s in zip(one, spread, strict=True))
            row("cases", f"{many:,} open cases", statistics.median(spread), first, ratio=ratio)
    finally:
        fed.close()


async def _case_history(base: Path, row: Row) -> None:
    """N complaints in a fresh case, then in a case with 1,000 earlier packets."""
    n, scale = _sizes()
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cases"))
    from casekit import HANDLING
    from casekit_offices import Clock, make_offices, make_pki

    from relay.cases.model import EventKind

    clock = Clock()
    offices = make_offices(make_pki(base / "pki"), base, clock)
    r = offices.r

    async def deliver() -> None:
        while offices.r.store.head_due(HANDLING)[0]:  # an index probe, not a read
            await r.relay.deliver_once()

    async def open_case() -> str:
        opened = await r.desk.open_case(
            matter="food-business-licence", mode="proxy_receipt", handling=HANDLING
        )
        await deliver()
        return str(opened.record.case.header.case_id)

    async def complaints(case_id: str, count: int) -> float:
        start = time.process_time()
        for i in range(count):
            await r.desk.act(case_id, EventKind.COMPLAIN, {"text": f"第{i}次催办：材料已交齐"})
            if i % 64 == 63:
                await deliver()
        await deliver()
        return (time.process_time() - start) / count

    try:
        await complaints(await open_case(), max(n // 5, 10))  # warm
        fresh, long = await open_case(), await open_case()
        earlier = 1_000 // scale
        for i in range(earlier):
            await r.relay.create_packet(
                to=HANDLING, case_id=long, matter="food-business-licence",
                action="status-update", mode="proxy_receipt",
                content={"note": f"第{i}份材料已寄出", "applicant": "张三"},
            )  # fmt: skip
            if i % 64 == 63:
                await deliver()
        await deliver()
        first = row("case history", "0 earlier packets in the case", await complaints(
            fresh, n), None)  # fmt: skip
        row("case history", f"{earlier:,} earlier packets in the case", await complaints(
            long, n), first)  # fmt: skip
        grown = await open_case()
        await complaints(grown, 1_000 // scale)
        row("case history", f"{1_000 // scale:,} earlier events in the case", await complaints(
            grown, n), first)  # fmt: skip
    finally:
        offices.close()


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-flat-") as tmp:
        return asyncio.run(_scenario(Path(tmp)))


if __name__ == "__main__":
    for r in run():
        print(r)
