"""The integration tables on both backends (SQLite and a real PostgreSQL): the event
outbox written with the case change, deliveries in order, the personal-data log; and
two workers writing the same event keep one."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from casekit import T0, header
from dbkit import Database

from relay.cases.model import Office
from relay.cases.sqlite_store import SqliteCaseStore
from relay.cases.store import CaseRecord
from relay.cases.workflow import Case
from relay.config import Webhook
from relay.db.migrations import migrate
from relay.integration.events import EventType, IntegrationEvent, sla_event
from relay.integration.store import MIGRATIONS, IntegrationStore, OutboxSink, Read

NODE = "420106"
ALL = frozenset(t.value for t in EventType)
HOOKS = [Webhook("https://a.example/hook", ALL), Webhook("https://b.example/hook", ALL)]


def event(n: int, case_id: str = "WC-1") -> IntegrationEvent:
    return sla_event(NODE, case_id=f"{case_id}-{n}", colour="yellow", matter="m", at=T0)


def test_events_are_stored_once_and_delivered_in_order(database: Database) -> None:
    store = IntegrationStore(database.connect(), NODE, HOOKS)
    assert store.record(event(1), sla_mark=("WC-1-1", "yellow")) is True
    assert store.record(event(1), sla_mark=("WC-1-1", "yellow")) is False
    assert store.record(event(2)) is True
    assert [e["case"] for e in store.events()] == ["WC-1-1", "WC-1-2"]
    [(first_seq, first_event), (second_seq, _)] = store.events_after(0)
    assert store.events_after(0, 1) == [(first_seq, first_event)]
    assert [e["case"] for _, e in store.events_after(first_seq)] == ["WC-1-2"]
    assert store.events_after(second_seq) == []
    assert store.sla_marked("WC-1-1", "yellow")
    assert not store.sla_marked("WC-1-1", "red")
    assert not store.sla_marked("WC-1-2", "yellow")
    assert store.known_event(event(1).id)
    assert not store.known_event(f"{NODE}:sla-yellow:WC-1-3")
    target = HOOKS[0].url
    first = store.next_delivery(target)
    assert first is not None
    assert first.event_id == event(1).id
    store.failed(first.event_id, target, "503", retry_at=T0 + timedelta(seconds=5))
    again = store.next_delivery(target)
    assert again is not None
    assert (again.event_id, again.attempts, again.next_at) == (
        first.event_id, 1, T0 + timedelta(seconds=5),
    )  # fmt: skip
    store.delivered(first.event_id, target, T0)
    second = store.next_delivery(target)
    assert second is not None
    assert second.event_id == event(2).id
    assert second.seq > first.seq
    store.failed(second.event_id, target, "gone", retry_at=None)
    assert store.next_delivery(target) is None
    counts = store.delivery_counts()
    assert (counts[target, "delivered"], counts[target, "parked"]) == (1, 1)
    assert counts[HOOKS[1].url, "pending"] == 2
    assert store.retry_parked(target, T0) == 1
    status = {s["target"]: s for s in store.delivery_status()}
    assert status[target]["pending"] == 1
    store.close()


def test_the_sink_writes_events_with_the_case_change(database: Database) -> None:
    conn = database.connect()
    store = IntegrationStore(conn, NODE, HOOKS)
    cases = SqliteCaseStore(database.connect())
    cases.add_sink(OutboxSink(NODE, HOOKS, lambda: T0))
    cases.create(CaseRecord(Case(header("WC-9"), Office.RECEIVING), None, T0, 1))
    assert [(e["type"], e["case"]) for e in store.events()] == [("case-created", "WC-9")]
    delivery = store.next_delivery(HOOKS[1].url)
    assert delivery is not None
    assert delivery.event_id == f"{NODE}:case-created:WC-9"
    cases.close()
    store.close()


def test_reads_of_personal_data_are_logged_per_applicant(database: Database) -> None:
    store = IntegrationStore(database.connect(), NODE, [])
    at = datetime(2026, 9, 1, 3, tzinfo=UTC)
    store.log_read(Read(at, "clerk-1", "handling", "WC-1", "ID:1", "case"))
    store.log_read(Read(at, "clerk-2", "audit", "WC-2", None, "case"))
    assert [r.who for r in store.reads()] == ["clerk-1", "clerk-2"]
    assert store.reads(applicant="ID:1")[0].at == at
    assert [r.purpose for r in store.reads(case_id="WC-2")] == ["audit"]
    assert store.applicant_of("WC-1") is None
    store.forget_applicant_of("WC-1")
    store.close()


def test_workers_recording_the_same_events_keep_each_once(database: Database) -> None:
    stores = [IntegrationStore(database.connect(), NODE, HOOKS) for _ in range(4)]
    new: list[bool] = []
    errors: list[BaseException] = []

    def work(store: IntegrationStore) -> None:
        try:
            for n in range(20):
                new.append(store.record(event(n)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert new.count(True) == 20
    assert len(stores[0].events()) == 20
    assert stores[0].delivery_counts()[HOOKS[0].url, "pending"] == 20
    for store in stores:
        store.close()


def test_threads_sharing_the_store_each_commit_their_own_writes(database: Database) -> None:
    """The node's scan, its purge and one dispatcher per webhook target write through
    the store from the event loop and from worker threads at once: each write is its
    own whole transaction, none fails or is folded into another's."""
    store = IntegrationStore(database.connect(), NODE, HOOKS)
    failures: list[BaseException] = []
    target = HOOKS[0].url

    def recording(base: int) -> None:
        try:
            for n in range(base, base + 150):
                assert store.record(event(n)) is True
        except BaseException as exc:
            failures.append(exc)

    def delivering() -> None:
        try:
            for _ in range(150):
                delivery = store.next_delivery(target)
                if delivery is not None:
                    store.delivered(delivery.event_id, target, T0)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=recording, args=(b,)) for b in (0, 1000, 2000)]
    threads.append(threading.Thread(target=delivering))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(store.events()) == 450
    assert sum(store.delivery_counts()[target, s] for s in ("pending", "delivered")) == 450
    store.close()


def _steps(conn: sqlite3.Connection, read: Any) -> int:
    counter = [0]

    def tick() -> int:
        counter[0] += 1
        return 0

    conn.set_progress_handler(tick, 50)
    try:
        read()
    finally:
        conn.set_progress_handler(None, 50)
    return counter[0]


def test_counting_deliveries_reads_what_is_pending_not_every_delivery_kept(
    tmp_path: Path,
) -> None:
    """The gauges and the alert board count each target's deliveries at every scrape and
    every look: the same SQLite instructions with 3,000 deliveries taken per target as
    with 3, the counts the same as counting every row."""
    conn = sqlite3.connect(tmp_path / "relay.sqlite3", isolation_level=None)
    store = IntegrationStore(conn, NODE, HOOKS)
    target = HOOKS[0].url

    def deliver(n: int, base: int) -> None:
        for i in range(base, base + n):
            store.record(event(i))
            for hook in HOOKS:
                delivery = store.next_delivery(hook.url)
                assert delivery is not None
                store.delivered(delivery.event_id, hook.url, T0)

    def every_row() -> dict[tuple[str, str], int]:
        counts = dict.fromkeys(store.delivery_counts(), 0)
        for t, state, n in conn.execute(
            "SELECT target, state, count(*) FROM webhook_deliveries GROUP BY target, state"
        ):
            counts[t, state] = n
        return counts

    def reads() -> None:
        store.delivery_counts()
        store.delivery_status()

    deliver(3, 0)
    store.record(event(9999))  # pending at both targets
    assert store.delivery_counts() == every_row()
    before = _steps(conn, reads)
    deliver(3000, 10_000)
    assert store.delivery_counts() == every_row()
    assert store.delivery_counts()[target, "delivered"] == 3003
    assert _steps(conn, reads) <= before + 2
    store.close()


def test_step_2_counts_the_deliveries_taken_before_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "relay.sqlite3", isolation_level=None)
    migrate(conn, "integration", MIGRATIONS[:1])
    conn.executemany(
        "INSERT INTO webhook_deliveries (event_id, target, seq, state, next_at)"
        " VALUES (?, ?, ?, ?, 0)",
        [(f"e{n}", HOOKS[n % 2].url, n, "delivered" if n < 7 else "pending") for n in range(10)],
    )
    store = IntegrationStore(conn, NODE, HOOKS)
    counts = store.delivery_counts()
    assert (counts[HOOKS[0].url, "delivered"], counts[HOOKS[1].url, "delivered"]) == (4, 3)
    assert (counts[HOOKS[0].url, "pending"], counts[HOOKS[1].url, "pending"]) == (1, 2)
    store.close()


def test_an_applicants_reads_are_an_index_range_not_a_scan_of_the_log(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "relay.sqlite3", isolation_level=None)
    store = IntegrationStore(conn, NODE, HOOKS)
    plan = " ".join(
        str(row[-1])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT at, who, purpose, case_id, applicant, what"
            " FROM personal_data_reads WHERE applicant = ? ORDER BY seq",
            ("420106199001011234",),
        )
    )
    assert "personal_data_reads_applicant" in plan, plan
    assert "SCAN personal_data_reads" not in plan
    store.close()
