"""Fixtures for the operations tests (metrics, logs, backup; helpers in ``opskit``).

They drive real ``tongban serve`` processes with the fault-injection suite's kit
(``tests/chaos/chaoskit.py``) and the relay HTTP test support, whose folders are put on
the import path here as ``tests/chaos/conftest.py`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent.parent
for folder in ("relay_http", "chaos", "survey_media", "audit_node"):
    if str(_TESTS / folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / folder))

from chaoskit import Federation, make_federation  # noqa: E402 - after the path setup
from relay_http_support import Pki, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def ops_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("ops-pki"))


@pytest.fixture
def federation(ops_pki: Pki, tmp_path: Path) -> Federation:
    """Configs for two nodes A (420106) and B (320982), not started."""
    return make_federation(ops_pki, tmp_path)
