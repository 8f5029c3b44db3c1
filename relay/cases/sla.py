"""SLA clocks in working days: the case's statutory time limit and the complaint clock.

The case clock starts when the case is submitted to the handling office, stops while a
correction (补正) is outstanding (from ``request-correction`` to ``supplement``) and stops
for good at the handling office's answer (``reject`` or ``decide``) or the applicant's
withdrawal. Days are counted in China Standard Time (UTC+8) on the agreement's
:class:`~agreements.calendar.WorkingCalendar`: a running interval from day ``a`` to day
``b`` uses the working days in ``(a, b]`` (the starting day does not count, as for
statutory periods).

Colours: **green** below 75 % of the limit used, **yellow** from 75 % (electronic
supervision's warning), **red** once more working days are used than the limit allows
(overdue; 红牌). A clock that counts any day of a year whose official holiday
arrangement is not loaded (the calendar computed it from the statutory rules) is
``provisional``: it still counts and still turns yellow and red, and every place that
shows it says so. Dates the calendar cannot answer for at all give the state
``unknown`` with the colour **grey** (never green: such a case is listed with the
yellow and red ones and logged at ERROR) rather than a guess. Each complaint (办不成事)
has its own clock of three working days from the complaint to the handling office's
answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from agreements.calendar import WorkingCalendar
from agreements.errors import CalendarError
from relay.cases.workflow import Case, CaseView, Complaint

__all__ = [
    "CHINA_TIME",
    "COMPLAINT_LIMIT_WORKING_DAYS",
    "ClockFacts",
    "ClockState",
    "Colour",
    "SlaReport",
    "case_clock",
    "clock",
    "complaint_clock",
    "local_date",
]

CHINA_TIME = timezone(timedelta(hours=8), "CST")
COMPLAINT_LIMIT_WORKING_DAYS = 3
YELLOW_FRACTION = 0.75

_log = logging.getLogger("tongban.relay.cases.sla")


class ClockState(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"  # correction outstanding
    STOPPED = "stopped"  # answered, decided or withdrawn
    UNKNOWN = "unknown"  # the calendar does not cover the dates (no guessing)


class Colour(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"
    GREY = "grey"  # the clock could not be computed (state unknown): look at it


@dataclass(frozen=True)
class SlaReport:
    state: ClockState
    colour: Colour
    limit: int  # working days
    used: int  # working days counted so far
    deadline: date | None  # last working day allowed (None while paused or not started)
    provisional: bool = False  # counted on computed (not official) holidays somewhere

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    @property
    def overdue(self) -> bool:
        return self.colour is Colour.RED

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "colour": self.colour.value,
            "limit_working_days": self.limit,
            "used_working_days": self.used,
            "remaining_working_days": self.remaining,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "provisional": self.provisional,
        }


def local_date(at: datetime) -> date:
    """The calendar day of ``at`` in China Standard Time."""
    return at.astimezone(CHINA_TIME).date()


def _colour(used: int, limit: int) -> Colour:
    if used > limit:
        return Colour.RED
    if used >= YELLOW_FRACTION * limit:
        return Colour.YELLOW
    return Colour.GREEN


def clock(
    intervals: Sequence[tuple[datetime, datetime | None]],
    *,
    limit: int,
    calendar: WorkingCalendar,
    now: datetime,
    stopped: bool = False,
) -> SlaReport:
    """A clock from its running intervals (start, end or None while running).

    ``stopped`` says the clock ended for good with the last interval's end; otherwise
    a closed last interval means the clock is paused.
    """
    if not intervals:
        return SlaReport(ClockState.NOT_STARTED, Colour.GREEN, limit, 0, None)
    try:
        return _clock(intervals, limit=limit, calendar=calendar, now=now, stopped=stopped)
    except CalendarError as exc:
        _log.error("SLA clock not computed (shown as unknown, grey): %s", exc)
        return SlaReport(ClockState.UNKNOWN, Colour.GREY, limit, 0, None)


def _clock(
    intervals: Sequence[tuple[datetime, datetime | None]],
    *,
    limit: int,
    calendar: WorkingCalendar,
    now: datetime,
    stopped: bool,
) -> SlaReport:
    today = local_date(now)
    used = 0
    for start, end in intervals[:-1]:
        used += calendar.working_days_between(local_date(start), local_date(end or now))
    last_start, last_end = intervals[-1]
    before_last = used
    used += calendar.working_days_between(local_date(last_start), local_date(last_end or now))
    if last_end is None:
        state = ClockState.RUNNING
    else:
        state = ClockState.STOPPED if stopped else ClockState.PAUSED
    deadline: date | None = None
    if state is ClockState.RUNNING and before_last <= limit:
        deadline = calendar.add_working_days(local_date(last_start), limit - before_last)
    colour = _colour(used, limit)
    if state is ClockState.RUNNING and deadline is not None and today > deadline:
        colour = Colour.RED
    counted_to = local_date(last_end or now)
    last_day = counted_to if deadline is None else max(counted_to, deadline)
    provisional = calendar.provisional_between(local_date(intervals[0][0]), last_day)
    return SlaReport(state, colour, limit, used, deadline, provisional)


def case_clock(
    view: CaseView, *, limit: int, calendar: WorkingCalendar, now: datetime
) -> SlaReport:
    """The statutory clock of a case: the running intervals its fold carried
    (``CaseView.clock``, applied events only; :func:`relay.cases.workflow._clock_after`)."""
    return clock(view.clock, limit=limit, calendar=calendar, now=now, stopped=view.clock_stopped)


@dataclass(frozen=True)
class ClockFacts:
    """What a case's clocks are counted from, without its events: the statutory
    clock's limit, running intervals and whether it stopped for good, and when the
    oldest open complaint was made (its clock is the worst of the open complaints': it
    has run longest, over every day the others count). The case store keeps them with
    each write of a case, so a listing that judges every case's clocks (overdue cases,
    the SLA gauge) reads no event of a case whose clocks are green; they stay as small
    however many complaints the case holds."""

    limit: int
    intervals: tuple[tuple[datetime, datetime | None], ...]
    stopped: bool
    oldest_complaint: datetime | None

    @classmethod
    def of(cls, case: Case) -> ClockFacts:
        view = case.view  # its clock carried by the fold: as small however long the case
        return cls(
            case.header.time_limit_working_days,
            view.clock,
            view.clock_stopped,
            view.oldest_open,
        )

    def case_clock(self, calendar: WorkingCalendar, now: datetime) -> SlaReport:
        """:func:`case_clock` of the case these facts are of."""
        return clock(
            self.intervals, limit=self.limit, calendar=calendar, now=now, stopped=self.stopped
        )

    def complaint_clock(self, calendar: WorkingCalendar, now: datetime) -> SlaReport | None:
        """The clock of the oldest open complaint (:func:`complaint_clock`), or None."""
        if self.oldest_complaint is None:
            return None
        return clock(
            [(self.oldest_complaint, None)],
            limit=COMPLAINT_LIMIT_WORKING_DAYS,
            calendar=calendar,
            now=now,
        )

    def to_json(self) -> dict[str, object]:
        oldest = self.oldest_complaint
        return {
            "limit": self.limit,
            "intervals": [[a.isoformat(), None if b is None else b.isoformat()]
                          for a, b in self.intervals],
            "stopped": self.stopped,
            "oldest_complaint": None if oldest is None else oldest.isoformat(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ClockFacts:
        def when(text: str | None) -> datetime | None:
            return None if text is None else datetime.fromisoformat(text)

        return cls(
            int(obj["limit"]),
            tuple((datetime.fromisoformat(a), when(b)) for a, b in obj["intervals"]),
            bool(obj["stopped"]),
            when(obj["oldest_complaint"]),
        )


def complaint_clock(
    complaint: Complaint,
    *,
    calendar: WorkingCalendar,
    now: datetime,
    limit: int = COMPLAINT_LIMIT_WORKING_DAYS,
) -> SlaReport:
    """The response clock of one complaint: three working days until it is answered."""
    answered = complaint.answered_at
    return clock(
        [(complaint.at, answered)],
        limit=limit,
        calendar=calendar,
        now=now,
        stopped=answered is not None,
    )
