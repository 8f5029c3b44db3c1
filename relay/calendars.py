"""The node's working-day calendar: the default calendar with the office's official years.

An office loads the State Council's holiday notice for a year as a ``tongban-calendar/1``
file (see :mod:`agreements.calendar`) with ``tongban calendar import FILE``; it lands in
``<data_dir>/calendars/`` as ``cn-<years>.json``, written atomically (temporary file,
fsync, rename). :class:`CalendarDir` serves :func:`~agreements.calendar.default_calendar`
with every file of that folder laid over it (a loaded year is official, replacing what the
default had or computed for it). It looks at the folder again on each
:meth:`CalendarDir.current` and re-reads it only when the listing changed, so a file
imported while the node runs is used at once, without a restart. A file in the folder
that does not validate (or that covers a year another file already covers) is left out,
logged at ERROR and shown on the staff alert board.

Alerts (source ``calendar``):

- ``calendar-next-year-provisional`` (warning), from 1 December (China Standard Time)
  while next year has no official file: deadlines reaching into it are counted on the
  computed holidays without the 调休 days;
- ``calendar-file-invalid`` (critical): a file of the folder is not used;
- ``sla-clock-unknown`` (critical): a case's clock cannot be computed at all.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.errors import CalendarError
from relay.alerts import Severity, StaffAlert
from relay.cases.sla import local_date

__all__ = ["CalendarDir", "import_calendar", "validate_official"]

_log = logging.getLogger("tongban.relay.calendars")

MAX_FILE_BYTES = 256 * 1024


def validate_official(data: bytes) -> WorkingCalendar:
    """A calendar file an office may load: valid ``tongban-calendar/1``, and every year
    it covers lists its holidays (a notice without holidays is not a notice)."""
    if len(data) > MAX_FILE_BYTES:
        raise CalendarError(f"calendar file larger than {MAX_FILE_BYTES} bytes")
    cal = WorkingCalendar.from_bytes(data)
    empty = sorted(y for y in cal.years if not any(d.year == y for d in cal.holidays))
    if empty:
        raise CalendarError(f"no holidays listed for {', '.join(map(str, empty))}")
    return cal


def _file_name(cal: WorkingCalendar) -> str:
    return "cn-" + "-".join(str(y) for y in sorted(cal.years)) + ".json"


def import_calendar(data: bytes, directory: Path) -> tuple[WorkingCalendar, Path]:
    """Validate ``data`` and write it atomically into ``directory``.

    A file for exactly the same years is replaced (a corrected notice); a file that
    covers only some of the same years is refused, as the result would be ambiguous."""
    cal = validate_official(data)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / _file_name(cal)
    for path, other in _read_dir(directory)[0]:
        if path.name != target.name and other.years & cal.years:
            shared = ", ".join(str(y) for y in sorted(other.years & cal.years))
            raise CalendarError(f"{path.name} already covers {shared}; remove it first")
    fd, temp = tempfile.mkstemp(prefix=".import-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return cal, target


def _read_dir(
    directory: Path,
) -> tuple[list[tuple[Path, WorkingCalendar]], list[tuple[Path, str]]]:
    good: list[tuple[Path, WorkingCalendar]] = []
    bad: list[tuple[Path, str]] = []
    covered: set[int] = set()
    if not directory.is_dir():
        return good, bad
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):  # an import's staging file, left by a stop
            continue
        try:
            cal = validate_official(path.read_bytes())
        except (CalendarError, OSError) as exc:
            bad.append((path, str(exc)))
            continue
        if cal.years & covered:
            shared = ", ".join(str(y) for y in sorted(cal.years & covered))
            bad.append((path, f"covers {shared} as another file does"))
            continue
        covered |= cal.years
        good.append((path, cal))
    return good, bad


@dataclass(frozen=True)
class _Loaded:
    listing: tuple[tuple[str, int, int], ...]
    calendar: WorkingCalendar
    invalid: tuple[tuple[Path, str], ...]


class CalendarDir:
    """The default calendar with the official files of one folder laid over it."""

    def __init__(
        self, directory: Path, base: Callable[[], WorkingCalendar] = default_calendar
    ) -> None:
        self.directory = directory
        self._base = base()
        self._loaded: _Loaded | None = None

    def _listing(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return ()
        out = []
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                st = entry.stat()
                out.append((entry.name, st.st_mtime_ns, st.st_size))
        return tuple(sorted(out))

    def _load(self) -> _Loaded:
        listing = self._listing()
        if self._loaded is not None and self._loaded.listing == listing:
            return self._loaded
        good, bad = _read_dir(self.directory)
        for path, reason in bad:
            _log.error("calendar file %s not used: %s", path, reason)
        calendar = self._base.with_official(cal for _, cal in good)
        self._loaded = _Loaded(listing, calendar, tuple(bad))
        return self._loaded

    def current(self) -> WorkingCalendar:
        """The calendar now (re-reading the folder when its listing changed)."""
        return self._load().calendar

    def alerts(
        self, now: datetime, unknown_clocks: Callable[[datetime], Iterable[str]] = lambda _: ()
    ) -> list[StaffAlert]:
        """The calendar's standing alerts at ``now`` (see the module docstring)."""
        loaded = self._load()
        today = local_date(now)
        out = []
        if loaded.calendar.is_provisional(date(today.year, 1, 1)):  # the year has begun
            out.append(
                StaffAlert(
                    id=f"calendar:this-year:{today.year}",
                    source="calendar",
                    code="calendar-year-provisional",
                    severity=Severity.CRITICAL,
                    at=now,
                    title_zh=f"{today.year}年节假日安排尚未导入，本年期限均按暂定节假日安排计算",
                    title_en=f"The {today.year} holiday arrangement is not loaded; this year's "
                    "deadlines use provisional holidays",
                    detail=f"deadlines in {today.year} are counted on the statutory holidays "
                    "computed from the rules, without the State Council's make-up working "
                    "days (调休), so some are a day or more off. Write the published notice "
                    "as a tongban-calendar/1 file and run `tongban calendar import FILE "
                    "--config node.toml` on this node.",
                    subject=str(today.year),
                )
            )
        next_year = today.year + 1
        if today.month == 12 and loaded.calendar.is_provisional(date(next_year, 1, 1)):
            out.append(
                StaffAlert(
                    id=f"calendar:next-year:{next_year}",
                    source="calendar",
                    code="calendar-next-year-provisional",
                    severity=Severity.WARNING,
                    at=now,
                    title_zh=f"{next_year}年节假日安排尚未导入，期限按暂定节假日安排计算",
                    title_en=f"The {next_year} holiday arrangement is not loaded; "
                    "deadlines use provisional holidays",
                    detail=f"deadlines reaching into {next_year} are counted on the statutory "
                    "holidays computed from the rules, without the State Council's make-up "
                    "working days (调休). When the notice for "
                    f"{next_year} is published, write it as a tongban-calendar/1 file and run "
                    "`tongban calendar import FILE --config node.toml` on this node.",
                    subject=str(next_year),
                )
            )
        for path, reason in loaded.invalid:
            out.append(
                StaffAlert(
                    id=f"calendar:file:{path.name}",
                    source="calendar",
                    code="calendar-file-invalid",
                    severity=Severity.CRITICAL,
                    at=now,
                    title_zh="节假日安排文件无效，未被采用",
                    title_en="A holiday arrangement file is invalid and not used",
                    detail=f"{path}: {reason}. Fix the file and load it again with "
                    "`tongban calendar import FILE`, or remove it.",
                    subject=path.name,
                )
            )
        for case_id in unknown_clocks(now):
            out.append(
                StaffAlert(
                    id=f"calendar:clock:{case_id}",
                    source="calendar",
                    code="sla-clock-unknown",
                    severity=Severity.CRITICAL,
                    at=now,
                    title_zh="办理时限无法计算",
                    title_en="A case's time limit cannot be computed",
                    detail=f"the working-day calendar cannot count the dates of case {case_id} "
                    "(see the node's log); load the official calendar of those years with "
                    "`tongban calendar import FILE` and watch the deadline by hand until then.",
                    subject=case_id,
                )
            )
        return out
