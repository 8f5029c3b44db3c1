"""SLA clocks: working days on the bundled 2026 calendar, paused during correction."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources

from casekit import details_for, header
from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.calendar import WorkingCalendar
from relay.cases.model import CaseHeader, Event, EventKind, Office
from relay.cases.sla import CHINA_TIME, ClockState, Colour, case_clock, clock, complaint_clock
from relay.cases.workflow import Case, Command, Complaint, Received, transition

K = EventKind


def beijing(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), CHINA_TIME).astimezone(UTC)


def handled(limit: int, steps: list[tuple[K, date]]) -> Case:
    """A handling-office copy advanced by local commands (receiving side simulated)."""
    r = Case(header(limit=limit), Office.RECEIVING)
    h: Case | None = None
    for kind, day in steps:
        actor = r if kind in (K.SUBMIT, K.SUPPLEMENT) else h
        assert actor is not None
        new, packets = transition(actor, Command(kind, details_for(kind, actor)), beijing(day))
        if actor is r:
            r = new
            if h is None:
                h = Case(CaseHeader.from_json(packets[0].content["header"]), Office.HANDLING)
            h, _ = transition(h, Received(Event.from_content(packets[0].content)), beijing(day))
        else:
            h = new
            r, _ = transition(r, Received(Event.from_content(packets[0].content)), beijing(day))
    assert h is not None
    return h


def test_correction_pause_across_mid_autumn_and_national_day(calendar):
    # submitted Mon 21 Sep; correction asked Thu 24 Sep; supplied Thu 8 Oct (after the
    # Mid-Autumn and National Day holidays); 10 working days allowed
    h = handled(
        10,
        [
            (K.SUBMIT, date(2026, 9, 21)),
            (K.REQUEST_CORRECTION, date(2026, 9, 24)),
            (K.SUPPLEMENT, date(2026, 10, 8)),
            (K.ACCEPT, date(2026, 10, 9)),
        ],
    )

    def at(day: date):
        return case_clock(h.view, limit=10, calendar=calendar, now=beijing(day, 16))

    paused = case_clock(
        Case(h.header, h.me, h.events[:2]).view,  # submitted, correction asked
        limit=10,
        calendar=calendar,
        now=beijing(date(2026, 10, 1)),
    )
    assert paused.state is ClockState.PAUSED
    assert paused.used == 3
    assert paused.deadline is None
    # 3 used before the pause; 7 more from 8 Oct: 9, 10 (make-up Saturday), 12..16 Oct
    assert at(date(2026, 10, 12)).deadline == date(2026, 10, 16)
    assert at(date(2026, 10, 12)).used == 6
    assert at(date(2026, 10, 13)).colour is Colour.GREEN  # 7/10
    assert at(date(2026, 10, 14)).colour is Colour.YELLOW  # 8/10
    assert at(date(2026, 10, 16)).colour is Colour.YELLOW  # 10/10, due today
    assert at(date(2026, 10, 17)).colour is Colour.RED  # Saturday after the deadline
    assert at(date(2026, 10, 19)).used == 11


def test_clock_stops_at_the_decision(calendar):
    h = handled(
        5,
        [(K.SUBMIT, date(2026, 3, 2)), (K.ACCEPT, date(2026, 3, 3)), (K.DECIDE, date(2026, 3, 4))],
    )
    report = case_clock(h.view, limit=5, calendar=calendar, now=beijing(date(2026, 6, 1)))
    assert report.state is ClockState.STOPPED
    assert report.used == 2
    assert report.colour is Colour.GREEN


def test_complaint_clock_is_three_working_days(calendar):
    c = Complaint(1, beijing(date(2026, 4, 30)), "材料交了两次")  # Thursday before Labour Day
    report = complaint_clock(c, calendar=calendar, now=beijing(date(2026, 5, 6)))
    assert report.deadline == date(2026, 5, 8)  # 6, 7, 8 May (1..5 May are holidays)
    assert report.used == 1
    assert complaint_clock(c, calendar=calendar, now=beijing(date(2026, 5, 11))).overdue
    answered = Complaint(1, c.at, c.text, beijing(date(2026, 5, 6)), "已处理")
    done = complaint_clock(answered, calendar=calendar, now=beijing(date(2026, 6, 1)))
    assert done.state is ClockState.STOPPED
    assert not done.overdue


@settings(max_examples=200, deadline=None)
@given(
    start=st.dates(date(2026, 1, 5), date(2026, 9, 30)),
    before=st.integers(0, 15),
    pause=st.integers(0, 20),
    limit=st.integers(1, 20),
)
def test_a_pause_adds_exactly_its_working_days_and_the_deadline_uses_the_whole_limit(
    calendar, start, before, pause, limit
):
    s = beijing(start)
    a = s + timedelta(days=before)
    b = a + timedelta(days=pause)
    paused = calendar.working_days_between(a.date(), b.date())
    used_before = calendar.working_days_between(s.date(), a.date())
    report = clock([(s, a), (b, None)], limit=limit, calendar=calendar, now=b)
    assert report.used == used_before
    if used_before <= limit:
        assert report.deadline is not None
        unpaused = calendar.add_working_days(start, limit)
        assert calendar.working_days_between(unpaused, report.deadline) == paused or (
            used_before == limit
        )
        on_deadline = clock(
            [(s, a), (b, None)], limit=limit, calendar=calendar, now=beijing(report.deadline)
        )
        assert on_deadline.used == limit
        assert on_deadline.colour is Colour.YELLOW
        after = calendar.add_working_days(report.deadline, 1)
        late = clock([(s, a), (b, None)], limit=limit, calendar=calendar, now=beijing(after))
        assert late.colour is Colour.RED
    else:
        assert report.colour is Colour.RED


def test_dates_no_calendar_answers_for_give_a_grey_unknown_clock_never_green(caplog):
    strict = WorkingCalendar.from_bytes(
        resources.files("agreements.data").joinpath("calendar-cn-2026.json").read_bytes()
    )
    start = datetime(2027, 3, 1, 2, tzinfo=UTC)
    with caplog.at_level(logging.ERROR, logger="tongban.relay.cases.sla"):
        report = clock([(start, None)], limit=5, calendar=strict, now=start + timedelta(days=3))
    assert report.state is ClockState.UNKNOWN
    assert report.deadline is None
    assert report.colour is Colour.GREY
    assert "2027-03-02" in caplog.text


def test_a_case_opened_on_2026_12_20_with_20_working_days_has_its_deadline_in_2027(calendar):
    case = handled(20, [(K.SUBMIT, date(2026, 12, 20)), (K.ACCEPT, date(2026, 12, 21))])
    report = case_clock(case.view, limit=20, calendar=calendar, now=beijing(date(2026, 12, 28)))
    assert report.state is ClockState.RUNNING
    # 21-31 Dec: 9 working days; 1 Jan 2027 (Fri) is New Year's Day; 4-15 Jan: 10; 18 Jan
    assert report.deadline == date(2027, 1, 18)
    assert report.provisional
    assert report.to_json()["provisional"] is True


def test_a_case_running_into_the_provisional_year_turns_yellow_then_red(calendar):
    case = handled(20, [(K.SUBMIT, date(2026, 12, 20))])
    deadline = date(2027, 1, 18)
    yellow = case_clock(case.view, limit=20, calendar=calendar, now=beijing(date(2027, 1, 12)))
    assert yellow.colour is Colour.YELLOW
    on_time = case_clock(case.view, limit=20, calendar=calendar, now=beijing(deadline))
    assert on_time.colour is Colour.YELLOW
    late = case_clock(
        case.view, limit=20, calendar=calendar, now=beijing(deadline + timedelta(days=1))
    )
    assert late.colour is Colour.RED
    assert late.overdue
    assert late.provisional


def test_a_clock_inside_the_official_year_is_not_provisional(calendar):
    case = handled(5, [(K.SUBMIT, date(2026, 11, 2))])
    report = case_clock(case.view, limit=5, calendar=calendar, now=beijing(date(2026, 11, 4)))
    assert report.deadline == date(2026, 11, 9)
    assert not report.provisional


def test_a_clock_stopped_inside_the_official_year_stays_official_when_read_later(calendar):
    case = handled(
        5,
        [
            (K.SUBMIT, date(2026, 11, 2)),
            (K.ACCEPT, date(2026, 11, 3)),
            (K.DECIDE, date(2026, 11, 4)),
        ],
    )
    report = case_clock(case.view, limit=5, calendar=calendar, now=beijing(date(2027, 3, 1)))
    assert report.state is ClockState.STOPPED
    assert report.used == 2
    assert not report.provisional
