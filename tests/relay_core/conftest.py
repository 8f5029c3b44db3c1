"""Fixtures for the relay core tests (helpers live in ``relay_core_support``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_core_support import (
    DAFENG,
    NINGJIN,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    make_pki,
)

from relay.core.fakes import FakeNetwork
from relay.core.outbox import OutboxPolicy


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def federation(pki: Pki, tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(
        pki=pki,
        root=tmp_path,
        clock=FakeClock(),
        agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(7)),
        policy=OutboxPolicy(batch_size=16),
    )
    for node in (WUCHANG, DAFENG, NINGJIN):
        fed.start(node)
    yield fed
    fed.close()
