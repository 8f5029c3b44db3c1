"""Fixtures for the fault-injection suite (helpers live in ``chaoskit``).

The suite reuses the relay HTTP test support (PKI, node configs, agreements) instead of
copying it: its folder is put on the import path here, as pytest does for each test
folder that has a conftest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "relay_http"))

from chaoskit import Federation, make_federation
from relay_http_support import Pki, make_pki


@pytest.fixture(scope="session")
def chaos_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("chaos-pki"))


@pytest.fixture
def federation(chaos_pki: Pki, tmp_path: Path) -> Federation:
    """Configs for two nodes A and B (not started) that deliver to each other."""
    return make_federation(chaos_pki, tmp_path)
