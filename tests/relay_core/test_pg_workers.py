"""Several workers of one node on one PostgreSQL database (issue 15): claims of due
case heads under leases, a dead worker's lease taken over, gap-free audit appends from
concurrent receive transactions, and one inbox row (one receipt) for a packet two
workers receive at once. Real PostgreSQL, real threads, real row and advisory locks;
every wait is on a condition with a generous deadline."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    FakeClock,
    Federation,
    pg_schema_url,
    send,
)

from relay.audit.store import APPEND_LOCK, AuditStore, create_schema
from relay.audit.store import append as sqlite_append
from relay.core.model import OutboxState, PacketSummary
from relay.core.pg_store import PgStore
from relay.core.service import RelayNode
from relay.core.store import NewOutgoing, OutboxUpdate

PEER = DAFENG
LEASE = timedelta(seconds=60)
DEADLINE = 60.0


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
def worker_url(relay_core_database: str) -> str:
    return pg_schema_url(relay_core_database, f"w_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def workers(worker_url: str, tmp_path: Path) -> Iterator[Callable[[str, FakeClock], PgStore]]:
    opened: list[PgStore] = []

    def open_worker(name: str, clock: FakeClock) -> PgStore:
        store = PgStore(
            worker_url, blobs=tmp_path / "blobs", work=tmp_path, worker=name, lease=LEASE,
            clock=clock,
        )  # fmt: skip
        opened.append(store)
        return store

    yield open_worker
    for store in opened:
        store.close()


def packet(clock: FakeClock, case: str) -> Callable[[int, str | None], NewOutgoing]:
    def build(seq: int, prev: str | None) -> NewOutgoing:
        pid = str(uuid.uuid4())
        summary = PacketSummary(
            packet_id=pid, digest=uuid.uuid4().hex * 2, case_id=case, sender=WUCHANG,
            receiver=PEER, matter=MATTER, action=ACTION, mode=MODE, seq=seq,
            created=clock(), expires=clock() + timedelta(days=1),
        )  # fmt: skip
        return NewOutgoing(summary, f"token-{pid}", "own-copy", f"sent {pid}".encode())

    return build


def claim_all(
    store: PgStore, clock: FakeClock, claimed: set[str], start: threading.Barrier
) -> None:
    """Claim due cases in rounds of 8, as the sender does within one pass."""
    start.wait(timeout=DEADLINE)
    while rows := store.due_rows(PEER, clock(), 8, busy=claimed):
        assert {r.case_id for r in rows}.isdisjoint(claimed)
        claimed.update(r.case_id for r in rows)


def test_two_workers_claiming_at_once_never_get_the_same_case(workers: Any) -> None:
    clock = FakeClock()
    a, b = workers("a", clock), workers("b", clock)
    cases = [f"case-{i:03}" for i in range(60)]
    for case in cases:
        for _ in range(2):
            a.enqueue(PEER, case, packet(clock, case))
    for _ in range(3):  # three rounds, each from a fresh state of the leases
        got: dict[str, set[str]] = {"a": set(), "b": set()}
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=claim_all, args=(s, clock, got[s.worker], start))
            for s in (a, b)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=DEADLINE)
        assert not any(t.is_alive() for t in threads)
        assert got["a"].isdisjoint(got["b"])
        assert got["a"] | got["b"] == set(cases)
        clock.advance(seconds=LEASE.total_seconds() + 1)  # every lease runs out


def test_a_dead_workers_cases_are_taken_over_from_the_head_once_its_lease_runs_out(
    workers: Any,
) -> None:
    clock = FakeClock()
    a, b = workers("a", clock), workers("b", clock)
    for case in ("c1", "c2"):
        for _ in range(3):
            a.enqueue(PEER, case, packet(clock, case))
    taken = a.due_rows(PEER, clock(), 10)
    assert [(r.case_id, r.seq) for r in taken] == [(c, s) for c in ("c1", "c2") for s in (1, 2, 3)]
    a.update_outbox(
        [OutboxUpdate(r.packet_id, OutboxState.IN_FLIGHT, attempted=True) for r in taken]
    )
    # worker a dies here, its packets in flight
    clock.advance(seconds=LEASE.total_seconds() - 1)
    assert b.due_rows(PEER, clock(), 10) == []
    assert b.expired_rows(clock() + timedelta(days=2), 10) == []  # nor dead-lettered by b
    has_open, due = b.head_due(PEER)
    assert has_open
    assert due is not None
    assert due > clock()  # b sleeps until the lease ends
    clock.advance(seconds=2)
    again = b.due_rows(PEER, clock(), 10)
    assert [(r.case_id, r.seq) for r in again] == [(r.case_id, r.seq) for r in taken]
    assert a.due_rows(PEER, clock(), 10) == []  # a, back, finds them b's


def test_a_case_is_released_when_its_last_claimed_packet_is_settled_not_before(
    workers: Any,
) -> None:
    clock = FakeClock()
    a, b = workers("a", clock), workers("b", clock)
    for _ in range(3):
        a.enqueue(PEER, "c1", packet(clock, "c1"))
    first, second = a.due_rows(PEER, clock(), 2)
    a.update_outbox([OutboxUpdate(first.packet_id, OutboxState.IN_FLIGHT, attempted=True)])
    a.update_outbox([OutboxUpdate(first.packet_id, OutboxState.DELIVERED, receipt="r1")])
    assert b.due_rows(PEER, clock(), 5) == []  # the second claimed packet is still a's
    a.update_outbox([OutboxUpdate(second.packet_id, OutboxState.DELIVERED, receipt="r2")])
    assert [r.seq for r in b.due_rows(PEER, clock(), 5)] == [3]
    # a failed attempt gives the case up at once, though the packet stays open
    [third] = a.open_rows()
    b.update_outbox(
        [OutboxUpdate(third.packet_id, OutboxState.IN_FLIGHT, reason="peer-unavailable")]
    )
    assert [r.seq for r in a.due_rows(PEER, clock(), 5)] == [3]


def test_workers_enqueueing_in_one_case_at_once_hand_out_each_seq_once(workers: Any) -> None:
    clock = FakeClock()
    stores = [workers(name, clock) for name in ("a", "b", "c")]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def enqueue_many(store: PgStore) -> None:
        try:
            start.wait(timeout=DEADLINE)
            for _ in range(10):
                store.enqueue_many([(PEER, "shared", packet(clock, "shared"))] * 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue_many, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert not errors
    assert sorted(r.seq for r in stores[0].open_rows()) == list(range(1, 61))


def wait_for_waiters(conn: psycopg.Connection[Any], count: int) -> None:
    """Until ``count`` sessions wait for an advisory lock."""
    deadline = time.monotonic() + DEADLINE
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if row is not None and row[0] >= count:
            return
        assert time.monotonic() < deadline, f"{count} appenders never queued for the log"
        time.sleep(0.01)


def test_receive_transactions_appending_at_once_get_gap_free_indexes(
    workers: Any, worker_url: str
) -> None:
    clock = FakeClock()
    stores = [workers(f"w{i}", clock) for i in range(4)]
    reached: list[threading.Event] = [threading.Event() for _ in stores]
    indexes: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def receive(i: int) -> None:
        try:
            with stores[i].receiving() as tx:
                assert tx.inbox_lookup(f"p{i}") is None  # the unserialised part runs
                assert tx.recv_sequence(WUCHANG, "c") is None
                reached[i].set()
                indexes[i] = [tx.audit_append(f"leaf {i}.{k}".encode()) for k in range(3)]
        except BaseException as exc:
            errors.append(exc)

    with psycopg.connect(worker_url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        threads = [threading.Thread(target=receive, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for event in reached:
            assert event.wait(timeout=DEADLINE)  # all got this far while the log was held
        wait_for_waiters(holder, len(stores))
        holder.execute("COMMIT")
        for t in threads:
            t.join(timeout=DEADLINE)
    assert not errors
    assert sorted(i for got in indexes.values() for i in got) == list(range(12))
    for got in indexes.values():  # each transaction's leaves together, in order
        assert got == list(range(got[0], got[0] + 3))
    # the tree the workers built is the one a single appender builds from those leaves
    log = AuditStore(stores[0].connection)
    alone = sqlite3.connect(":memory:", isolation_level=None)
    create_schema(alone)
    alone.execute("BEGIN")
    for index in range(12):
        sqlite_append(alone, log.leaf(index))
    alone.execute("COMMIT")
    assert log.root() == AuditStore(alone).root()


def worker_on(fed: Federation, node: str, store: PgStore) -> RelayNode:
    """Another worker of ``node`` on ``store``."""
    return RelayNode(
        node_id=node, keys=fed.pki.keys[node], bundle=fed.pki.bundle,
        directory=fed.directory(), authorizer=fed.agreement, store=store,
        link=fed.network.link(node), clock=fed.clock, rng=random.Random(3),
        policy=fed.policy,
    )  # fmt: skip


def test_two_workers_receiving_the_same_batch_at_once_keep_one_copy_and_one_receipt(
    federation: Federation, relay_core_database: str
) -> None:
    fed = federation
    ids = asyncio.run(send(fed, WUCHANG, DAFENG, "case-twice", n=3))
    tokens = [fed.stores[WUCHANG].outgoing(pid).token for pid in ids]  # type: ignore[union-attr]
    assert fed.open_store is not None
    other = fed.open_store(DAFENG)  # a second worker: same keys, same database
    fed.stores["second worker"] = other  # closed with the federation
    workers = [fed.nodes[DAFENG], worker_on(fed, DAFENG, other)]
    leaves_before = AuditStore(fed.stores[DAFENG].connection).size()
    answers: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def receive(i: int) -> None:
        try:
            answers[i] = asyncio.run(workers[i].receive_batch(WUCHANG, tokens))
        except BaseException as exc:
            errors.append(exc)

    with psycopg.connect(relay_core_database, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        threads = [threading.Thread(target=receive, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        wait_for_waiters(holder, 2)  # both decided to accept, both wait to append
        holder.execute("COMMIT")
        for t in threads:
            t.join(timeout=DEADLINE)
    assert not errors
    assert answers[0] == answers[1]
    inbox = fed.nodes[DAFENG].list_inbox(case_id="case-twice")
    assert [i.summary.packet_id for i in inbox] == ids
    assert [i.receipt for i in inbox] == answers[0]
    log = AuditStore(fed.stores[DAFENG].connection)
    assert log.size() == leaves_before + 2 * len(ids)  # the loser's leaves were undone
    assert {i.log_index for i in inbox} == {leaves_before + 2 * k for k in range(len(ids))}


async def test_a_worker_whose_connection_the_server_dropped_goes_on_with_a_new_one(
    federation: Federation, relay_core_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    fed = federation
    node = fed.nodes[WUCHANG]
    first = await send(fed, WUCHANG, DAFENG, "case-cut")
    backend_pid = fed.stores[WUCHANG].connection.raw.info.backend_pid  # type: ignore[union-attr]
    with psycopg.connect(relay_core_database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
    stop = asyncio.Event()
    task = asyncio.create_task(node.run_outbox(stop))
    try:
        async with asyncio.timeout(DEADLINE):  # the pass on the dropped connection fails
            while "outbox pass failed on storage" not in caplog.text:
                await asyncio.sleep(0.01)
        assert not task.done()
        second = await send(fed, WUCHANG, DAFENG, "case-cut")  # wakes the task
        async with asyncio.timeout(DEADLINE):
            while len(fed.nodes[DAFENG].list_inbox()) < 2:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
    assert [i.summary.packet_id for i in fed.nodes[DAFENG].list_inbox()] == first + second


def test_a_transaction_that_could_not_begin_on_a_dropped_connection_is_not_half_open(
    workers: Any, worker_url: str
) -> None:
    clock = FakeClock()
    store = workers("a", clock)
    with psycopg.connect(worker_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store.connection.raw.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):  # BEGIN meets the dropped connection
        store.enqueue(PEER, "c1", packet(clock, "c1"))
    store.enqueue(PEER, "c1", packet(clock, "c1"))  # on a new connection, from the start
    assert [r.seq for r in store.open_rows()] == [1]


def test_heads_rebuilt_after_a_copy_from_sqlite_find_every_open_case(workers: Any) -> None:
    clock = FakeClock()
    store = workers("a", clock)
    for case in ("c1", "c2"):
        for _ in range(2):
            store.enqueue(PEER, case, packet(clock, case))
    store.connection.execute("DELETE FROM outbox_heads")  # as a copier leaves them
    assert store.due_rows(PEER, clock(), 10) == []
    store.rebuild_heads()
    rows = store.due_rows(PEER, clock(), 10)
    assert [(r.case_id, r.seq) for r in rows] == [("c1", 1), ("c1", 2), ("c2", 1), ("c2", 2)]


def test_an_expiry_in_a_case_another_worker_holds_does_not_wake_this_one_at_once(
    workers: Any,
) -> None:
    """The next wake-up counted the expiry of a queued packet in a case another worker
    holds under its lease, which this worker's expiry pass leaves out: "now", on every
    pass, for as long as the lease (a spin on the event loop)."""
    clock = FakeClock()
    a, b = workers("a", clock), workers("b", clock)
    a.enqueue(PEER, "c1", packet(clock, "c1"))
    clock.advance(days=2)  # past its expiry and any grace
    assert a.due_rows(PEER, clock(), 10)  # a serves it now (say, a long upload)
    grace = timedelta(minutes=10)
    assert b.expired_rows(clock() - grace, 10) == []
    assert b.earliest_expiry() is None  # nothing of b's to expire: no wake-up for it
    assert a.earliest_expiry() is not None  # a's own
    assert a.earliest_expiry(skip={PEER}) is None
