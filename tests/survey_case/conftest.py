"""Fixtures of tests/survey_case (the kit is survey_case_kit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from survey_case_kit import HANDLING, RECEIVING, Office, casekit_offices, make_office, node_config


@pytest.fixture(scope="session")
def office_pki(tmp_path_factory: pytest.TempPathFactory) -> casekit_offices.Pki:
    # the nodes run on the wall clock: PKI and agreement made a day before the real now
    then = datetime.now(UTC) - timedelta(days=1)
    return casekit_offices.make_pki(tmp_path_factory.mktemp("survey-case-pki"), then)


@pytest.fixture
async def offices(office_pki, tmp_path: Path) -> AsyncIterator[tuple[Office, Office]]:
    """(receiving office 420106, which surveys; handling office 320982, which asks)."""
    free = casekit_offices.free_port
    ports = {n: {k: free() for k in ("federation", "public", "staff")}
             for n in (RECEIVING, HANDLING)}  # fmt: skip
    r = make_office(node_config(tmp_path / "r", office_pki, RECEIVING, ports[RECEIVING], HANDLING,
                        ports[HANDLING]["federation"]), office_pki)  # fmt: skip
    h = make_office(node_config(tmp_path / "h", office_pki, HANDLING, ports[HANDLING], RECEIVING,
                        ports[RECEIVING]["federation"]), office_pki)  # fmt: skip
    await h.node.start()
    await r.node.start()
    try:
        yield r, h
    finally:
        await r.node.stop()
        await h.node.stop()
