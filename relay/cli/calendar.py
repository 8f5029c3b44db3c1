"""``tongban calendar``: load an official holiday arrangement, show a year's rest days.

- ``tongban calendar import FILE (--config node.toml | --data-dir DIR)`` validates a
  ``tongban-calendar/1`` file (the State Council's notice for a year, with its 调休 days)
  and writes it atomically into ``<data_dir>/calendars/``; a running node uses it from
  the next request on. A bad file is refused (exit 1, ``error[calendar-invalid]``) and
  nothing is written.
- ``tongban calendar show YEAR [--config node.toml | --data-dir DIR]`` prints the year's
  rest days that fall Monday to Friday, its working weekend days and whether the year is
  official (loaded) or provisional (computed from the statutory rules).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.errors import CalendarError
from agreements.holidays import statutory_holidays
from relay.calendars import CalendarDir, import_calendar
from relay.cli._common import CliError, read_bytes
from relay.config import ConfigError, load_config

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calendar = subparsers.add_parser(
        "calendar",
        help="working-day calendar: import an official holiday notice, show a year",
        description="Official holiday arrangements (国务院办公厅节假日安排通知) loaded into "
        "the node's data dir win over the holidays computed from the statutory rules.",
    )
    sub = calendar.add_subparsers(dest="calendar_command", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser("import", help="validate a tongban-calendar/1 file and load it")
    imp.add_argument("file", help="the calendar file (JSON, format tongban-calendar/1)")
    _node_args(imp, required=True)
    imp.set_defaults(handler=_import)
    show = sub.add_parser("show", help="a year's rest days and whether it is provisional")
    show.add_argument("year", type=_year)
    _node_args(show, required=False)
    show.set_defaults(handler=_show)


def _year(text: str) -> int:
    """A year a calendar can hold (ASCII digits: ``int`` takes full-width ones too)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 9998:
        raise argparse.ArgumentTypeError(f"{text!r} is not a year from 1 to 9998")
    return int(text)


def _node_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--config", help="the node's node.toml (its data_dir is used)")
    where.add_argument("--data-dir", help="the node's data dir")


def _calendars_dir(args: argparse.Namespace) -> Path | None:
    if args.data_dir:
        return Path(args.data_dir) / "calendars"
    if args.config:
        try:
            return load_config(args.config).data_dir / "calendars"
        except ConfigError as exc:
            raise CliError("config", str(exc)) from None
    return None


def _import(args: argparse.Namespace) -> int:
    directory = _calendars_dir(args)
    assert directory is not None  # the argument group is required
    data = read_bytes(args.file, "calendar file")
    try:
        cal, path = import_calendar(data, directory)
    except CalendarError as exc:
        raise CliError("calendar-invalid", f"{args.file}: {exc}; nothing loaded", 1) from None
    except OSError as exc:
        raise CliError("calendar-write", f"cannot write into {directory}: {exc}", 2) from None
    years = ", ".join(str(y) for y in sorted(cal.years))
    sys.stdout.write(f"loaded {years} as official (正式安排) from {args.file} into {path}\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    directory = _calendars_dir(args)
    cal = default_calendar() if directory is None else CalendarDir(directory).current()
    year: int = args.year
    try:
        lines = _describe(cal, year)
    except CalendarError as exc:
        raise CliError("calendar-year", f"no calendar for {year}: {exc}", 1) from None
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def _describe(cal: WorkingCalendar, year: int) -> list[str]:
    days = [date(year, 1, 1) + timedelta(days=i) for i in range(366)]
    days = [d for d in days if d.year == year]
    rest = [d for d in days if d.isoweekday() <= 5 and not cal.is_working_day(d)]
    worked = [d for d in days if d.isoweekday() > 5 and cal.is_working_day(d)]
    if cal.is_provisional(date(year, 1, 1)):
        lines = [
            f"{year}: provisional — 按暂定节假日安排计算 (statutory holidays computed from the "
            "rules, no 调休 days; load the official notice with `tongban calendar import`)"
        ]
        for h in statutory_holidays(year):
            made = ", ".join(d.isoformat() for d in h.make_up)
            lines.append(
                f"  {h.name_zh} {h.name_en}: {', '.join(d.isoformat() for d in h.days)}"
                + (f" (补假 made up: {made})" if made else "")
            )
    else:
        lines = [f"{year}: official — 正式安排 (loaded)"]
    lines.append(f"rest days Monday-Friday ({len(rest)}): {', '.join(map(str, rest)) or '-'}")
    lines.append(f"working weekend days 调休 ({len(worked)}): {', '.join(map(str, worked)) or '-'}")
    lines.append(f"working days: {sum(1 for d in days if cal.is_working_day(d))}")
    return lines
