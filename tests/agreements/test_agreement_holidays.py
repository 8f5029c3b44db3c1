"""Statutory holidays computed from the 2024 rules, judged by official data."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar  # official arrangements 2025-2026 (test-only dependency)
import pytest
from lunardate import LunarDate  # independent lunar tables (test-only dependency)

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.errors import CalendarError
from agreements.holidays import (
    FIRST_YEAR,
    LAST_YEAR,
    computed_rest_days,
    statutory_holidays,
)


def _d(text: str) -> date:
    return date.fromisoformat(text)


def test_the_provisional_2027_calendar_matches_the_statutory_holiday_list() -> None:
    # 2027: lunar new year Sat 6 Feb, Qingming Mon 5 Apr, Dragon Boat Wed 9 Jun,
    # Mid-Autumn Wed 15 Sep; weekend statutory days made up on the next free weekday.
    expected = {
        "元旦": (["2027-01-01"], []),
        "春节": (
            ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"],
            ["2027-02-09", "2027-02-10"],
        ),
        "清明节": (["2027-04-05"], []),
        "劳动节": (["2027-05-01", "2027-05-02"], ["2027-05-03", "2027-05-04"]),
        "端午节": (["2027-06-09"], []),
        "中秋节": (["2027-09-15"], []),
        "国庆节": (["2027-10-01", "2027-10-02", "2027-10-03"], ["2027-10-04", "2027-10-05"]),
    }
    got = {
        h.name_zh: ([d.isoformat() for d in h.days], [d.isoformat() for d in h.make_up])
        for h in statutory_holidays(2027)
    }
    assert got == expected
    assert sum(len(h.days) for h in statutory_holidays(2027)) == 13


def test_the_default_calendar_answers_2027_as_provisional_from_the_computed_holidays() -> None:
    cal = default_calendar()
    assert cal.is_provisional(_d("2027-03-01"))
    assert not cal.is_provisional(_d("2026-03-02"))
    assert not cal.is_working_day(_d("2027-02-10"))  # Spring Festival make-up day (Wed)
    assert cal.is_working_day(_d("2027-02-11"))
    assert not cal.is_working_day(_d("2027-02-13"))  # an ordinary Saturday
    assert cal.working_days_between(_d("2027-09-30"), _d("2027-10-08")) == 3  # 30 Sep..8 Oct


@pytest.mark.parametrize("year", [2025, 2026])
def test_computed_holidays_2025_2026_are_all_rest_days_in_chinese_calendar(year: int) -> None:
    rest = computed_rest_days(year)
    assert len(rest) >= 13
    working = sorted(d for d in rest if chinese_calendar.is_workday(d))
    assert working == []
    for holiday in statutory_holidays(year):
        for day in holiday.days:
            on_holiday, name = chinese_calendar.get_holiday_detail(day)
            assert on_holiday, day
            assert name is not None, day


def test_computed_2026_holidays_are_rest_days_in_the_bundled_official_2026_file() -> None:
    official = default_calendar()
    assert 2026 in official.years
    working = sorted(d for d in computed_rest_days(2026) if official.is_working_day(d))
    assert working == []


def test_a_weekend_statutory_day_is_made_up_after_the_whole_holiday() -> None:
    # 2026: Qingming Sun 5 Apr -> Mon 6 Apr; Labour Day Sat 2 May -> Mon 4 May;
    # National Day Sat 3 Oct -> Mon 5 Oct.
    make_up = {h.name_zh: h.make_up for h in statutory_holidays(2026)}
    assert make_up["清明节"] == (_d("2026-04-06"),)
    assert make_up["劳动节"] == (_d("2026-05-04"),)
    assert make_up["国庆节"] == (_d("2026-10-05"),)
    for holiday in statutory_holidays(2026):
        for day in holiday.make_up:
            assert day.isoweekday() <= 5


def test_a_mid_autumn_on_national_day_is_made_up_as_well() -> None:
    # Mid-Autumn falls on 1 October in 2031 (lunar 8/15 = Wed 1 Oct 2031).
    holidays = {h.name_zh: h for h in statutory_holidays(2031)}
    assert holidays["中秋节"].days == (_d("2031-10-01"),)
    # Wed 1 Oct counts once for two holidays: one day made up, on Mon 6 Oct.
    made_up = [d for h in holidays.values() for d in h.make_up if d.month == 10]
    assert made_up == [_d("2031-10-06")]
    assert _d("2031-10-06") in computed_rest_days(2031)


def test_years_before_the_2024_rules_are_refused_not_guessed() -> None:
    with pytest.raises(CalendarError, match="before the 2024 amendment"):
        statutory_holidays(2024)
    with pytest.raises(CalendarError):
        default_calendar().is_working_day(_d("2024-10-08"))


def test_an_official_year_loaded_over_the_computed_one_stops_being_provisional() -> None:
    notice = WorkingCalendar.from_json(
        {
            "format": "tongban-calendar/1",
            "name": "2027 notice",
            "source": "test",
            "years": [2027],
            "holidays": [{"name": "春节", "dates": ["2027-02-05", "2027-02-12"]}],
            "adjusted_working_days": [{"name": "调休", "dates": ["2027-02-20"]}],
        }
    )
    cal = default_calendar().with_official([notice])
    assert not cal.is_provisional(_d("2027-03-01"))
    assert cal.is_working_day(_d("2027-02-10"))  # the computed make-up day is gone
    assert not cal.is_working_day(_d("2027-02-12"))
    assert cal.is_working_day(_d("2027-02-20"))  # 调休 Saturday
    assert not cal.is_working_day(_d("2026-02-16"))  # 2026 still official, from the bundle
    assert cal.is_provisional(_d("2028-01-03"))


def test_the_bundled_official_2026_file_agrees_day_by_day_with_chinese_calendar() -> None:
    cal = default_calendar()
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    differ = [d for d in days if cal.is_working_day(d) != chinese_calendar.is_workday(d)]
    assert differ == []


def test_the_lunar_holidays_agree_with_an_independent_lunar_library_to_2099() -> None:
    # lunardate (its own tables, 1900-2099) judges lunar-python's conversions
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        got = {h.name_zh: h.days for h in statutory_holidays(year)}
        new_year = LunarDate(year, 1, 1).to_solar_date()
        assert got["春节"] == tuple(new_year + timedelta(days=i) for i in range(-1, 3)), year
        assert got["端午节"] == (LunarDate(year, 5, 5).to_solar_date(),), year
        assert got["中秋节"] == (LunarDate(year, 8, 15).to_solar_date(),), year
        eve = got["春节"][0]
        assert LunarDate.from_solar_date(eve.year, eve.month, eve.day).month == 12, year
