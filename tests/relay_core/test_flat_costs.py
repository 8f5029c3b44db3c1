"""Flat costs (issue 12): the store work of creating and delivering packets does not
grow with the packets queued for others or the packets delivered before.

The measure is the number of SQLite virtual-machine instructions both nodes' store
connections execute (a progress handler counts them): the same on any machine, under
any load, unlike a time. Before the outbox read only what is due, every pass read every
queued row.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from relay_core_support import DAFENG, NINGJIN, WUCHANG, Federation, send

from relay.cases.model import EventKind


@pytest.fixture
def backend() -> str:
    return "sqlite"  # these tests look into the SQLite file itself


STEP = 100  # the progress handler runs every STEP instructions
HISTORY = 200  # earlier packets in the long-running case


def count_steps(fed: Federation) -> list[int]:
    counter = [0]

    def tick() -> int:
        counter[0] += 1
        return 0  # go on

    for node in (WUCHANG, DAFENG):
        fed.stores[node].connection.set_progress_handler(tick, STEP)
    return counter


async def steps_to_send(fed: Federation, label: str, n: int = 12) -> int:
    counter = count_steps(fed)
    for case in range(4):
        await send(fed, WUCHANG, DAFENG, f"{label}-{case}", n=n // 4)
    for _ in range(50):  # until nothing is open for DAFENG (the backlog for NINGJIN stays)
        if not fed.stores[WUCHANG].head_due(DAFENG)[0]:
            break
        await fed.nodes[WUCHANG].deliver_once()
    assert not fed.stores[WUCHANG].head_due(DAFENG)[0], "not delivered"
    for node in (WUCHANG, DAFENG):
        fed.stores[node].connection.set_progress_handler(None, STEP)
    return counter[0]


def seed(fed: Federation, node: str, *steps: tuple[str, list[tuple[object, ...]]]) -> None:
    fed.stores[node].close()
    conn = sqlite3.connect(Path(fed.root) / node / "relay.sqlite3")
    with conn:
        for sql, rows in steps:
            conn.executemany(sql, rows)
    conn.close()
    fed.start(node)


OUTBOX_ROWS = (
    "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state, expires)"
    " VALUES (?,?,?,?,?,?,?,?)"
)
OUTBOX_BODIES = (
    "INSERT INTO outbox_bodies (ord, token, own_copy)"
    " SELECT ord, ?, 'own' FROM outbox WHERE packet_id = ?"
)


async def test_sending_costs_the_same_with_thousands_queued_and_stored(
    federation: Federation,
) -> None:
    fed = federation
    await steps_to_send(fed, "warm")
    federation.network.down.add(NINGJIN)
    await send(fed, WUCHANG, NINGJIN, "backlog-0")
    await fed.nodes[WUCHANG].deliver_once()  # NINGJIN is down: the outbox backs off
    before = await steps_to_send(fed, "before")

    out = fed.stores[WUCHANG].outgoing(fed.nodes[WUCHANG].list_outbox()[0].summary.packet_id)
    assert out is not None
    token, expires = out.token, out.item.summary.expires.timestamp()
    summary = fed.stores[WUCHANG].connection.execute("SELECT summary FROM outbox").fetchone()[0]
    queued = [
        (str(uuid.uuid4()), NINGJIN, f"backlog-{1 + i // 10}", i % 10 + 1, "d" * 64,
         summary, "queued", expires)
        for i in range(3_000)
    ]  # fmt: skip
    history = [
        (str(uuid.uuid4()), DAFENG, f"old-{i}", 1, "d" * 64, summary, "delivered", expires)
        for i in range(3_000)
    ]  # fmt: skip
    seed(
        fed, WUCHANG, (OUTBOX_ROWS, queued + history),
        (OUTBOX_BODIES, [(token, r[0]) for r in queued + history]),
    )  # fmt: skip
    seed(
        fed, DAFENG,
        ("INSERT INTO inbox (packet_id, sender, case_id, seq, digest, token, summary,"
         " received_at, receipt, log_index) VALUES (?,?,?,?,?,?,?,?,?,?)",
         [(p, WUCHANG, c, s, d, token, j, e, "r", None) for p, _, c, s, d, j, _, e in history]),
    )  # fmt: skip
    after = await steps_to_send(fed, "after")
    # a B-tree one level deeper costs a few steps more per lookup; a read of the 3,000
    # queued rows per pass would cost tens of thousands
    assert after <= before * 1.15, (before, after)
    assert len(fed.stores[WUCHANG].open_rows()) == 3_001  # the backlog is still there


@pytest.mark.parametrize("module", ["bench_flat_costs"])
def test_the_cost_curve_benchmark_runs(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A smoke run (tiny sizes) of the benchmark that prints the curve."""
    import importlib

    monkeypatch.setenv("FLAT_N", "8")
    monkeypatch.setenv("FLAT_SCALE", "500")
    rows = importlib.import_module(f"bench.{module}").run()
    assert [(r["group"], r["measure"]) for r in rows] == [
        ("queued", "0 queued for a partner that is down"),
        ("queued", "2 queued"),
        ("queued", "20 queued"),
        ("stored", "0 stored"),
        ("stored", "200 stored"),
        ("stored", "survey catch-up at start, 0 stored"),
        ("stored", "the first start after 200 more (each read once)"),
        ("stored", "the next start"),
        ("stored", "reading the whole inbox of 200, as a start did before"),
        ("cases", "1 open case"),
        ("cases", "2 open cases"),
        ("case history", "0 earlier packets in the case"),
        ("case history", "2 earlier packets in the case"),
        ("case history", "2 earlier events in the case"),
    ]
    per_packet = [r for r in rows if "cpu ms/packet" in r]
    assert len(per_packet) == 10
    assert all(float(r["cpu ms/packet"]) > 0 for r in per_packet)  # type: ignore[arg-type]
    assert all(float(r["cpu ms/start"]) > 0 for r in rows if r not in per_packet)  # type: ignore[arg-type]


def _case_kit() -> Any:
    """The two case offices of tests/cases (real desks and case stores, the admission
    check installed in each relay core)."""
    folder = str(Path(__file__).resolve().parents[1] / "cases")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import casekit_offices

    return casekit_offices


async def test_receiving_in_a_case_with_a_long_history_costs_the_same(tmp_path: Path) -> None:
    """The admission check judges each case packet against the copy the apply will
    have reached: it reads what is accepted and not yet applied, not every packet the
    case ever received."""
    kit = _case_kit()
    offices = kit.make_offices(kit.make_pki(tmp_path / "pki"), tmp_path, kit.Clock())
    r, h = offices.r, offices.h
    conns = [o.store.connection for o in (r, h)] + [o.cases.connection for o in (r, h)]

    async def deliver() -> None:
        while r.store.head_due(h.node_id)[0]:
            await r.relay.deliver_once()

    async def open_case() -> str:
        opened = await r.desk.open_case(
            matter="food-business-licence", mode="proxy_receipt", handling=h.node_id
        )
        await deliver()
        return str(opened.record.case.header.case_id)

    async def steps_to_complain(case_id: str) -> int:
        counter = [0]

        def tick() -> int:
            counter[0] += 1
            return 0

        for conn in conns:
            conn.set_progress_handler(tick, STEP)
        for i in range(6):
            await r.desk.act(case_id, EventKind.COMPLAIN, {"text": f"第{i}次催办"})
        await deliver()
        for conn in conns:
            conn.set_progress_handler(None, STEP)
        assert len(h.desk.get(case_id).case.view.complaints) == 6, "not applied"
        return counter[0]

    try:
        await steps_to_complain(await open_case())  # warm: first-time paths
        fresh, long = await open_case(), await open_case()
        for i in range(HISTORY):  # status notes between the offices: accepted, applied
            await r.relay.create_packet(
                to=h.node_id, case_id=long, matter="food-business-licence",
                action="status-update", mode="proxy_receipt", content={"note": f"第{i}份"},
            )  # fmt: skip
        await deliver()
        assert len(h.relay.list_inbox(case_id=long)) == HISTORY + 1
        before = await steps_to_complain(fresh)
        after = await steps_to_complain(long)
    finally:
        offices.close()
    # a read of the case's whole inbox per packet would cost thousands of steps more
    assert after <= before * 1.15, (before, after)


@pytest.mark.parametrize(
    ("module", "size"), [("bench_create", "CREATE_N"), ("bench_outbox_writes", "OUTBOX_N")]
)
def test_the_per_packet_benchmarks_run(
    module: str, size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Smoke runs (one group of packets) of the in-process benchmarks that share the
    two-node set-up of bench/sample.py: each prints rows with a positive measure."""
    import importlib

    bench = importlib.import_module(f"bench.{module}")
    monkeypatch.setattr(bench, "N", 16)
    rows = bench.run()
    assert rows
    measured = [v for r in rows for k, v in r.items() if k != "measure" and isinstance(v, float)]
    assert measured
    assert all(v > 0 for v in measured), rows


async def test_a_received_batch_reads_the_audit_log_once(federation: Federation) -> None:
    """Each accepted packet appends two leaves (the packet, its receipt) in the batch's
    transaction: the log's size and right edge are read once per batch, not per leaf."""
    for case in range(4):
        await send(federation, WUCHANG, DAFENG, f"batch-{case}", n=4)  # one batch of 16
    statements: list[str] = []
    receiver = federation.stores[DAFENG].connection
    receiver.set_trace_callback(statements.append)
    try:
        await federation.nodes[WUCHANG].deliver_once()
    finally:
        receiver.set_trace_callback(None)
    assert len(federation.nodes[DAFENG].list_inbox()) == 16
    sizes = [s for s in statements if "MAX(idx) FROM audit_leaves" in s]
    assert len(sizes) == 1, f"{len(sizes)} reads of the log's size for one batch"
