"""Offline proof bundles against a real dev federation (certs.pki): a bundle written to
a file verifies with only the trust bundle; every tampering or wrong identity fails."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import init_federation, issue_node, revoke
from relay.audit.bundle import bundle_from_store, verify_bundle
from relay.audit.checkpoint import Checkpoint, NoteKey, origin_for, sign_checkpoint
from relay.audit.errors import BundleError
from relay.audit.store import AuditStore, append_many, open_database
from relay.audit.witness import PartnerState, Witness, witness_checkpoint
from signing.certificates import TrustBundle
from signing.keys import Signer


@dataclass(frozen=True)
class Fed:
    now: datetime
    trust: TrustBundle
    a: Signer  # 420106 seal
    b: Signer  # 420981 seal
    base: Path


def _signer(node_dir: Path) -> Signer:
    return Signer.from_pem(
        (node_dir / "seal.key").read_bytes(), (node_dir / "seal.pem").read_bytes()
    )


def _trust(fed: Path) -> TrustBundle:
    return TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Fed:
    now = datetime.now(UTC).replace(microsecond=0)
    base = tmp_path_factory.mktemp("audit-fed")
    init_federation(base / "fed", "Hubei", now=now)
    issue_node(base / "fed", "420106", "武昌区政务服务中心", "127.0.0.1", base / "a", now=now)
    issue_node(base / "fed", "420981", "应城市政务服务中心", "127.0.0.1", base / "b", now=now)
    return Fed(now, _trust(base / "fed"), _signer(base / "a"), _signer(base / "b"), base)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    conn: sqlite3.Connection = open_database(tmp_path / "420106.db")
    with conn:
        conn.execute("BEGIN")
        append_many(conn, [f"event {i}".encode() for i in range(23)])
    yield AuditStore(conn)
    conn.close()


def _bundle(fed: Fed, store: AuditStore, index: int = 9) -> dict[str, Any]:
    origin = origin_for("420106")
    note = sign_checkpoint(Checkpoint(origin, store.size(), store.root()), fed.a).to_bytes()
    return bundle_from_store(store, index, note, fed.a.chain)


def test_a_bundle_file_verifies_with_only_the_trust_bundle(
    fed: Fed, store: AuditStore, tmp_path: Path
) -> None:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(_bundle(fed, store)))
    trust = TrustBundle.from_pem((fed.base / "fed" / "root.pem").read_bytes())
    verified = verify_bundle(path.read_bytes(), trust, at=fed.now)
    assert verified.leaf == b"event 9"
    assert verified.index == 9
    assert verified.checkpoint.size == 23
    assert verified.signer.node_id == "420106"
    assert verified.cosigned_by == ()


def test_a_cosigned_checkpoint_reports_its_witnesses(fed: Fed, store: AuditStore) -> None:
    origin = origin_for("420106")
    note = sign_checkpoint(Checkpoint(origin, store.size(), store.root()), fed.a).to_bytes()
    cosigned = witness_checkpoint(
        PartnerState(origin),
        note,
        [],
        origin_key=NoteKey.for_private_key(origin, fed.a),
        witness=Witness(origin_for("420981"), fed.b),
        at=int(fed.now.timestamp()),
    ).note
    bundle = bundle_from_store(store, 22, cosigned, fed.a.chain, [fed.b.chain])
    assert verify_bundle(bundle, fed.trust, at=fed.now).cosigned_by == ("420981",)


def _tamper(bundle: dict[str, Any], how: str, fed: Fed) -> dict[str, Any]:
    b = dict(bundle)
    if how == "leaf":
        b["leaf"] = "ZXZlbnQgOA=="  # "event 8"
    elif how == "index":
        b["index"] = 8
    elif how == "size":
        b["size"] = 22
    elif how == "proof":
        b["inclusion"] = b["inclusion"][:-1]
    elif how == "checkpoint":
        b["checkpoint"] = b["checkpoint"].replace("\n23\n", "\n24\n", 1)
    elif how == "other-node-chain":
        b["seal_chain"] = _bundle_chain(fed.b)
    elif how == "format":
        b["format"] = "tongban-audit-proof/2"
    elif how == "extra-key":
        b["note"] = "hi"
    return b


def _bundle_chain(signer: Signer) -> list[str]:
    return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in signer.chain]


@pytest.mark.parametrize(
    "how",
    ["leaf", "index", "size", "proof", "checkpoint", "other-node-chain", "format", "extra-key"],
)
def test_tampered_bundles_fail(fed: Fed, store: AuditStore, how: str) -> None:
    bundle = _tamper(_bundle(fed, store), how, fed)
    with pytest.raises(BundleError):
        verify_bundle(bundle, fed.trust, at=fed.now)


def test_a_checkpoint_signed_by_another_key_fails(fed: Fed, store: AuditStore) -> None:
    origin = origin_for("420106")
    note = sign_checkpoint(Checkpoint(origin, store.size(), store.root()), fed.b).to_bytes()
    with pytest.raises(BundleError, match="not signed by"):
        verify_bundle(bundle_from_store(store, 3, note, fed.a.chain), fed.trust, at=fed.now)


def test_an_expired_or_untrusted_seal_fails(fed: Fed, store: AuditStore, tmp_path: Path) -> None:
    bundle = _bundle(fed, store)
    with pytest.raises(BundleError, match="rejected"):
        verify_bundle(bundle, fed.trust, at=fed.now + timedelta(days=20 * 365))
    other = tmp_path / "other-fed"
    init_federation(other, "Jiangsu", now=fed.now)
    with pytest.raises(BundleError, match="rejected"):
        verify_bundle(bundle, _trust(other), at=fed.now)


def test_a_revoked_seal_fails(fed: Fed, store: AuditStore, tmp_path: Path) -> None:
    base = tmp_path
    init_federation(base / "fed", "Hubei", now=fed.now)
    issue_node(base / "fed", "420106", "武昌区政务服务中心", "127.0.0.1", base / "a", now=fed.now)
    signer = _signer(base / "a")
    origin = origin_for("420106")
    note = sign_checkpoint(Checkpoint(origin, store.size(), store.root()), signer).to_bytes()
    bundle = bundle_from_store(store, 1, note, signer.chain)
    verify_bundle(bundle, _trust(base / "fed"), at=fed.now)
    revoke(base / "fed", (base / "a" / "seal.pem").read_bytes(), now=fed.now)
    with pytest.raises(BundleError, match="rejected"):
        verify_bundle(bundle, _trust(base / "fed"), at=fed.now)
