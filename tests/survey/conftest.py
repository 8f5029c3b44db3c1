"""Fixtures for the survey tests (helpers live in ``survey_support``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from survey_support import FinishedSurvey, Pki, make_pki, make_plan, run_survey

from remote_survey.session import SurveyPlan


@pytest.fixture(scope="session")
def base() -> datetime:
    """Three hours before the run, so certificates issued at ``base`` are valid throughout."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


@pytest.fixture
def plan(base: datetime) -> SurveyPlan:
    return make_plan(base)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory, base: datetime) -> Pki:
    return make_pki(tmp_path_factory.mktemp("survey-pki"), base)


@pytest.fixture
def survey(base: datetime, tmp_path: Path, pki: Pki) -> FinishedSurvey:
    return run_survey(base, tmp_path / "media", pki)
