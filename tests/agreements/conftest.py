"""Fixtures for the agreements tests: a generated federation of 48 nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from agreement_support import OUTSIDER_ID, PARTY_IDS_46, PKI_NOW, REVOKED_ID, Federation

from certs.pki import init_federation, issue_node, revoke
from signing.certificates import TrustBundle
from signing.keys import Signer


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    base = tmp_path_factory.mktemp("federation")
    fed = base / "fed"
    init_federation(fed, "Test", now=PKI_NOW)
    signers: dict[str, Signer] = {}
    dirs: dict[str, Path] = {}
    for node in (*PARTY_IDS_46, REVOKED_ID, OUTSIDER_ID):
        out = base / node
        issue_node(fed, node, f"办公室{node}", "127.0.0.1", out, now=PKI_NOW)
        signers[node] = Signer.from_pem(
            (out / "seal.key").read_bytes(), (out / "seal.pem").read_bytes()
        )
        dirs[node] = out
    revoke(fed, (dirs[REVOKED_ID] / "seal.pem").read_bytes(), now=PKI_NOW)
    bundle_bytes = (fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes()
    bundle_path = base / "bundle.pem"
    bundle_path.write_bytes(bundle_bytes)
    return Federation(
        base,
        TrustBundle.from_pem(bundle_bytes),
        bundle_path,
        signers,
        dirs,
        REVOKED_ID,
        OUTSIDER_ID,
    )
