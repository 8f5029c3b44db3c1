"""A case step costs the same however long the case is (issue 12, flat costs).

The store keeps the copy it last read or wrote of each recent case, with its row's
stamp: a step takes it instead of reading and decoding every event, folds only the new
event onto its view, and writes the new event's row alone. These tests hold it to what
the long way gives, on SQLite and a real PostgreSQL (``database``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from casekit import T0, details_for, header, later
from dbkit import Database

from agreements.calendar import default_calendar
from relay.cases import sqlite_store, workflow
from relay.cases.model import CaseState, Event, EventKind, Office
from relay.cases.queue import QueueEntry
from relay.cases.sla import ClockFacts, case_clock, complaint_clock
from relay.cases.sqlite_store import SqliteCaseStore, case_to_json
from relay.cases.store import CaseRecord
from relay.cases.workflow import Case, Command, Received, transition

K = EventKind
R, H = Office.RECEIVING, Office.HANDLING


def _opened(store: SqliteCaseStore, case_id: str) -> None:
    fresh = Case(header(case_id), R)
    case, _ = transition(fresh, Command(K.SUBMIT, details_for(K.SUBMIT, fresh)), later(0))
    store.create(CaseRecord(case, None, T0, 1))


def _complain(store: SqliteCaseStore, case_id: str, i: int) -> CaseRecord:
    def change(old: CaseRecord | None) -> CaseRecord:
        assert old is not None
        new, _ = transition(old.case, Command(K.COMPLAIN, {"text": f"第{i}次催办"}), later(i))
        return replace(old, case=new)

    after = store.update(case_id, change)
    assert after is not None
    return after


def _row_events(store: SqliteCaseStore, case_id: str) -> str:
    """The case's events as stored (their rows, in order), as one JSON list's text."""
    row = store.connection.execute(
        "SELECT events FROM cases WHERE case_id = ?", (case_id,)
    ).fetchone()
    assert row is not None
    assert row[0] == ""  # the events are rows of their own
    texts = store.connection.execute(
        "SELECT n, content FROM case_events WHERE case_id = ? ORDER BY n", (case_id,)
    ).fetchall()
    assert [n for n, _ in texts] == list(range(len(texts)))
    return "[" + ", ".join(str(t) for _, t in texts) + "]"


def _whole(case: Case) -> str:
    return json.dumps(case_to_json(case)["events"], ensure_ascii=False)


def test_a_case_grown_step_by_step_is_stored_and_folded_as_if_written_whole(
    database: Database,
) -> None:
    store = SqliteCaseStore(database.connect())
    _opened(store, "WC-GROW")
    for i in range(1, 6):
        after = _complain(store, "WC-GROW", i)
        assert _row_events(store, "WC-GROW") == _whole(after.case)
    # the handling office's acceptance, concurrent with the complaints: it sorts between
    # them (Lamport time 2, the handling office first), so the copy is folded anew
    accept = Event(K.ACCEPT, H, 1, 1, later(10), {})

    def receive(old: CaseRecord | None) -> CaseRecord:
        assert old is not None
        new, _ = transition(old.case, Received(accept), later(10))
        return replace(old, case=new)

    received = store.update("WC-GROW", receive)
    assert received is not None
    after = received
    assert after.case.events[1] == accept  # not at the end
    assert _row_events(store, "WC-GROW") == _whole(after.case)
    after = _complain(store, "WC-GROW", 11)
    assert _row_events(store, "WC-GROW") == _whole(after.case)
    fresh = Case(after.case.header, after.case.me, after.case.events)
    assert after.case.view == fresh.view  # carried step by step = folded whole
    assert after.case.count(R) == fresh.count(R) == 7
    other = SqliteCaseStore(database.connect())  # keeps nothing: decodes the row
    got = other.get("WC-GROW")
    assert got is not None
    assert got.case == after.case
    assert got.case.view == after.case.view
    store.close()
    other.close()


def test_a_step_decodes_and_folds_the_same_however_long_the_case(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteCaseStore(database.connect())
    calls = {"decoded": 0, "folded": 0}
    decode, fold = Event.from_content, workflow._apply

    def counted_decode(obj: object) -> Event:
        calls["decoded"] += 1
        return decode(obj)  # type: ignore[arg-type]

    def counted_fold(view: workflow.CaseView, event: Event) -> workflow.CaseView:
        calls["folded"] += 1
        return fold(view, event)

    monkeypatch.setattr(Event, "from_content", staticmethod(counted_decode))
    monkeypatch.setattr(workflow, "_apply", counted_fold)

    def one_step(events: int) -> dict[str, int]:
        case_id = f"WC-LONG-{events}"
        _opened(store, case_id)
        for i in range(1, events):
            _complain(store, case_id, i)
        assert store.get(case_id) is not None  # read once, as a page would
        calls.update(decoded=0, folded=0)
        _complain(store, case_id, events)
        assert store.get(case_id) is not None
        return dict(calls)

    short, long = one_step(3), one_step(60)
    assert short == long, (short, long)
    assert long["decoded"] == 0
    assert long["folded"] <= 2
    store.close()


def test_a_rolled_back_step_or_another_writers_step_is_read_from_the_row(
    database: Database,
) -> None:
    store = SqliteCaseStore(database.connect())
    other = SqliteCaseStore(database.connect())
    _opened(store, "WC-KEPT")
    kept = _complain(store, "WC-KEPT", 1)

    class Refuses:
        def changed(self, conn: object, old: object, new: object) -> None:
            raise RuntimeError("the sink refuses")

        def logged(self, conn: object, leaf: bytes) -> None:
            pass

    store.add_sink(Refuses())
    with pytest.raises(RuntimeError):
        _complain(store, "WC-KEPT", 2)  # encoded and kept, then rolled back
    store._sinks.clear()
    assert store.get("WC-KEPT") == kept
    theirs = _complain(other, "WC-KEPT", 3)  # a second worker's step
    got = store.get("WC-KEPT")
    assert got == theirs
    assert len(got.case.events) == 3
    mine = _complain(store, "WC-KEPT", 4)
    assert _row_events(store, "WC-KEPT") == _whole(mine.case)
    assert len(mine.case.events) == 4
    store.close()
    other.close()


def test_the_store_keeps_a_bounded_number_of_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "COPIES_KEPT", 2)
    monkeypatch.setattr(sqlite_store, "KEPT_TEXT_BYTES", 2_000)
    store = SqliteCaseStore(tmp_path / "relay.sqlite3")
    for name in ("WC-1", "WC-2", "WC-3"):
        _opened(store, name)
    kept = store._kept
    assert [kept.get(n) is not None for n in ("WC-1", "WC-2", "WC-3")] == [False, True, True]
    after = _complain(store, "WC-3", 1)
    for i in range(2, 12):  # WC-3 grows past the text budget: no longer kept, still right
        after = _complain(store, "WC-3", i)
    assert kept.get("WC-3") is None
    assert store.get("WC-3") == after
    assert store.get("WC-1") is not None
    # a listing's read (the overdue cases') takes what is kept but keeps nothing new
    cold = SqliteCaseStore(tmp_path / "relay.sqlite3")
    assert cold.get("WC-2", keep=False) == store.get("WC-2")
    assert cold._kept.get("WC-2") is None
    assert cold.get("WC-2") is not None
    assert cold._kept.get("WC-2") is not None
    cold.close()
    store.close()


TOKEN = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"


def test_every_case_s_clocks_are_judged_without_reading_an_event(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listings that judge every case's SLA clocks (overdue cases, the metrics
    gauge, the calendar alerts) read the clock facts stored with each write: a store
    that keeps nothing decodes no event for them, and the facts count the same clocks
    as the whole copy, through a correction, a stop and open or answered complaints.
    A licence is found by its number the same way; and the
    console's work queue lists every case (turn, open complaints, the people our office
    acted through, state, version) from its row, as the whole copy gives it."""
    writer = SqliteCaseStore(database.connect())
    _opened(writer, "WC-CLOCK-RUNNING")
    for i in range(1, 4):
        _complain(writer, "WC-CLOCK-RUNNING", i)
    _opened(writer, "WC-CLOCK-STOPPED")
    days = 60 * 24
    steps: list[Event | Command] = [
        Event(K.REQUEST_CORRECTION, H, 1, 1, later(3 * days), {"missing": ["证明"]}),
        Command(K.SUPPLEMENT, {"supplied": ["证明"], "staff": "李补正"}),  # ours, 6 days later
        Event(K.ACCEPT, H, 2, 2, later(10 * days), {}),
        Event(K.DECIDE, H, 3, 2, later(20 * days), {"decision": "approve"}),
        Event(
            K.ISSUE_LICENCE, H, 4, 2, later(21 * days), {"licence": TOKEN, "licence_number": "JY1"}
        ),
    ]
    for step in steps:

        def apply(old: CaseRecord | None, step: Event | Command = step) -> CaseRecord:
            assert old is not None
            if isinstance(step, Command):
                new, _ = transition(old.case, step, later(9 * days))
            else:
                new, _ = transition(old.case, Received(step), step.at)
            return replace(old, case=new)

        writer.update("WC-CLOCK-STOPPED", apply)
    cases = {r.case.header.case_id: r.case for r in writer.list_cases()}
    assert cases["WC-CLOCK-STOPPED"].view.state is CaseState.LICENCE_ISSUED
    assert len(cases["WC-CLOCK-RUNNING"].view.open_complaints) == 3

    calls = {"decoded": 0}
    decode = Event.from_content

    def counted_decode(obj: object) -> Event:
        calls["decoded"] += 1
        return decode(obj)  # type: ignore[arg-type]

    monkeypatch.setattr(Event, "from_content", staticmethod(counted_decode))
    cold = SqliteCaseStore(database.connect())  # keeps nothing
    facts = dict(cold.clocks())
    assert cold.licence("JY1") == (TOKEN, "WC-CLOCK-STOPPED")
    assert cold.licence("JY2") is None
    assert cold.next_status_index("320982") == 0  # the stand-in token names no issuer
    entries = cold.queue_entries()
    assert calls["decoded"] == 0
    records = writer.list_cases()
    assert entries == [QueueEntry.of(r.case, r.version, r.opened_at) for r in records]
    queued = {e.case_id: e for e in entries}
    running, stopped_entry = queued["WC-CLOCK-RUNNING"], queued["WC-CLOCK-STOPPED"]
    assert (running.facts.open_complaints, running.facts.turn) == (3, H)
    assert running.facts.staff == ()  # details_for's submit names nobody
    assert (stopped_entry.facts.staff, stopped_entry.our_turn) == (("李补正",), True)
    assert stopped_entry.version == len(steps) + 1
    calendar = default_calendar()
    for case_id, case in cases.items():
        assert facts[case_id] == ClockFacts.of(case)
        for now in (later(60), later(60 * 24 * 12), later(60 * 24 * 40)):
            whole = case_clock(case.view, limit=20, calendar=calendar, now=now)
            assert facts[case_id].case_clock(calendar, now) == whole
            open_ = [
                complaint_clock(c, calendar=calendar, now=now) for c in case.view.open_complaints
            ]
            worst = max(open_, key=lambda r: r.used, default=None)  # the longest-running
            assert facts[case_id].complaint_clock(calendar, now) == worst
    stopped = facts["WC-CLOCK-STOPPED"]
    assert stopped.stopped
    assert len(stopped.intervals) == 2  # paused for the correction
    writer.close()
    cold.close()


def test_a_store_opening_on_filled_cases_reads_none_of_them(tmp_path: Path) -> None:
    """Opening the store looks for cases written before the clock and queue facts were
    kept (to fill them): through an index of those alone, so a node restarting on years
    of cases reads none of them to find there is nothing to fill."""
    import sqlite3

    path = tmp_path / "relay.sqlite3"
    writer = SqliteCaseStore(path)
    for k in range(30):
        _opened(writer, f"WC-OPEN-{k:02d}")
    writer.close()
    conn = sqlite3.connect(path, isolation_level=None)
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    SqliteCaseStore(conn)
    conn.set_trace_callback(None)
    [look] = [s for s in ran if "clock IS NULL" in s and s.lstrip().startswith("SELECT")]
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + look)]
    assert plan == ["SEARCH cases USING INDEX cases_unfilled (case_id>?)"], plan
    conn.close()
