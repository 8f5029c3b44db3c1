"""The work queue counts settled cases on an index (issue 12, flat costs).

Every open console asks for its work queue again after each change, and a node that has
run for years holds mostly settled cases (rejected, concluded, withdrawn, no open
complaint). The queue now reads the rows of the cases in progress and counts the
settled ones per state on a partial index, reading only those a page shows. These tests
hold the console's queue (:meth:`relay.console.http.Console.queue`) to the whole
computation over every case, for every filter, state and page size, on SQLite and a
real PostgreSQL, including rows written before the settled mark existed; and count what
a queue reads."""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from casekit import HANDLING, RECEIVING, T0, counting_reads, details_for, later
from dbkit import Database

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.catalog import default_catalog
from relay.cases.desk import CaseDesk
from relay.cases.model import CaseHeader, Event, EventKind, Office
from relay.cases.queue import QueueEntry
from relay.cases.sqlite_store import SqliteCaseStore
from relay.cases.store import CaseRecord
from relay.cases.workflow import Case, Command, Received, transition
from relay.console.http import Console
from relay.console.views import QueueFilter, queue_view

K, R, H = EventKind, Office.RECEIVING, Office.HANDLING
DAY = 24 * 60
NOW = later(120 * DAY)

# (steps after submission: an Event is the handling office's, a Command ours), by name
_STORIES: dict[str, list[Event | Command]] = {
    "submitted": [],
    "accepted": [Event(K.ACCEPT, H, 1, 1, later(DAY), {})],
    "correction": [Event(K.REQUEST_CORRECTION, H, 1, 1, later(DAY), {"missing": ["证明"]})],
    "approved-late": [
        Event(K.ACCEPT, H, 1, 1, later(DAY), {}),
        Event(K.DECIDE, H, 2, 1, later(45 * DAY), {"decision": "approve"}),
    ],
    "rejected": [Event(K.REJECT, H, 1, 1, later(DAY), {"reason": "不属于本机关职权"})],
    "concluded": [
        Event(K.ACCEPT, H, 1, 1, later(DAY), {}),
        Event(K.DECIDE, H, 2, 1, later(2 * DAY), {"decision": "deny", "reason": "不符合"}),
        Command(K.CONCLUDE, {"staff": "王办结"}),
    ],
    "concluded-late": [
        Event(K.ACCEPT, H, 1, 1, later(DAY), {}),
        Event(K.DECIDE, H, 2, 1, later(50 * DAY), {"decision": "deny", "reason": "不符合"}),
        Command(K.CONCLUDE, {"staff": "100%_李"}),
    ],
    "withdrawn": [Command(K.WITHDRAW, {"staff": "王办结"})],
    "withdrawn-by-clerk": [Command(K.WITHDRAW, {"staff": "clerk-9"})],
    "complained": [  # concluded, but a complaint is open: not settled
        Event(K.ACCEPT, H, 1, 1, later(DAY), {}),
        Event(K.DECIDE, H, 2, 1, later(2 * DAY), {"decision": "deny", "reason": "不符合"}),
        Command(K.CONCLUDE, {}),
        Command(K.COMPLAIN, {"text": "材料交了两次"}),
    ],
}


def _write(store: SqliteCaseStore, case_id: str, story: str, me: Office, matter: str) -> None:
    head = CaseHeader(case_id, matter, "proxy_receipt", RECEIVING, HANDLING, 20, False)
    fresh = Case(head, me)
    if me is R:
        submit: Event | Command = Command(K.SUBMIT, details_for(K.SUBMIT, fresh))
        case, _ = transition(fresh, submit, later(0))
    else:
        submit = Event(K.SUBMIT, R, 1, 0, later(0), dict(details_for(K.SUBMIT, fresh)))
        case, _ = transition(fresh, Received(submit), later(0))
    store.create(CaseRecord(case, None, T0, 1))
    for n, step in enumerate(_STORIES[story]):

        def apply(old: CaseRecord | None, step: Event | Command = step, n: int = n) -> CaseRecord:
            assert old is not None
            if isinstance(step, Command):
                new, _ = transition(old.case, step, later(60 * DAY + n))
            elif me is R:
                new, _ = transition(old.case, Received(step), step.at)
            else:  # the handling office: its own step
                new, _ = transition(old.case, Command(step.kind, dict(step.details)), step.at)
            return replace(old, case=new, version=old.version + 1)

        store.update(case_id, apply)


def _fill(store: SqliteCaseStore) -> None:
    """Cases of every story, both offices, two matters; a few of each."""
    for n, (story, me, matter) in enumerate(
        itertools.product(_STORIES, (R, H), ("food-business-licence", "pesticide-retail"))
    ):
        if me is H and any(isinstance(s, Command) for s in _STORIES[story]):
            continue  # the receiving office's steps: that story is told from its side
        for k in range(2):
            _write(store, f"WC-{story}-{me.value}-{n:02d}-{k}", story, me, matter)


def _desk(store: SqliteCaseStore) -> CaseDesk:
    return CaseDesk(
        node_id=RECEIVING, relay=None, store=store, terms=None,  # type: ignore[arg-type]
        calendar=default_calendar(), signer=None, bundle=None,  # type: ignore[arg-type]
        clock=lambda: NOW, office_names={},
    )  # fmt: skip


def _console(desk: CaseDesk) -> Console:
    return Console(
        desk=desk, core=None, terms=None, catalog=default_catalog(),  # type: ignore[arg-type]
        licences=None,  # type: ignore[arg-type]
    )  # fmt: skip


def _whole(store: SqliteCaseStore, console: Console, keep: QueueFilter, state: str, limit: int):
    """The queue as it was computed before: every case's entry judged one by one."""
    calendar = default_calendar()
    return queue_view(
        store.queue_entries(),
        clock_of=lambda entry: entry.clock.case_clock(calendar, NOW),
        names=console.names,
        keep=keep,
        state=state,
        limit=limit,
    )


FILTERS = [
    QueueFilter(),
    QueueFilter(matter="pesticide-retail"),
    QueueFilter(partner=HANDLING),
    QueueFilter(mine="王办结"),
    QueueFilter(mine="100%_李"),
    QueueFilter(mine="%"),  # a wildcard in a name matches nothing but that name
    QueueFilter(mine="CLERK-9"),  # nor does another case of the same letters
    QueueFilter(mine="clerk-9"),
    QueueFilter(turn=True),
    QueueFilter(overdue=True),
    QueueFilter(matter="food-business-licence", overdue=True),
]


def test_the_queue_with_settled_cases_counted_apart_is_the_whole_queue(
    database: Database,
) -> None:
    store = SqliteCaseStore(database.connect())
    _fill(store)
    console = _console(_desk(store))
    entries = store.queue_entries()
    settled = [e for e in entries if e.settled]
    assert {e.state.value for e in settled} == {"rejected", "concluded", "withdrawn"}
    assert any(e.state.value == "concluded" and not e.settled for e in entries)  # complained
    for keep, state, limit in itertools.product(
        FILTERS, ["", "concluded", "withdrawn", "submitted", "approved"], [3, 200]
    ):
        computed = console.queue(keep, state, limit)
        assert computed == _whole(store, console, keep, state, limit), (keep, state, limit)
    store.close()


def test_rows_written_before_the_settled_mark_are_marked_at_open(database: Database) -> None:
    store = SqliteCaseStore(database.connect())
    _fill(store)
    conn = store.connection
    conn.execute(
        "UPDATE cases SET settled = 0, matter = NULL, partner = NULL, staff = NULL,"
        " queue_rank = NULL"
    )
    store.close()
    reopened = SqliteCaseStore(database.connect())
    console = _console(_desk(reopened))
    for keep in FILTERS:
        assert console.queue(keep, "", 200) == _whole(reopened, console, keep, "", 200)
    marked = reopened.connection.execute(
        "SELECT COUNT(*) FROM cases WHERE settled = 1 AND queue_rank IS NOT NULL"
    ).fetchone()
    assert marked[0] == sum(e.settled for e in reopened.queue_entries())
    reopened.close()


def test_a_queue_reads_the_cases_in_progress_and_only_the_settled_ones_it_shows(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More settled cases cost a queue nothing it reads row by row: the entries built
    are the cases in progress plus the settled rows on the page."""
    store = SqliteCaseStore(database.connect())
    _fill(store)
    console = _console(_desk(store))
    console.queue(QueueFilter(), "", 200)  # ranks the settled cases written so far
    for k in range(40):
        _write(store, f"WC-MORE-{k:03d}", "concluded", R, "food-business-licence")
    built: list[Any] = []
    original = QueueEntry.__init__

    def counted(self: QueueEntry, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    in_progress = sum(not e.settled for e in store.queue_entries())
    monkeypatch.setattr(QueueEntry, "__init__", counted)
    console._queues.clear()
    body = console.queue(QueueFilter(), "submitted", 5)
    assert body["counts"]["concluded"] >= 40
    assert len(built) == in_progress  # no settled row read: the page shows none
    built.clear()
    console._queues.clear()
    body = console.queue(QueueFilter(), "concluded", 5)
    assert len(body["cases"]) == 5
    assert len(built) == in_progress + 5
    store.close()


def test_a_settled_case_that_gets_a_complaint_is_in_progress_again(database: Database) -> None:
    store = SqliteCaseStore(database.connect())
    _write(store, "WC-AGAIN", "concluded", R, "food-business-licence")
    console = _console(_desk(store))
    assert console.queue(QueueFilter(turn=True), "", 200)["total"] == 0
    assert [e.case_id for e in store.queue_entries(settled=False)] == []

    def complain(old: CaseRecord | None) -> CaseRecord:
        assert old is not None
        new, _ = transition(old.case, Command(K.COMPLAIN, {"text": "没收到"}), later(70 * DAY))
        return replace(old, case=new, version=old.version + 1)

    store.update("WC-AGAIN", complain)
    assert [e.case_id for e in store.queue_entries(settled=False)] == ["WC-AGAIN"]
    console._queues.clear()
    body = console.queue(QueueFilter(), "concluded", 200)
    assert [c["case"] for c in body["cases"]] == ["WC-AGAIN"]
    assert body["cases"][0]["open_complaints"] == 1
    store.close()


def test_the_settled_cases_are_counted_on_their_index_alone(tmp_path: Path) -> None:
    """SQLite's plans: the counts per state scan the settled cases' index alone (no
    row read), a page of a state or of every state reads its rows in index order, and
    the cases in progress are listed from their own index."""
    path = tmp_path / "relay.sqlite3"
    store = SqliteCaseStore(path)
    _fill(store)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    console = _console(_desk(SqliteCaseStore(conn)))
    console.queue(QueueFilter(), "concluded", 5)
    console.queue(QueueFilter(), "", 5)
    conn.set_trace_callback(None)

    def plan(*words: str) -> list[str]:
        [sql] = {s for s in ran if all(w in s for w in words)}
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]

    assert plan("COUNT(*)", "settled = 1") == [
        "SCAN cases USING COVERING INDEX cases_settled_state"
    ]
    assert plan("settled = 1 AND state =", "LIMIT 5") == [
        "SEARCH cases USING INDEX cases_settled_state (state=?)"
    ]
    assert plan("settled = 1 ORDER BY queue_rank") == ["SCAN cases USING INDEX cases_settled_rank"]
    assert plan("WHERE settled = 0") == ["SCAN cases USING INDEX cases_active"]
    conn.close()


def test_the_overdue_list_and_the_sla_gauge_judge_the_cases_in_progress(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case that ended late is a settled fact, not an overdue case: the overdue list,
    the gauge's clocks and the unknown-clock alert read the clock facts of the cases in
    progress only (a case still waiting for its conclusion after a late decision is
    listed, as before)."""
    store = SqliteCaseStore(database.connect())
    for story in ("submitted", "approved-late", "concluded-late", "withdrawn", "rejected"):
        _write(store, f"WC-SLA-{story}", story, R, "food-business-licence")
    desk = _desk(store)
    listed = sorted(o.record.case.header.case_id for o in desk.overdue(NOW))
    assert listed == ["WC-SLA-approved-late", "WC-SLA-submitted"]
    assert len(desk.statutory_clocks(NOW)) == 2
    assert desk.unknown_clocks(NOW) == []
    read = counting_reads(store, monkeypatch)
    desk.overdue(NOW)
    assert sorted(read) == listed  # the late concluded case is not even read
    store.close()


def test_the_retention_purge_reads_only_the_cases_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily purge gives the cases written since its last run their due time from
    their rows, then reads the cases due and those alone: none while every case is kept,
    each due one once, none of those purged before; a step after the purge brings its
    content due in its turn."""
    from types import SimpleNamespace

    from relay.core.sqlite_store import SqliteStore
    from relay.integration.retention import RetentionPurge

    SqliteStore(tmp_path).close()  # the relay's tables the purge empties packets in
    store = SqliteCaseStore(tmp_path / "relay.sqlite3")
    for k in range(6):
        _write(store, f"WC-KEEP-{k}", "concluded", R, "food-business-licence")
    for k in range(4):
        _write(store, f"WC-OPEN-{k}", "submitted", R, "food-business-licence")
    now = [NOW]
    purge = RetentionPurge(
        node_id=RECEIVING, cases=store, relay_dir=tmp_path, clock=lambda: now[0],
        terms=lambda *args: SimpleNamespace(retention_years=2, agreement_id="bench"),
        forget_applicant=lambda case_id: None,
    )  # fmt: skip
    read = counting_reads(store, monkeypatch)
    decoded = []
    decode = Event.from_content

    def counted_decode(obj: object) -> Event:
        decoded.append(1)
        return decode(obj)  # type: ignore[arg-type]

    monkeypatch.setattr(Event, "from_content", staticmethod(counted_decode))
    assert purge.run() == []
    assert read == decoded == []  # every case kept: none read
    now[0] = later(60 * DAY).replace(year=later(60 * DAY).year + 2) + timedelta(days=1)
    assert sorted(purge.run()) == [f"WC-KEEP-{k}" for k in range(6)]
    assert sorted(read) == [f"WC-KEEP-{k}" for k in range(6)]
    read.clear()
    decoded.clear()
    assert purge.run() == []
    assert read == decoded == []  # purged before: not read again

    def complain(old: CaseRecord | None) -> CaseRecord:
        assert old is not None
        new, _ = transition(old.case, Command(K.COMPLAIN, {"text": "证照丢了"}), now[0])
        return replace(old, case=new, version=old.version + 1)

    store.update("WC-KEEP-0", complain)
    decoded.clear()
    assert purge.run() == []
    assert read == decoded == []  # its new step is kept two years more
    store.close()


def _calendar(*years: int) -> WorkingCalendar:
    return WorkingCalendar(
        name="test", source="test", years=frozenset(years), weekend=frozenset({6, 7}),
        holidays=frozenset(), adjusted_working_days=frozenset(),
    )  # fmt: skip


def test_a_settled_case_whose_clock_is_unknown_sorts_before_running_ones(
    database: Database,
) -> None:
    """A case concluded in a year the calendar does not cover has an unknown (grey)
    clock, which ranks before a running green one: the page has room for it although
    the cases in progress fill the page."""
    store = SqliteCaseStore(database.connect())
    _write(store, "WC-RUNNING", "submitted", R, "food-business-licence")
    old = CaseHeader("WC-2024", "food-business-licence", "proxy_receipt", RECEIVING, HANDLING,
                     20, False)  # fmt: skip
    fresh = Case(old, R)
    year_before = T0.replace(year=2024)
    case, _ = transition(fresh, Command(K.SUBMIT, details_for(K.SUBMIT, fresh)), year_before)
    for n, step in enumerate(_STORIES["withdrawn"]):
        assert isinstance(step, Command)
        case, _ = transition(case, step, year_before + timedelta(days=1 + n))
    store.create(CaseRecord(case, None, year_before, 1))
    desk = CaseDesk(
        node_id=RECEIVING, relay=None, store=store, terms=None,  # type: ignore[arg-type]
        calendar=_calendar(2026, 2027), signer=None, bundle=None,  # type: ignore[arg-type]
        clock=lambda: later(DAY), office_names={},
    )  # fmt: skip
    console = _console(desk)
    page = console.queue(QueueFilter(), "", 1)
    [row] = page["cases"]
    assert (row["case"], row["clock"]["colour"]) == ("WC-2024", "grey")
    calendar = desk.calendar
    whole = queue_view(
        store.queue_entries(),
        clock_of=lambda entry: entry.clock.case_clock(calendar, later(DAY)),
        names=console.names, keep=QueueFilter(), limit=1,
    )  # fmt: skip
    assert page == whole
    store.close()


def test_the_settled_cases_are_ranked_again_when_the_calendar_changes(
    database: Database,
) -> None:
    store = SqliteCaseStore(database.connect())
    for k in range(3):
        _write(store, f"WC-RANK-{k}", "concluded", R, "food-business-licence")
    ranked: list[int] = []

    def rank_of(facts: Any) -> int:
        ranked.append(1)
        return 15

    assert store.rank_settled(rank_of, _calendar(2026).fingerprint) == 3
    assert store.rank_settled(rank_of, _calendar(2026).fingerprint) == 0  # the same calendar
    assert store.rank_settled(rank_of, _calendar(2026, 2027).fingerprint) == 3
    assert len(ranked) == 6
    store.close()
