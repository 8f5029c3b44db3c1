"""Fixtures for the case tests (helpers live in casekit.py, a unique module name)."""

from __future__ import annotations

import pytest

from agreements.calendar import WorkingCalendar, default_calendar


@pytest.fixture(scope="session")
def calendar() -> WorkingCalendar:
    return default_calendar()
