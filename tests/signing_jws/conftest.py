"""Fixtures for the JWS tests: a dev federation with two nodes, signers of both kinds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs.pki import init_federation, issue_node, revoke
from signing.certificates import TrustBundle
from signing.keys import Signer


@dataclass(frozen=True)
class World:
    now: datetime
    fed: Path
    bundle: TrustBundle
    ed_signer: Signer  # node 420106 seal key (Ed25519)
    es_signer: Signer  # node 420106, P-256 seal certificate made by hand
    other_signer: Signer  # node 420981 seal key
    revoked_bundle: TrustBundle  # 420981's seal certificate revoked


def _bundle(fed: Path) -> TrustBundle:
    return TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    now = datetime.now(UTC).replace(microsecond=0)
    base = tmp_path_factory.mktemp("jws")
    fed = base / "fed"
    init_federation(fed, "Hubei", now=now)
    issue_node(fed, "420106", "武昌区政务服务中心", "127.0.0.1", base / "a", now=now)
    issue_node(fed, "420981", "应城市政务服务中心", "127.0.0.1", base / "b", now=now)
    ed = Signer.from_pem(
        (base / "a" / "seal.key").read_bytes(), (base / "a" / "seal.pem").read_bytes()
    )
    other = Signer.from_pem(
        (base / "b" / "seal.key").read_bytes(), (base / "b" / "seal.pem").read_bytes()
    )
    root = x509.load_pem_x509_certificate((fed / "root.pem").read_bytes())
    root_key = serialization.load_pem_private_key((fed / "root.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    es_key = ec.generate_private_key(ec.SECP256R1())
    es_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "420106")]))
        .issuer_name(root.subject)
        .public_key(es_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    bundle = _bundle(fed)
    revoke(fed, (base / "b" / "seal.pem").read_bytes(), now=now)
    return World(
        now=now,
        fed=fed,
        bundle=bundle,
        ed_signer=ed,
        es_signer=Signer(key=es_key, chain=(es_cert,)),
        other_signer=other,
        revoked_bundle=_bundle(fed),
    )
