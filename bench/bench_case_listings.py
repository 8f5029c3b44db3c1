"""Judging every case's SLA clocks as the cases' histories grow (issue 12, flat costs).

The overdue listing, the calendar alert and the ``tongban_cases`` gauge judge the
statutory and complaint clocks of every case of the node. They used to decode every
case's events (``list_cases``) for it; the store now keeps each case's clock facts with
each write (:class:`relay.cases.sla.ClockFacts`) and the listing reads those. Here
``BENCH_CASES`` cases (default 500) on a real SQLite file, each submitted and then
complained about and answered until it holds 3, 21 or 201 events, are judged by a store
that keeps nothing (as after a restart, or for cases not worked on lately): the time
per case both ways. The facts' row should not grow with the events; the whole copies'
does.

The console's work queue (every open console reads it again after a change) is
measured the same way: built from each case's queue entry (its row: queue and clock
facts) against built from the whole copies.

And the work queue as a console asks for it (:meth:`relay.console.http.Console.queue`:
every state, no filter, 200 rows) on a node with ``BENCH_ACTIVE`` cases in progress
(default 200: a whole page) and 0, 1,000 or 5,000 settled ones (concluded: most of a node's cases
after a few years): the milliseconds per computation, against every case's entry
judged one by one (the way before the settled cases were counted on their index).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

N_CASES = int(os.environ.get("BENCH_CASES", "500"))
EVENTS = (3, 21, 201)
N_ACTIVE = int(os.environ.get("BENCH_ACTIVE", "200"))
SETTLED = (0, 1000, 5000)


def _store_with_cases(path: Path, events: int) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cases"))
    from casekit import T0, details_for, header, later

    from relay.cases.model import Event, EventKind, Office
    from relay.cases.sqlite_store import SqliteCaseStore
    from relay.cases.store import CaseRecord
    from relay.cases.workflow import Case, Command, Received, transition

    store = SqliteCaseStore(path)
    for k in range(N_CASES):
        case = Case(header(f"WC-{k:05d}"), Office.RECEIVING)
        case, _ = transition(
            case, Command(EventKind.SUBMIT, details_for(EventKind.SUBMIT, case)), later(0)
        )
        for i in range(1, (events - 1) // 2 + 1):
            at = later(i)
            case, _ = transition(case, Command(EventKind.COMPLAIN, {"text": f"第{i}次催办"}), at)
            answer = {"complaint": i + 1, "answer": "已协调办理", "staff": "clerk-7"}
            event = Event(EventKind.ANSWER_COMPLAINT, Office.HANDLING, i, i + 1, at, answer)
            case, _ = transition(case, Received(event), at)
        store.create(CaseRecord(case, None, T0, 1))
    store.close()


def _per_case(path: Path) -> tuple[float, float]:
    """Seconds per case to judge every case's clocks from the whole copies and from the
    clock facts, each by a fresh store (nothing kept)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cases"))
    from casekit import later

    from agreements.calendar import default_calendar
    from relay.cases.sla import Colour, case_clock, complaint_clock
    from relay.cases.sqlite_store import SqliteCaseStore

    calendar, now = default_calendar(), later(0) + timedelta(days=3)
    store = SqliteCaseStore(path)
    t0 = time.perf_counter()
    whole = 0
    for record in store.list_cases():
        view = record.case.view
        report = case_clock(view, limit=20, calendar=calendar, now=now)
        opened = [complaint_clock(c, calendar=calendar, now=now) for c in view.open_complaints]
        reports = [report, *opened]
        whole += any(r.colour is not Colour.GREEN for r in reports)
    whole_seconds = time.perf_counter() - t0
    store.close()
    store = SqliteCaseStore(path)
    t0 = time.perf_counter()
    facts = 0
    for _, clock in store.clocks():
        report = clock.case_clock(calendar, now)
        worst_open = clock.complaint_clock(calendar, now)
        reports = [report] if worst_open is None else [report, worst_open]
        facts += any(r.colour is not Colour.GREEN for r in reports)
    facts_seconds = time.perf_counter() - t0
    store.close()
    if whole != facts:
        raise AssertionError(f"flagged cases differ: {whole} from the copies, {facts} from facts")
    return whole_seconds / N_CASES, facts_seconds / N_CASES


def _queue_per_case(path: Path) -> tuple[float, float]:
    """Seconds per case to build the work queue (every case, every state, no filter) from
    the whole copies and from the queue entries, each by a fresh store (nothing kept)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cases"))
    from casekit import later

    from agreements.calendar import default_calendar
    from relay.cases.queue import QueueEntry
    from relay.cases.sqlite_store import SqliteCaseStore
    from relay.console.views import QueueFilter, queue_view

    calendar, now = default_calendar(), later(0) + timedelta(days=3)

    def build(entries: list[QueueEntry]) -> dict[str, object]:
        return queue_view(
            entries,
            clock_of=lambda e: e.clock.case_clock(calendar, now),
            names=lambda header: {},
            keep=QueueFilter(),
            limit=200,
        )

    store = SqliteCaseStore(path)
    t0 = time.perf_counter()
    whole = build([QueueEntry.of(r.case, r.version, r.opened_at) for r in store.list_cases()])
    whole_seconds = time.perf_counter() - t0
    store.close()
    store = SqliteCaseStore(path)
    t0 = time.perf_counter()
    rows = build(store.queue_entries())
    rows_seconds = time.perf_counter() - t0
    store.close()
    if whole != rows:
        raise AssertionError("the work queue differs between the copies and the entries")
    return whole_seconds / N_CASES, rows_seconds / N_CASES


def _queue_with_settled(path: Path, settled: int) -> tuple[float, float]:
    """Milliseconds per work queue computation with :data:`N_ACTIVE` cases in progress
    and ``settled`` concluded ones: the console's way, and every entry judged."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cases"))
    from casekit import T0, details_for, header, later

    from agreements.calendar import default_calendar
    from agreements.catalog import default_catalog
    from relay.cases.desk import CaseDesk
    from relay.cases.model import Event, EventKind, Office
    from relay.cases.sqlite_store import SqliteCaseStore
    from relay.cases.store import CaseRecord
    from relay.cases.workflow import Case, Command, Received, transition
    from relay.console.http import Console
    from relay.console.views import QueueFilter, queue_view

    K, H = EventKind, Office.HANDLING
    store = SqliteCaseStore(path)
    for k in range(N_ACTIVE + settled):
        case = Case(header(f"WC-{k:05d}"), Office.RECEIVING)
        case, _ = transition(case, Command(K.SUBMIT, details_for(K.SUBMIT, case)), later(0))
        if k >= N_ACTIVE:  # accepted, denied, concluded
            for event in (
                Event(K.ACCEPT, H, 1, 1, later(10), {}),
                Event(K.DECIDE, H, 2, 1, later(20), {"decision": "deny", "reason": "不符合"}),
            ):
                case, _ = transition(case, Received(event), event.at)
            case, _ = transition(case, Command(K.CONCLUDE, {"staff": "王办结"}), later(30))
        store.create(CaseRecord(case, None, T0, 1))
    calendar, now = default_calendar(), later(0) + timedelta(days=3)
    desk = CaseDesk(
        node_id="420106", relay=None, store=store, terms=None,  # type: ignore[arg-type]
        calendar=calendar, signer=None, bundle=None,  # type: ignore[arg-type]
        clock=lambda: now, office_names={},
    )  # fmt: skip
    console = Console(
        desk=desk, core=None, terms=None, catalog=default_catalog(),  # type: ignore[arg-type]
        licences=None,  # type: ignore[arg-type]
    )  # fmt: skip
    console.queue(QueueFilter(), "", 200)  # the settled cases' ranks stored once
    gc.collect()  # the cases built above are garbage: not this measure's to collect
    rounds = 20
    t0 = time.perf_counter()
    for _ in range(rounds):
        console._queues.clear()  # a new change: computed again
        body = console.queue(QueueFilter(), "", 200)
    console_seconds = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    whole = queue_view(
        store.queue_entries(),
        clock_of=lambda e: e.clock.case_clock(calendar, now),
        names=console.names,
        keep=QueueFilter(),
        limit=200,
    )
    whole_seconds = time.perf_counter() - t0
    store.close()
    if body != whole:
        raise AssertionError("the console's work queue differs from every entry judged")
    return console_seconds, whole_seconds


def _rows(
    ways: dict[str, float], first: dict[str, float], size: dict[str, int], unit: str, note: str
) -> list[dict[str, object]]:
    """One row per way: its milliseconds and its ratio to the way's first size."""
    out: list[dict[str, object]] = []
    for way, seconds in ways.items():
        first.setdefault(way, seconds)
        out.append(
            {"way": way, **size, unit: seconds * 1000, "vs first": seconds / first[way],
             "note": note}
        )  # fmt: skip
    return out


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    first: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-case-listings-") as tmp:
        for events in EVENTS:
            path = Path(tmp) / f"cases-{events}.sqlite3"
            _store_with_cases(path, events)
            whole_clocks, fact_clocks = _per_case(path)
            whole_queue, entry_queue = _queue_per_case(path)
            ways = {
                "clocks from whole copies": whole_clocks,
                "clocks from clock facts": fact_clocks,
                "work queue from whole copies": whole_queue,
                "work queue from queue entries": entry_queue,
            }
            rows += _rows(ways, first, {"events per case": events}, "ms per case",
                          f"{N_CASES} cases judged")  # fmt: skip
        for settled in SETTLED:
            path = Path(tmp) / f"settled-{settled}.sqlite3"
            console_seconds, whole_seconds = _queue_with_settled(path, settled)
            ways = {
                "work queue, settled cases counted on their index": console_seconds,
                "work queue, every case judged": whole_seconds,
            }
            rows += _rows(ways, first, {"settled cases": settled}, "ms per queue",
                          f"{N_ACTIVE} cases in progress, {settled} concluded")  # fmt: skip
    rows.sort(key=lambda r: (str(r["way"]), int(str(r.get("events per case", 0)))))
    return rows
