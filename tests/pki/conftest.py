"""Fixtures for the PKI tests: federations and nodes generated in tmp dirs, cert helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import init_federation, issue_node


@dataclass(frozen=True)
class Fed:
    directory: Path
    nodes: dict[str, Path]

    def bundle_pem(self) -> bytes:
        return (self.directory / "root.pem").read_bytes() + (
            self.directory / "crl.pem"
        ).read_bytes()


@pytest.fixture(scope="session")
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def hubei(tmp_path_factory: pytest.TempPathFactory, now: datetime) -> Fed:
    base = tmp_path_factory.mktemp("hubei")
    init_federation(base / "fed", "Hubei", now=now)
    nodes = {}
    for code, name in (("420106", "武昌区政务服务中心"), ("420981", "应城市政务服务中心")):
        issue_node(base / "fed", code, name, "127.0.0.1", base / code, now=now)
        nodes[code] = base / code
    return Fed(base / "fed", nodes)


@pytest.fixture(scope="session")
def jiangsu(tmp_path_factory: pytest.TempPathFactory, now: datetime) -> Fed:
    base = tmp_path_factory.mktemp("jiangsu")
    init_federation(base / "fed", "Jiangsu", now=now)
    issue_node(base / "fed", "320982", "大丰区行政审批局", "localhost", base / "320982", now=now)
    return Fed(base / "fed", {"320982": base / "320982"})
