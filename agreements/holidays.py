"""Statutory public holidays of mainland China computed from the rules, for any year.

The rules are those of 全国年节及纪念日放假办法 as amended by the State Council in
November 2024, in force from 1 January 2025 (article 2, holidays for all citizens):

=================  ====  ==========================================================
holiday            days  dates
=================  ====  ==========================================================
元旦 New Year        1    1 January
春节 Spring Festival 4    New Year's Eve (last day of lunar month 12), lunar 1/1-1/3
清明节 Qingming      1    the day of the Qingming solar term
劳动节 Labour Day    2    1-2 May
端午节 Dragon Boat   1    lunar 5/5
中秋节 Mid-Autumn    1    lunar 8/15
国庆节 National Day  3    1-3 October
=================  ====  ==========================================================

Lunar dates and the solar term come from ``lunar-python`` (6tail's lunar calendar
library, which computes the solar terms astronomically).

补假 (article 6: a holiday for all citizens that falls on a Saturday or Sunday is made
up on a working day). The State Council places make-up days in its yearly notice; until
that notice is loaded we place them by one fixed rule: every statutory day that falls
on a Saturday or Sunday, or on a day that is already a statutory day of another holiday
(National Day and Mid-Autumn can meet), is made up on the first Monday-to-Friday day
after it that is neither a statutory day nor a make-up day already placed. Statutory
days are taken in date order. The computed year has **no** adjusted working days
(调休): those exist only in the official notice.

Years before 2025 fall under the older rules (11 statutory days, Spring Festival from
lunar 1/1); they are refused with :class:`~agreements.errors.CalendarError` instead of
being guessed. Years after :data:`LAST_YEAR` are refused too (the lunar tables of the
library end there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from lunar_python import Lunar, Solar

from agreements.errors import CalendarError

__all__ = ["FIRST_YEAR", "LAST_YEAR", "Holiday", "computed_rest_days", "statutory_holidays"]

FIRST_YEAR = 2025  # the amended 办法 is in force from 1 January 2025
LAST_YEAR = 2099


@dataclass(frozen=True)
class Holiday:
    """One holiday of a year: its statutory days and the make-up days placed for it."""

    name_zh: str
    name_en: str
    days: tuple[date, ...]
    make_up: tuple[date, ...] = ()

    @property
    def rest_days(self) -> tuple[date, ...]:
        return tuple(sorted(self.days + self.make_up))


def _lunar(year: int, month: int, day: int) -> date:
    solar = Lunar.fromYmd(year, month, day).getSolar()
    return date(solar.getYear(), solar.getMonth(), solar.getDay())


def _qingming(year: int) -> date:
    solar = Solar.fromYmd(year, 4, 15).getLunar().getJieQiTable()["清明"]
    day = date(solar.getYear(), solar.getMonth(), solar.getDay())
    if day.year != year or day.month != 4:
        raise CalendarError(f"Qingming of {year} not found by the lunar library")
    return day


def _statutory(year: int) -> list[tuple[str, str, tuple[date, ...]]]:
    new_year = _lunar(year, 1, 1)
    return [
        ("元旦", "New Year's Day", (date(year, 1, 1),)),
        (
            "春节",
            "Spring Festival",
            tuple(new_year + timedelta(days=i) for i in range(-1, 3)),
        ),
        ("清明节", "Qingming Festival", (_qingming(year),)),
        ("劳动节", "Labour Day", (date(year, 5, 1), date(year, 5, 2))),
        ("端午节", "Dragon Boat Festival", (_lunar(year, 5, 5),)),
        ("中秋节", "Mid-Autumn Festival", (_lunar(year, 8, 15),)),
        ("国庆节", "National Day", tuple(date(year, 10, d) for d in (1, 2, 3))),
    ]


@lru_cache(maxsize=128)
def statutory_holidays(year: int) -> tuple[Holiday, ...]:
    """The holidays of ``year`` with their statutory days and computed make-up days."""
    if year < FIRST_YEAR:
        raise CalendarError(
            f"{year} falls under the holiday rules before the 2024 amendment; "
            "load the official calendar of that year"
        )
    if year > LAST_YEAR:
        raise CalendarError(f"{year} is beyond the computed calendar (up to {LAST_YEAR})")
    listed = _statutory(year)
    statutory = {d for _, _, days in listed for d in days}
    taken: set[date] = set(statutory)
    seen: set[date] = set()
    make_up: dict[str, list[date]] = {zh: [] for zh, _, _ in listed}
    for day, zh in sorted((d, zh) for zh, _, days in listed for d in days):
        collides = day in seen
        seen.add(day)
        if day.isoweekday() < 6 and not collides:
            continue
        sub = day + timedelta(days=1)
        while sub.isoweekday() >= 6 or sub in taken:
            sub += timedelta(days=1)
        taken.add(sub)
        make_up[zh].append(sub)
    return tuple(Holiday(zh, en, days, tuple(make_up[zh])) for zh, en, days in listed)


@lru_cache(maxsize=128)
def computed_rest_days(year: int) -> frozenset[date]:
    """Every statutory and make-up day of ``year`` (a provisional year's holidays)."""
    return frozenset(d for h in statutory_holidays(year) for d in h.rest_days)
