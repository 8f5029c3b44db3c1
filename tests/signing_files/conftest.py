"""Fixtures for file-signature tests: a federation with one node, its signer and bundle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import init_federation, issue_node
from signing.certificates import TrustBundle
from signing.keys import Signer


@dataclass(frozen=True)
class Node:
    now: datetime
    fed: Path
    directory: Path
    signer: Signer
    bundle: TrustBundle
    bundle_path: Path


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    now = datetime.now(UTC).replace(microsecond=0)
    base = tmp_path_factory.mktemp("files")
    init_federation(base / "fed", "Shandong", now=now)
    issue_node(base / "fed", "371422", "宁津县行政审批服务局", "127.0.0.1", base / "n", now=now)
    signer = Signer.from_pem(
        (base / "n" / "seal.key").read_bytes(), (base / "n" / "seal.pem").read_bytes()
    )
    pem = (base / "fed" / "root.pem").read_bytes() + (base / "fed" / "crl.pem").read_bytes()
    (base / "bundle.pem").write_bytes(pem)
    return Node(
        now, base / "fed", base / "n", signer, TrustBundle.from_pem(pem), base / "bundle.pem"
    )
