"""The node's calendar: official files in the data dir, provisional years, their alerts.

Instants are derived from the clock of the case fixtures (whatever year it is in), so
these tests say the same thing in any year.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path

import aiohttp
import pytest
from casekit import HANDLING
from casekit_offices import Clock, make_offices, serve

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.errors import CalendarError
from agreements.holidays import statutory_holidays
from relay.alerts import ALERTS, AlertBoard
from relay.calendars import CalendarDir, import_calendar
from relay.cases.sla import CHINA_TIME, local_date
from relay.cli import main
from relay.config import Limits
from relay.http.case_services import CaseServices
from relay.http.staff import staff_app
from relay.staff_auth import StaffRole

BOOKS = "publication-retail-licence"  # 20 working days


def notice(*years: int, extra_working: tuple[str, ...] = ()) -> bytes:
    """A tongban-calendar/1 file as an office writes it from the State Council notice
    (here: the computed holidays, plus any 调休 Saturday given)."""
    return json.dumps(
        {
            "format": "tongban-calendar/1",
            "name": f"notice {years}",
            "source": "test",
            "years": list(years),
            "holidays": [
                {"name": h.name_zh, "dates": [d.isoformat() for d in h.rest_days]}
                for y in years
                for h in statutory_holidays(y)
            ],
            "adjusted_working_days": [{"name": "调休", "dates": list(extra_working)}],
        },
        ensure_ascii=False,
    ).encode()


def this_year_loaded(folder: Path, year: int) -> None:
    """The folder holds ``year``'s arrangement unless the bundled calendar has it (the
    tests run in any year, and a year begun without its file has an alert of its own)."""
    if default_calendar().is_provisional(date(year, 1, 1)):
        import_calendar(notice(year), folder)


def cst(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), CHINA_TIME)


def codes(alerts: list) -> list[tuple[str, str]]:
    return [(a.code, a.subject) for a in alerts]


@pytest.fixture
def year(clock: Clock) -> int:
    return max(local_date(clock()).year, 2026)


# -- import ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not json", "not JSON"),
        (b'{"format": "tongban-calendar/2", "years": [2030]}', "format must be"),
        (
            b'{"format": "tongban-calendar/1", "years": [2030], "holidays": '
            b'[{"name": "x", "dates": ["2031-01-01"]}]}',
            "outside the covered years",
        ),
        (
            b'{"format": "tongban-calendar/1", "years": [2030], "holidays": '
            b'[{"name": "x", "dates": ["2030-02-30"]}]}',
            "not an ISO date",
        ),
        (
            b'{"format": "tongban-calendar/1", "years": [2030, 2031], "holidays": '
            b'[{"name": "x", "dates": ["2030-01-01"]}]}',
            "no holidays listed for 2031",
        ),
        (
            b'{"format": "tongban-calendar/1", "years": [2030], "holidays": '
            b'[{"name": "x", "dates": ["2030-01-01"]}], "adjusted_working_days": '
            b'[{"name": "y", "dates": ["2030-01-01"]}]}',
            "both a holiday and an adjusted working day",
        ),
    ],
)
def test_import_refuses_a_bad_file_with_a_clear_message_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, says: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    code = main(["calendar", "import", str(bad), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error[calendar-invalid]" in err
    assert says in err
    assert "nothing loaded" in err
    assert not (tmp_path / "data" / "calendars").exists() or not any(
        (tmp_path / "data" / "calendars").iterdir()
    )


def test_a_loaded_official_year_stops_being_provisional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], year: int
) -> None:
    data_dir = tmp_path / "data"
    nxt = year + 1
    assert main(["calendar", "show", str(nxt), "--data-dir", str(data_dir)]) == 0
    assert f"{nxt}: provisional — 按暂定节假日安排计算" in capsys.readouterr().out
    for bad in ("0", "10000", "99999999999999999999", "２０２６"):  # a traceback before
        with pytest.raises(SystemExit) as caught:
            main(["calendar", "show", bad, "--data-dir", str(data_dir)])
        assert caught.value.code == 2
        assert "not a year from 1 to 9998" in capsys.readouterr().err
    saturday = next(
        date(nxt, 3, 1) + timedelta(days=i)
        for i in range(7)
        if (date(nxt, 3, 1) + timedelta(days=i)).isoweekday() == 6
    )
    (tmp_path / "n.json").write_bytes(notice(nxt, extra_working=(saturday.isoformat(),)))
    assert main(["calendar", "import", str(tmp_path / "n.json"), "--data-dir", str(data_dir)]) == 0
    assert f"loaded {nxt} as official" in capsys.readouterr().out
    assert [p.name for p in (data_dir / "calendars").iterdir()] == [f"cn-{nxt}.json"]
    cal = CalendarDir(data_dir / "calendars").current()
    assert not cal.is_provisional(date(nxt, 6, 1))
    assert cal.is_working_day(saturday)
    assert main(["calendar", "show", str(nxt), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{nxt}: official — 正式安排" in out
    assert f"working weekend days 调休 (1): {saturday.isoformat()}" in out


def test_a_running_node_uses_a_newly_imported_year_without_restart(
    tmp_path: Path, year: int
) -> None:
    cals = CalendarDir(tmp_path / "calendars")
    nxt = year + 1
    assert cals.current().is_provisional(date(nxt, 1, 4))
    import_calendar(notice(nxt), tmp_path / "calendars")
    assert not cals.current().is_provisional(date(nxt, 1, 4))


def test_a_file_overlapping_another_years_file_is_refused(tmp_path: Path, year: int) -> None:
    import_calendar(notice(year + 1, year + 2), tmp_path)
    with pytest.raises(CalendarError, match="already covers"):
        import_calendar(notice(year + 2), tmp_path)
    _, path = import_calendar(notice(year + 1, year + 2), tmp_path)  # a corrected notice
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_an_invalid_file_in_the_folder_is_left_out_logged_and_alerted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, year: int
) -> None:
    this_year_loaded(tmp_path, year)
    (tmp_path / "cn-broken.json").write_text("{")
    with caplog.at_level(logging.ERROR, logger="tongban.relay.calendars"):
        cals = CalendarDir(tmp_path)
        cal = cals.current()
    assert "cn-broken.json not used" in caplog.text
    assert cal.is_provisional(date(year + 1, 1, 4))
    alerts = cals.alerts(cst(date(year, 6, 1), 12))
    assert codes(alerts) == [("calendar-file-invalid", "cn-broken.json")]


# -- the December alert ------------------------------------------------------------


def test_the_next_year_alert_appears_on_1_december_and_not_on_30_november(
    tmp_path: Path, year: int
) -> None:
    this_year_loaded(tmp_path, year)
    cals = CalendarDir(tmp_path)
    last_moment_of_november = cst(date(year, 12, 1)) - timedelta(seconds=1)
    assert cals.alerts(last_moment_of_november) == []
    (alert,) = cals.alerts(cst(date(year, 12, 1)))
    assert (alert.code, alert.subject, alert.source) == (
        "calendar-next-year-provisional",
        str(year + 1),
        "calendar",
    )
    assert alert.title_zh.startswith(f"{year + 1}年节假日安排尚未导入")
    assert "tongban calendar import" in alert.detail
    assert codes(cals.alerts(cst(date(year, 12, 31), 23))) == [
        ("calendar-next-year-provisional", str(year + 1))
    ]


def test_no_next_year_alert_when_next_years_official_file_is_loaded(
    tmp_path: Path, year: int
) -> None:
    this_year_loaded(tmp_path, year)
    import_calendar(notice(year + 1), tmp_path)
    assert CalendarDir(tmp_path).alerts(cst(date(year, 12, 1))) == []


def test_a_year_begun_without_its_arrangement_is_alerted_all_year(
    tmp_path: Path, year: int
) -> None:
    """The December alert went away on 1 January though nobody had loaded the year: its
    deadlines were then counted on provisional holidays all year, with nothing on the
    board. A staging file a stopped import left behind is no arrangement either."""
    (tmp_path / ".import-k9x2.json").write_bytes(notice(year + 1))  # a stop mid-import
    cals = CalendarDir(tmp_path)
    for day in (date(year + 1, 1, 1), date(year + 1, 6, 1), date(year + 1, 11, 30)):
        assert codes(cals.alerts(cst(day, 9))) == [("calendar-year-provisional", str(year + 1))]
    assert cals.alerts(cst(date(year + 1, 1, 1), 9))[0].severity.value == "critical"
    import_calendar(notice(year + 1), tmp_path)  # not refused for the leftover
    assert cals.alerts(cst(date(year + 1, 6, 1), 9)) == []


async def test_the_staff_board_shows_the_calendar_alert_from_1_december(
    office_pki, tmp_path: Path, clock: Clock, year: int
) -> None:
    this_year_loaded(tmp_path / "calendars", year)
    cals = CalendarDir(tmp_path / "calendars")
    offices = make_offices(office_pki, tmp_path, clock, calendar=cals.current)
    try:
        r = offices.r
        app = staff_app(
            r.relay, node_id=r.node_id, token_key=r.token_key.public_key(), clock=clock,
            limits=Limits(),
        )  # fmt: skip
        assert isinstance(app[ALERTS], AlertBoard)
        CaseServices(r.desk, r.verifier, r.relay, r.cases, None, cals).add_routes("staff", app)
        async with serve(app) as url, aiohttp.ClientSession() as http:

            async def board() -> list[tuple[str, str]]:
                token = r.staff_token(clock, StaffRole.READER)
                async with http.get(
                    f"{url}/staff/v1/alerts", headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                return [(a["code"], a["subject"]) for a in body["alerts"]]

            clock.now = cst(date(year, 11, 30), 23)
            assert board_codes_calendar(await board()) == []
            clock.now = cst(date(year, 12, 1), 9)
            assert board_codes_calendar(await board()) == [
                ("calendar-next-year-provisional", str(year + 1))
            ]
            import_calendar(notice(year + 1), tmp_path / "calendars")
            assert board_codes_calendar(await board()) == []
    finally:
        offices.close()


def board_codes_calendar(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [i for i in items if i[0].startswith("calendar-")]


# -- provisional clocks in the API -------------------------------------------------


async def test_tracking_and_staff_json_say_provisional_and_keep_counting(
    office_pki, tmp_path: Path, clock: Clock
) -> None:
    computed = WorkingCalendar.computed()
    offices = make_offices(office_pki, tmp_path, clock, calendar=lambda: computed)
    try:
        await offices.r.desk.open_case(
            matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-PROV-1"
        )
        await offices.deliver()
        record = offices.h.desk.get("WC-PROV-1")
        view = offices.h.desk.view(record, "zh")
        assert view["provisional"] is True
        assert view["deadline"] is not None
        report = offices.h.desk.clock_of(record.case, clock())
        assert report.to_json()["provisional"] is True
        deadline = report.deadline
        assert deadline is not None
        late = offices.h.desk.clock_of(record.case, cst(deadline + timedelta(days=1), 12))
        assert late.colour.value == "red"
    finally:
        offices.close()


def test_the_default_calendar_keeps_its_official_year() -> None:
    cal = default_calendar()
    assert not cal.is_provisional(date(2026, 10, 8))
    assert cal.is_provisional(date(2027, 10, 8))


async def test_a_clock_the_calendar_cannot_count_is_grey_listed_and_alerted(
    office_pki, tmp_path: Path, clock: Clock, year: int, caplog: pytest.LogCaptureFixture
) -> None:
    # a calendar that answers only for a year far from the case (no computed years)
    strict = WorkingCalendar.from_bytes(notice(year + 5))
    offices = make_offices(office_pki, tmp_path, clock, calendar=lambda: strict)
    try:
        await offices.r.desk.open_case(
            matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-GREY-1"
        )
        await offices.deliver()
        desk = offices.h.desk
        with caplog.at_level(logging.ERROR, logger="tongban.relay.cases.sla"):
            (listed,) = desk.overdue(clock())
        assert listed.clock.colour.value == "grey"
        assert listed.clock.state.value == "unknown"
        assert "SLA clock not computed" in caplog.text
        alerts = CalendarDir(tmp_path / "calendars").alerts(clock(), desk.unknown_clocks)
        assert ("sla-clock-unknown", "WC-GREY-1") in codes(alerts)
    finally:
        offices.close()
