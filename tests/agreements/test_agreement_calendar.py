"""Working-day arithmetic against a hand-made calendar and the bundled 2026 calendar."""

from __future__ import annotations

from datetime import date

import pytest

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.catalog import default_catalog
from agreements.errors import CalendarError

# Hand-made: a 5-day holiday Thu 2031-05-01 .. Mon 2031-05-05 with Sat 2031-05-10 worked.
HAND = WorkingCalendar.from_json(
    {
        "format": "tongban-calendar/1",
        "name": "hand-made",
        "source": "test",
        "years": [2031],
        "weekend": [6, 7],
        "holidays": [{"name": "h", "dates": [f"2031-05-0{d}" for d in range(1, 6)]}],
        "adjusted_working_days": [{"name": "w", "dates": ["2031-05-10"]}],
    }
)


def test_holiday_and_adjusted_weekend_by_hand() -> None:
    # Wed 30 Apr is day 0. Working days after it: Tue 6, Wed 7, Thu 8, Fri 9, Sat 10 (worked),
    # Mon 12, Tue 13 ...
    start = date(2031, 4, 30)
    assert [HAND.add_working_days(start, n).day for n in range(1, 8)] == [6, 7, 8, 9, 10, 12, 13]
    assert HAND.add_working_days(start, 0) == start
    assert HAND.is_working_day(date(2031, 5, 10))
    assert not HAND.is_working_day(date(2031, 5, 11))
    assert not HAND.is_working_day(date(2031, 5, 1))


def test_deadline_and_remaining_days_across_the_holiday() -> None:
    accepted = date(2031, 4, 29)  # Tue; day 1 is Wed 30 Apr, then 6, 7, 8, 9 May
    assert HAND.deadline(accepted, 5) == date(2031, 5, 9)
    assert HAND.working_days_between(accepted, date(2031, 5, 9)) == 5
    assert HAND.remaining_working_days(date(2031, 5, 2), date(2031, 5, 9)) == 4
    assert HAND.remaining_working_days(date(2031, 5, 9), date(2031, 5, 9)) == 0
    assert HAND.remaining_working_days(date(2031, 5, 12), date(2031, 5, 9)) == -2  # Sat 10, Mon 12


def test_outside_the_calendar_is_an_error_not_a_guess() -> None:
    with pytest.raises(CalendarError):
        HAND.is_working_day(date(2032, 1, 5))
    with pytest.raises(CalendarError):
        HAND.add_working_days(date(2031, 12, 30), 5)


def test_day_both_holiday_and_working_day_is_refused() -> None:
    with pytest.raises(CalendarError):
        WorkingCalendar.from_json(
            {
                "format": "tongban-calendar/1",
                "years": [2031],
                "holidays": [{"name": "h", "dates": ["2031-05-10"]}],
                "adjusted_working_days": [{"name": "w", "dates": ["2031-05-10"]}],
            }
        )


def test_bundled_2026_calendar_spring_festival() -> None:
    cal = default_calendar()
    assert "ASSUMPTION" in cal.source
    assert cal.is_working_day(date(2026, 2, 14))  # Saturday make-up day
    assert not cal.is_working_day(date(2026, 2, 17))  # 春节
    assert cal.is_working_day(date(2026, 2, 28))
    # Accepted Thu 12 Feb, 10 working days: 13, 14, 24, 25, 26, 27, 28, Mar 2, 3, 4.
    assert cal.deadline(date(2026, 2, 12), 10) == date(2026, 3, 4)
    assert (
        cal.working_days_between(date(2026, 9, 30), date(2026, 10, 12)) == 4
    )  # 8, 9, 10 (Sat), 12


def test_bundled_2026_calendar_working_day_count() -> None:
    # 261 weekdays, 19 of them holidays (1/1-2; 2/16-20, 2/23; 4/6; 5/1, 5/4-5; 6/19; 9/25;
    # 10/1-2, 10/5-7) and 6 make-up weekend days: 261 - 19 + 6 = 248. Jan 1 is a holiday,
    # so counting (Jan 1, Dec 31] loses nothing.
    cal = default_calendar()
    assert cal.working_days_between(date(2026, 1, 1), date(2026, 12, 31)) == 248


def test_catalog_holds_the_demo_matters() -> None:
    catalog = default_catalog()
    names = {e.name_zh for e in catalog}
    for name in (
        "农药经营许可",
        "出版物零售业务许可",
        "食品经营许可",
        "电影放映单位设立",
        "个体工商户登记",
        "建筑工程施工许可",
    ):
        assert name in names
    assert any(n.startswith("印刷经营许可") for n in names)
    assert all(e.department_zh and e.department_en and e.materials for e in catalog)
