"""The SM profile's transport root: a P-256 CA beside the SM2 root that certifies the
nodes' TLS leaves and nothing else (docs/protocol.md §1.2), with its own CRL, TLS
renewal under it, and the node's TLS identity bound to its SM identity."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.pki import (
    DOCUMENT_SIGNING,
    init_federation,
    issue_directory_key,
    issue_node,
    renew_crl,
    revoke,
)
from certs.renewal import install_certificate, make_csr, sign_csr
from certs.sm_pki import SmFederation
from relay.tls import client_context, server_context
from signing.certificates import DIRECTORY_SIGNING, Purpose, TrustBundle, validate_path
from signing.errors import CertificateRejected, MalformedInput
from signing.hpke import HpkeSuite
from signing.keys import Signer, load_pem_chain
from signing.nodedir import load_node_keys
from signing.sm_x509 import sm2_public_key

NOW = datetime.now(UTC).replace(microsecond=0)
A, B = "450102", "450103"


@pytest.fixture
def fed(tmp_path: Path) -> Path:
    init_federation(tmp_path / "fed", "Guangxi", now=NOW, profile="sm")
    for code in (A, B):
        issue_node(tmp_path / "fed", code, f"{code} 中心", "127.0.0.1", tmp_path / code, now=NOW)
    return tmp_path / "fed"


def _bundle(fed: Path) -> TrustBundle:
    return TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())


def _leaf(path: Path) -> x509.Certificate:
    return load_pem_chain(path.read_bytes())[0]


def _under_transport(fed: Path, eku: x509.ObjectIdentifier, code: str = A) -> x509.Certificate:
    """A leaf the transport root's key signs for another usage than TLS."""
    sm = SmFederation.load(fed)
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, code),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(sm.transport_cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .sign(sm.transport_key, hashes.SHA256())
    )


def test_the_node_directory_holds_an_sm2_encryption_key_and_both_roots(fed: Path) -> None:
    node = fed.parent / A
    keys = load_node_keys(node)
    assert [k.suite for k in keys.hpke_keys] == [HpkeSuite.SM2_SM4GCM]
    assert not list(node.glob("hpke-*.key"))
    assert (node / "enc-sm2.key").stat().st_mode & 0o777 == 0o600
    assert (fed / "transport.key").stat().st_mode & 0o777 == 0o600
    roots = load_pem_chain((node / "root.pem").read_bytes())
    assert roots == load_pem_chain((fed / "root.pem").read_bytes())
    assert [sm2_public_key(r) is not None for r in roots] == [True, False]


def test_the_transport_root_anchors_tls_only(fed: Path) -> None:
    bundle = _bundle(fed)
    tls = _leaf(fed.parent / A / "tls.pem")
    assert validate_path([tls], bundle, purpose=Purpose.TLS_PEER, at=NOW, node_id=A).node_id == A
    seal = _under_transport(fed, DOCUMENT_SIGNING)
    with pytest.raises(CertificateRejected) as caught:
        validate_path([seal], bundle, purpose=Purpose.SEAL, at=NOW, node_id=A)
    assert caught.value.reason == "wrong-purpose"
    directory = _under_transport(fed, DIRECTORY_SIGNING)
    with pytest.raises(CertificateRejected) as caught:
        validate_path([directory], bundle, purpose=Purpose.DIRECTORY, at=NOW)
    assert caught.value.reason == "wrong-purpose"
    # a seal leaf whose EKU the issuer does allow (anyExtendedKeyUsage is not set) would
    # still need it: a TLS-usage leaf presented as a seal fails on its own purpose
    with pytest.raises(CertificateRejected):
        validate_path([tls], bundle, purpose=Purpose.SEAL, at=NOW, node_id=A)


def test_revoking_a_tls_certificate_lists_it_on_the_transport_crl(fed: Path) -> None:
    tls, seal = fed.parent / A / "tls.pem", fed.parent / A / "seal.pem"
    crl = revoke(fed, tls.read_bytes(), now=NOW)
    assert crl.issuer.rfc4514_string() == "O=tongban federation,CN=Guangxi Transport Root"
    assert crl.get_revoked_certificate_by_serial_number(_leaf(tls).serial_number) is not None
    renew_crl(fed, now=NOW + timedelta(seconds=1))  # keeps the entry, both CRLs re-issued
    bundle = _bundle(fed)
    assert len(bundle.crls) == 2
    with pytest.raises(CertificateRejected) as caught:
        validate_path([_leaf(tls)], bundle, purpose=Purpose.TLS_PEER, at=NOW, node_id=A)
    assert caught.value.reason == "revoked"
    # the node's SM identity is untouched; revoking the seal uses the SM2 root's CRL
    validate_path([_leaf(seal)], bundle, purpose=Purpose.SEAL, at=NOW, node_id=A)
    sm2_crl = revoke(fed, seal.read_bytes(), now=NOW)
    assert sm2_crl.issuer.rfc4514_string() == "O=tongban federation,CN=Guangxi Root"
    with pytest.raises(CertificateRejected):
        validate_path([_leaf(seal)], _bundle(fed), purpose=Purpose.SEAL, at=NOW, node_id=A)


def test_tls_renewal_is_signed_by_the_transport_root(fed: Path) -> None:
    node = fed.parent / A
    cert = sign_csr(fed, make_csr(node), now=NOW)
    assert cert.issuer.rfc4514_string() == "O=tongban federation,CN=Guangxi Transport Root"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    install_certificate(node, pem, _bundle(fed), now=NOW)
    assert _leaf(node / "tls.pem") == cert
    assert load_node_keys(node).seal.algorithm == "SM2SM3"


def test_directory_key_of_an_sm_federation_is_sm2(fed: Path, tmp_path: Path) -> None:
    cert = issue_directory_key(fed, tmp_path / "dirkey", now=NOW)
    assert sm2_public_key(cert) is not None
    signer = Signer.from_pem(
        (tmp_path / "dirkey" / "directory.key").read_bytes(),
        (tmp_path / "dirkey" / "directory.pem").read_bytes(),
    )
    assert signer.algorithm == "SM2SM3"
    identity = validate_path([cert], _bundle(fed), purpose=Purpose.DIRECTORY, at=NOW)
    assert identity.name == "Guangxi Directory"


def test_an_sm_federation_signs_its_directory_and_a_node_is_set_up_from_it(
    fed: Path, tmp_path: Path
) -> None:
    """sign-directory and init with an SM2 directory key (the root lookup of the
    directory raised UnsupportedAlgorithm on the SM2 root)."""
    from relay.cli import main
    from signing.federation_directory import verify_directory

    issue_directory_key(fed, tmp_path / "dirkey", now=NOW)
    trust = tmp_path / "trust.pem"
    trust.write_bytes(_bundle(fed).to_pem())
    out = tmp_path / "guangxi.directory.jws"
    argv = ["pki", "sign-directory", "--key-dir", str(tmp_path / "dirkey"), "--trust"]
    argv += [str(trust), "--federation-name", "Guangxi", "--out", str(out)]
    for code in (A, B):
        argv += ["--node", str(fed.parent / code / "node.json")]
    assert main(argv) == 0
    verified = verify_directory(out.read_bytes(), _bundle(fed), at=datetime.now(UTC))
    assert sorted(verified.entries) == [A, B]
    assert not verified.refused
    argv = ["init", "--directory", str(out), "--trust", str(trust)]
    argv += ["--key-dir", str(fed.parent / A), "--out", str(tmp_path / "srv")]
    assert main(argv) == 0
    assert (tmp_path / "srv" / "node.toml").is_file()


def test_a_node_directory_whose_tls_and_seal_name_two_nodes_is_refused(fed: Path) -> None:
    node = fed.parent / A
    shutil.copyfile(fed.parent / B / "tls.pem", node / "tls.pem")
    with pytest.raises(MalformedInput, match=r"tls\.pem names"):
        load_node_keys(node)


async def test_openssl_cannot_handshake_an_sm2_signed_tls_chain_but_does_the_transport_one(
    fed: Path, tmp_path: Path
) -> None:
    """Why the transport root exists: a P-256 TLS leaf signed SM2-with-SM3 by the SM2
    root (as the SM profile first did) fails OpenSSL's chain check in the handshake;
    the transport root's leaf passes it."""
    sm = SmFederation.load(fed)
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tls_eku = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    sm2_signed = sm.issue(
        _leaf(fed.parent / A / "tls.pem").subject,
        spki,
        [
            x509.Extension(tls_eku.oid, False, tls_eku),
            x509.Extension(
                x509.SubjectAlternativeName.oid,
                False,
                x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            ),
        ],
        serial=99,
        now=NOW,
        not_after=NOW + timedelta(days=30),
        subject_key_id=b"\x01" * 20,
    )
    old = tmp_path / "old"
    old.mkdir()
    (old / "tls.pem").write_bytes(sm2_signed.public_bytes(serialization.Encoding.PEM))
    (old / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bundle = _bundle(fed)
    client = client_context(bundle, fed.parent / B / "tls.pem", fed.parent / B / "tls.key")
    client.check_hostname = False
    for node_dir, works in ((old, False), (fed.parent / A, True)):
        server = server_context(
            node_dir / "tls.pem", node_dir / "tls.key", bundle, require_client_cert=True
        )
        listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server)
        port = listener.sockets[0].getsockname()[1]
        try:
            if works:
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
                writer.close()
            else:
                with pytest.raises(ssl.SSLCertVerificationError, match="signature failure"):
                    await asyncio.open_connection("127.0.0.1", port, ssl=client)
        finally:
            listener.close()
            await listener.wait_closed()


def test_an_sm_nodes_encryption_key_rotates_and_retires(fed: Path) -> None:
    from certs.hpke_rotation import retire_due, rotate_hpke

    node = fed.parent / A
    [old] = load_node_keys(node).hpke_keys
    [kid] = rotate_hpke(node, at=NOW, overlap=timedelta(days=8))
    keys = load_node_keys(node).hpke_keys
    assert [k.public_key().kid for k in keys] == [kid, old.public_key().kid]
    assert all(k.suite is HpkeSuite.SM2_SM4GCM for k in keys)
    assert retire_due(node, at=NOW + timedelta(days=9)) == (old.public_key().kid,)
    assert [k.public_key().kid for k in load_node_keys(node).hpke_keys] == [kid]
    assert not (node / "enc-sm2.key").exists()


def test_fresher_crls_of_an_sm_federation_enter_the_bundle(fed: Path) -> None:
    """CRL distribution (relay.federation.crls) takes an SM federation's re-issued CRLs,
    the SM2-signed one included (it raised UnsupportedAlgorithm on the SM2 root key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certs.sm_pki import crl_blocks
    from relay.federation.crls import fresher_bundle

    held = _bundle(fed)
    later = NOW + timedelta(hours=1)
    revoke(fed, (fed.parent / A / "tls.pem").read_bytes(), now=later)
    offered = [x509.load_pem_x509_crl(b) for b in crl_blocks((fed / "crl.pem").read_bytes())]
    updated = fresher_bundle(held, offered, at=later)
    assert updated is not None
    assert sorted(c.public_bytes(Encoding.DER) for c in updated.crls) == sorted(
        c.public_bytes(Encoding.DER) for c in offered
    )
    with pytest.raises(CertificateRejected) as caught:
        validate_path(
            [_leaf(fed.parent / A / "tls.pem")], updated, purpose=Purpose.TLS_PEER, at=later
        )
    assert caught.value.reason == "revoked"


def test_dossier_verification_reads_the_sm2_roots_crl(fed: Path) -> None:
    """``tongban dossier verify`` judges an SM seal's revocation from the SM2 root's CRL
    (it raised UnsupportedAlgorithm on the SM2 root key)."""
    from relay.dossier.verify import Revocation, _Context

    seal = _leaf(fed.parent / A / "seal.pem")
    root = load_pem_chain((fed / "root.pem").read_bytes())[0]
    context = _Context({}, _bundle(fed), None, NOW)
    state, _, _ = context.revocation(seal, root, NOW, None)
    assert state is Revocation.GOOD
    revoke(fed, (fed.parent / A / "seal.pem").read_bytes(), now=NOW + timedelta(seconds=1))
    context = _Context({}, _bundle(fed), None, NOW + timedelta(seconds=2))
    state, _, _ = context.revocation(seal, root, NOW + timedelta(seconds=2), None)
    assert state is not Revocation.GOOD
