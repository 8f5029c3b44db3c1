"""Fixtures for the path-validation cache tests: a fresh dev federation per test (the
revocation tests rewrite its CRL) and an empty cache around every test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import init_federation, issue_node
from signing import pathcache
from signing.certificates import TrustBundle
from signing.keys import Signer


@dataclass(frozen=True)
class Fed:
    directory: Path
    node_dir: Path
    now: datetime

    def bundle(self) -> TrustBundle:
        """The bundle as the federation's files are now (re-read: a new CRL shows)."""
        fed = self.directory
        return TrustBundle.from_pem(
            (fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes()
        )

    def signer(self) -> Signer:
        return Signer.from_pem(
            (self.node_dir / "seal.key").read_bytes(), (self.node_dir / "seal.pem").read_bytes()
        )


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    pathcache.clear()
    yield
    pathcache.clear()


@pytest.fixture
def fed(tmp_path: Path) -> Fed:
    now = datetime.now(UTC).replace(microsecond=0)
    init_federation(tmp_path / "fed", "Hubei", now=now)
    issue_node(
        tmp_path / "fed", "420106", "武昌区政务服务中心", "127.0.0.1", tmp_path / "n", now=now
    )
    return Fed(tmp_path / "fed", tmp_path / "n", now)
