"""Fixtures for descriptor tests: one federation, two issued nodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import init_federation, issue_node
from signing.certificates import TrustBundle


@dataclass(frozen=True)
class Fed:
    now: datetime
    directory: Path
    a: Path  # node 420106, custom endpoints and English name
    b: Path  # node 420981, defaults

    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(
            (self.directory / "root.pem").read_bytes() + (self.directory / "crl.pem").read_bytes()
        )


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    now = datetime.now(UTC).replace(microsecond=0)
    base = tmp_path_factory.mktemp("descriptor")
    init_federation(base / "fed", "Hubei", now=now)
    issue_node(
        base / "fed",
        "420106",
        "武昌区政务服务中心",
        "wuchang.example",
        base / "a",
        now=now,
        name_en="Wuchang District Government Service Centre",
        endpoints={
            "federation": "https://wuchang.example:9443",
            "public": "https://wuchang.example",
        },
    )
    issue_node(base / "fed", "420981", "应城市政务服务中心", "10.0.0.7", base / "b", now=now)
    return Fed(now, base / "fed", base / "a", base / "b")
