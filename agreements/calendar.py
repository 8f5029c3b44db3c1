"""Working-day arithmetic from a holiday calendar data file.

A working day is a day of a covered year that is either an *adjusted working day*
(调休: a weekend day worked to make up for a holiday bridge) or a weekday (by default
Monday..Friday, ISO weekdays not in ``weekend``) that is not a public holiday.

Counting follows the usual rule for statutory periods (期间开始的当日不计入): the
day a time limit starts on does not count; the deadline of ``n`` working days from
``start`` is the ``n``-th working day after ``start``. Asking about a date outside the
calendar's covered years raises :class:`~agreements.errors.CalendarError` rather than
guessing.

Official and provisional years: the years of a calendar file are *official* (the State
Council's arrangement with its 调休 days, as loaded). A calendar built with
``compute_missing=True`` (as :func:`default_calendar` is) also answers for every other
year from 2025 on, from the statutory holidays computed by :mod:`agreements.holidays`
(with their make-up days, no 调休); such a year is *provisional*
(:meth:`WorkingCalendar.is_provisional`) and clocks counted on it say so. Years before
2025 without a file still raise :class:`~agreements.errors.CalendarError`.

Calendar file (``tongban-calendar/1``)::

    {"format": "tongban-calendar/1", "name": "...", "source": "...",
     "years": [2026], "weekend": [6, 7],
     "holidays": [{"name": "...", "dates": ["2026-01-01", ...]}, ...],
     "adjusted_working_days": [{"name": "...", "dates": ["2026-01-04"]}, ...]}
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from importlib import resources
from typing import Any

from agreements.errors import CalendarError
from agreements.holidays import computed_rest_days

__all__ = ["WorkingCalendar", "default_calendar"]

_MAX_SPAN = 3660  # days: never scan further than about ten years


def _dates(groups: Any, where: str, years: frozenset[int]) -> frozenset[date]:
    if not isinstance(groups, list):
        raise CalendarError(f"{where} must be an array")
    out: set[date] = set()
    for gi, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("dates"), list):
            raise CalendarError(f"{where}/{gi} must be an object with dates")
        for di, text in enumerate(group["dates"]):
            try:
                day = date.fromisoformat(text)
            except (TypeError, ValueError):
                raise CalendarError(f"{where}/{gi}/dates/{di}: not an ISO date") from None
            if day.year not in years:
                raise CalendarError(f"{where}/{gi}/dates/{di}: {day} outside the covered years")
            out.add(day)
    return frozenset(out)


@dataclass(frozen=True)
class WorkingCalendar:
    name: str
    source: str
    years: frozenset[int]
    weekend: frozenset[int]  # ISO weekdays (1 = Monday .. 7 = Sunday)
    holidays: frozenset[date]
    adjusted_working_days: frozenset[date]
    compute_missing: bool = False  # answer for uncovered years from the computed rules

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of what the calendar counts (years, weekend, holidays, adjusted
        working days, whether it computes the years it lacks): equal for equal calendars,
        so what was computed with one is known to hold for the other."""
        text = repr((
            sorted(self.years), sorted(self.weekend), sorted(self.holidays),
            sorted(self.adjusted_working_days), self.compute_missing,
        ))  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def __post_init__(self) -> None:
        clash = self.holidays & self.adjusted_working_days
        if clash:
            raise CalendarError(f"{min(clash)} is both a holiday and an adjusted working day")
        if not self.years and not self.compute_missing:
            raise CalendarError("a calendar must cover at least one year")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> WorkingCalendar:
        if obj.get("format") != "tongban-calendar/1":
            raise CalendarError("format must be 'tongban-calendar/1'")
        years = obj.get("years")
        if not isinstance(years, list) or not all(isinstance(y, int) for y in years):
            raise CalendarError("years must be an array of integers")
        ys = frozenset(years)
        weekend = obj.get("weekend", [6, 7])
        if not isinstance(weekend, list) or not all(w in range(1, 8) for w in weekend):
            raise CalendarError("weekend must list ISO weekdays 1..7")
        return cls(
            name=str(obj.get("name", "")),
            source=str(obj.get("source", "")),
            years=ys,
            weekend=frozenset(weekend),
            holidays=_dates(obj.get("holidays"), "/holidays", ys),
            adjusted_working_days=_dates(
                obj.get("adjusted_working_days", []), "/adjusted_working_days", ys
            ),
        )

    @classmethod
    def computed(cls) -> WorkingCalendar:
        """A calendar with no official year: every year computed (provisional)."""
        return cls(
            name="computed from the statutory rules",
            source="agreements.holidays",
            years=frozenset(),
            weekend=frozenset({6, 7}),
            holidays=frozenset(),
            adjusted_working_days=frozenset(),
            compute_missing=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkingCalendar:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CalendarError(f"calendar is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CalendarError("calendar must be a JSON object")
        return cls.from_json(obj)

    def merged(self, others: Iterable[WorkingCalendar]) -> WorkingCalendar:
        """One calendar covering the years of this one and ``others``."""
        cals = [self, *others]
        return WorkingCalendar(
            name=" + ".join(c.name for c in cals),
            source=" | ".join(c.source for c in cals),
            years=frozenset().union(*(c.years for c in cals)),
            weekend=self.weekend,
            holidays=frozenset().union(*(c.holidays for c in cals)),
            adjusted_working_days=frozenset().union(*(c.adjusted_working_days for c in cals)),
            compute_missing=self.compute_missing,
        )

    def with_official(self, others: Iterable[WorkingCalendar]) -> WorkingCalendar:
        """This calendar with the years of ``others`` taken from them (an office's
        official file for a year wins over what this calendar had for that year)."""
        cals = list(others)
        replaced: frozenset[int] = frozenset().union(*(c.years for c in cals))

        def keep(days: frozenset[date]) -> frozenset[date]:
            return frozenset(d for d in days if d.year not in replaced)

        return WorkingCalendar(
            name=" + ".join(c.name for c in [self, *cals]),
            source=" | ".join(c.source for c in [self, *cals]),
            years=self.years | replaced,
            weekend=self.weekend,
            holidays=keep(self.holidays).union(*(c.holidays for c in cals)),
            adjusted_working_days=keep(self.adjusted_working_days).union(
                *(c.adjusted_working_days for c in cals)
            ),
            compute_missing=self.compute_missing,
        )

    def is_provisional(self, day: date) -> bool:
        """Whether ``day``'s year is computed from the rules rather than loaded."""
        return day.year not in self.years

    def provisional_between(self, a: date, b: date) -> bool:
        """Whether any year from ``a`` to ``b`` (either order) is provisional."""
        lo, hi = min(a, b), max(a, b)
        return any(y not in self.years for y in range(lo.year, hi.year + 1))

    def is_working_day(self, day: date) -> bool:
        if day.year in self.years:
            if day in self.adjusted_working_days:
                return True
            return day.isoweekday() not in self.weekend and day not in self.holidays
        if not self.compute_missing:
            raise CalendarError(f"{day} is outside the calendar ({sorted(self.years)})")
        return day.isoweekday() not in self.weekend and day not in computed_rest_days(day.year)

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself not counted)."""
        if n < 0:
            raise CalendarError("n must not be negative")
        day, left, steps = start, n, 0
        while left:
            day += timedelta(days=1)
            steps += 1
            if steps > _MAX_SPAN:
                raise CalendarError("time limit spans more than ten years")
            if self.is_working_day(day):
                left -= 1
        return day

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in ``(a, b]``; negative (counting ``(b, a]``) when ``b < a``."""
        if b < a:
            return -self.working_days_between(b, a)
        if (b - a).days > _MAX_SPAN:
            raise CalendarError("span longer than ten years")
        return sum(
            1 for i in range(1, (b - a).days + 1) if self.is_working_day(a + timedelta(days=i))
        )

    def deadline(self, start: date, limit_working_days: int) -> date:
        """The last day of a time limit of ``limit_working_days`` starting on ``start``."""
        return self.add_working_days(start, limit_working_days)

    def remaining_working_days(self, today: date, deadline: date) -> int:
        """Working days left after ``today`` up to ``deadline``; negative when overdue."""
        return self.working_days_between(today, deadline)


def default_calendar() -> WorkingCalendar:
    """The mainland-China calendar for any year from 2025: the bundled official 2026
    arrangement (see its ``source`` field), every other year computed and provisional."""
    data = resources.files("agreements.data").joinpath("calendar-cn-2026.json").read_bytes()
    return replace(WorkingCalendar.from_bytes(data), compute_missing=True)
