"""The SM profile's PKI (SM2 root, SM2-with-SM3 certificates and CRLs) and its JWS
``alg`` ``SM2SM3``: our path validation, and OpenSSL 3 as the independent judge."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import init_federation, issue_node, renew_crl, revoke
from relay.cli import main
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.descriptor import verify_descriptor
from signing.encoding import b64url, b64url_decode
from signing.errors import CertificateRejected, InvalidSignature
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer, load_pem_chain
from signing.sm2 import der_to_raw, raw_to_der
from signing.sm_x509 import sm2_public_key, sm2_signed

OPENSSL = "openssl"


@dataclass(frozen=True)
class SmFed:
    directory: Path
    nodes: dict[str, Path]

    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(
            (self.directory / "root.pem").read_bytes() + (self.directory / "crl.pem").read_bytes()
        )

    def signer(self, node: str) -> Signer:
        d = self.nodes[node]
        return Signer.from_pem((d / "seal.key").read_bytes(), (d / "seal.pem").read_bytes())


@pytest.fixture(scope="module")
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _make(base: Path, name: str, codes: tuple[str, ...], now: datetime) -> SmFed:
    init_federation(base / "fed", name, now=now, profile="sm")
    nodes = {}
    for code in codes:
        issue_node(base / "fed", code, f"{code} 政务服务中心", "127.0.0.1", base / code, now=now)
        nodes[code] = base / code
    return SmFed(base / "fed", nodes)


@pytest.fixture(scope="module")
def sm_fed(tmp_path_factory: pytest.TempPathFactory, now: datetime) -> SmFed:
    return _make(tmp_path_factory.mktemp("sm"), "Guangxi", ("450102", "450103"), now)


def _openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *args], capture_output=True, text=True, timeout=30, check=False, cwd=cwd
    )


def test_every_application_certificate_and_crl_is_sm2_with_sm3(sm_fed: SmFed) -> None:
    root, transport = load_pem_chain((sm_fed.directory / "root.pem").read_bytes())
    bundle = sm_fed.bundle()
    crl, transport_crl = bundle.crls
    seal = load_pem_chain((sm_fed.nodes["450102"] / "seal.pem").read_bytes())[0]
    tls = load_pem_chain((sm_fed.nodes["450102"] / "tls.pem").read_bytes())[0]
    assert all(sm2_signed(o) for o in (root, crl, seal))
    assert sm2_public_key(root) is not None
    assert sm2_public_key(seal) is not None
    # The channel: a P-256 transport root (ECDSA-SHA256) issues the P-256 TLS leaf,
    # since OpenSSL's TLS cannot check SM2 chains (docs/protocol.md §1.2).
    assert not any(sm2_signed(o) for o in (transport, transport_crl, tls))
    assert sm2_public_key(transport) is None
    assert sm2_public_key(tls) is None
    assert tls.issuer == transport.subject
    assert seal.issuer == root.subject
    assert transport.subject.rfc4514_string() == "O=tongban federation,CN=Guangxi Transport Root"
    eku = transport.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {o.dotted_string for o in eku} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    assert tls.subject == seal.subject  # one node id in both identities
    state = json.loads((sm_fed.directory / "state.json").read_text())
    assert state["profile"] == "sm"


# OpenSSL 3.0 verifies SM2 certificate signatures with an empty signer id unless told
# otherwise; GM/T 0015 (and GmSSL) use 1234567812345678, so the judge is told so.
DISTID = "distid:1234567812345678"


def _openssl_verify(root: Path, leaf: Path) -> subprocess.CompletedProcess[str]:
    return _openssl("verify", "-vfyopt", DISTID, "-CAfile", str(root), str(leaf))


def _openssl_checks_crl_signature(fed: Path, tmp_path: Path) -> bool:
    """OpenSSL's own check of the CRL signature over its TBSCertList (``openssl verify
    -crl_check`` cannot be given the signer id for CRLs in OpenSSL 3.0)."""
    crl = x509.load_pem_x509_crl((fed / "crl.pem").read_bytes())
    (tmp_path / "tbs").write_bytes(crl.tbs_certlist_bytes)
    (tmp_path / "crl.sig").write_bytes(crl.signature)
    pub = _openssl("x509", "-in", str(fed / "root.pem"), "-pubkey", "-noout")
    (tmp_path / "root.pub").write_text(pub.stdout)
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "root.pub", "-rawin", "-digest", "sm3",
        "-in", "tbs", "-sigfile", "crl.sig", "-pkeyopt", DISTID, cwd=tmp_path,
    )  # fmt: skip
    return result.returncode == 0 and "Signature Verified Successfully" in result.stdout


def test_openssl_verify_accepts_our_sm2_chains_and_crl(sm_fed: SmFed, tmp_path: Path) -> None:
    fed = sm_fed.directory
    result = _openssl_verify(fed / "root.pem", sm_fed.nodes["450102"] / "seal.pem")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "OK" in result.stdout
    # the TLS leaf chains to the P-256 transport root (no signer id: not SM2)
    tls = sm_fed.nodes["450102"] / "tls.pem"
    result = _openssl("verify", "-purpose", "sslclient", "-CAfile", str(fed / "root.pem"), str(tls))
    assert result.returncode == 0, result.stderr + result.stdout
    text = _openssl("x509", "-in", str(fed / "root.pem"), "-noout", "-text").stdout
    assert "SM2-with-SM3" in text
    assert _openssl_checks_crl_signature(fed, tmp_path)


def test_openssl_refuses_our_leaf_under_another_sm2_root(
    sm_fed: SmFed, tmp_path: Path, now: datetime
) -> None:
    other = _make(tmp_path, "Guangxi", (), now)  # same root name, another SM2 key
    result = _openssl_verify(other.directory / "root.pem", sm_fed.nodes["450102"] / "seal.pem")
    assert result.returncode != 0


def test_revocation_in_our_sm2_crl(tmp_path: Path, now: datetime) -> None:
    fed = _make(tmp_path / "f", "Hainan", ("460105",), now)
    seal = fed.nodes["460105"] / "seal.pem"
    chain = load_pem_chain(seal.read_bytes())
    revoke(fed.directory, seal.read_bytes(), now=now)
    assert _openssl_checks_crl_signature(fed.directory, tmp_path)
    listed = _openssl("crl", "-in", str(fed.directory / "crl.pem"), "-noout", "-text").stdout
    assert f"{chain[0].serial_number:X}" in listed.replace(" ", "")
    with pytest.raises(CertificateRejected) as caught:
        validate_path(chain, fed.bundle(), purpose=Purpose.SEAL, at=now)
    assert caught.value.reason == "revoked"
    crl = renew_crl(fed.directory, now=now + timedelta(days=20))
    assert crl.get_revoked_certificate_by_serial_number(chain[0].serial_number) is not None
    assert _openssl_checks_crl_signature(fed.directory, tmp_path)


def test_validate_path_accepts_sm2_seal_and_tls_chains(sm_fed: SmFed, now: datetime) -> None:
    bundle = sm_fed.bundle()
    d = sm_fed.nodes["450103"]
    seal = validate_path(
        load_pem_chain((d / "seal.pem").read_bytes()), bundle, purpose=Purpose.SEAL, at=now
    )
    assert seal.node_id == "450103"
    tls = validate_path(
        load_pem_chain((d / "tls.pem").read_bytes()), bundle, purpose=Purpose.TLS_PEER, at=now
    )
    assert tls.node_id == "450103"


def test_validate_path_refuses_other_roots_forgeries_and_stale_crls(
    sm_fed: SmFed, tmp_path: Path, now: datetime
) -> None:
    chain = load_pem_chain((sm_fed.nodes["450102"] / "seal.pem").read_bytes())
    other = _make(tmp_path, "Guangxi", (), now)  # same root name, different SM2 key
    with pytest.raises(CertificateRejected) as caught:
        validate_path(chain, other.bundle(), purpose=Purpose.SEAL, at=now)
    assert caught.value.reason == "untrusted-root"
    der = bytearray(chain[0].public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateRejected) as caught:
        validate_path((forged,), sm_fed.bundle(), purpose=Purpose.SEAL, at=now)
    assert caught.value.reason == "untrusted-root"
    foreign_crl = x509.load_pem_x509_crl((other.directory / "crl.pem").read_bytes())
    root = x509.load_pem_x509_certificate((sm_fed.directory / "root.pem").read_bytes())
    bad = TrustBundle(roots=(root,), crls=(foreign_crl,))
    with pytest.raises(CertificateRejected) as caught:
        validate_path(chain, bad, purpose=Purpose.SEAL, at=now)
    assert caught.value.reason == "crl-invalid"
    with pytest.raises(CertificateRejected) as caught:
        validate_path(chain, sm_fed.bundle(), purpose=Purpose.SEAL, at=now + timedelta(days=31))
    assert caught.value.reason == "crl-invalid"


def test_sm2sm3_jws_round_trip_and_refusals(sm_fed: SmFed, now: datetime) -> None:
    signer = sm_fed.signer("450102")
    assert signer.algorithm == "SM2SM3"
    token = sign_compact(b'{"packet":1}', signer, typ="tongban-packet+jws", at=now)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header["alg"] == "SM2SM3"
    verified = verify_compact(token, sm_fed.bundle(), at=now, typ="tongban-packet+jws")
    assert verified.payload == b'{"packet":1}'
    assert verified.signer.node_id == "450102"
    head, body, sig = token.split(".")
    for bad in (
        head + "." + b64url(b'{"packet":2}') + "." + sig,  # payload changed
        f"{b64url(json.dumps({**header, 'alg': 'ES256'}).encode())}.{body}.{sig}",
        f"{head}.{body}.{b64url(b64url_decode(sig)[:63])}",
    ):
        with pytest.raises(InvalidSignature):
            verify_compact(bad, sm_fed.bundle(), at=now, typ="tongban-packet+jws")


def test_openssl_verifies_our_jws_signature_over_the_signing_input(
    sm_fed: SmFed, now: datetime, tmp_path: Path
) -> None:
    signer = sm_fed.signer("450103")
    token = sign_compact(b'{"receipt":true}', signer, typ="tongban-receipt+jws", at=now)
    head, body, sig = token.split(".")
    (tmp_path / "input").write_bytes(f"{head}.{body}".encode())
    (tmp_path / "sig.der").write_bytes(raw_to_der(b64url_decode(sig)))
    pub = _openssl("x509", "-in", str(sm_fed.nodes["450103"] / "seal.pem"), "-pubkey", "-noout")
    (tmp_path / "pub.pem").write_text(pub.stdout)
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
        "-in", "input", "-sigfile", "sig.der", "-pkeyopt", "distid:1234567812345678",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Signature Verified Successfully" in result.stdout


def test_we_verify_a_jws_whose_signature_openssl_made(
    sm_fed: SmFed, now: datetime, tmp_path: Path
) -> None:
    d = sm_fed.nodes["450102"]
    signer = sm_fed.signer("450102")
    ours = sign_compact(b'{"agreement":"x"}', signer, typ="tongban-agreement+jws", at=now)
    head, body, _ = ours.split(".")
    (tmp_path / "input").write_bytes(f"{head}.{body}".encode())
    result = _openssl(
        "pkeyutl", "-sign", "-inkey", str(d / "seal.key"), "-rawin", "-digest", "sm3",
        "-in", "input", "-out", "sig.der", "-pkeyopt", "distid:1234567812345678",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    theirs = f"{head}.{body}.{b64url(der_to_raw((tmp_path / 'sig.der').read_bytes()))}"
    verified = verify_compact(theirs, sm_fed.bundle(), at=now, typ="tongban-agreement+jws")
    assert verified.payload == b'{"agreement":"x"}'


def test_node_descriptor_is_signed_sm2sm3_and_verifies(sm_fed: SmFed, now: datetime) -> None:
    data = (sm_fed.nodes["450102"] / "node.json").read_bytes()
    descriptor = verify_descriptor(data, sm_fed.bundle(), at=now)
    assert descriptor.node_id == "450102"
    token = json.loads(data)["descriptor"]
    assert json.loads(b64url_decode(token.split(".")[0]))["alg"] == "SM2SM3"


def test_cli_init_federation_profile_sm(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    args = ["pki", "init-federation", "--out", str(fed), "--name", "Yunnan", "--profile", "sm"]
    assert main(args) == 0
    root = x509.load_pem_x509_certificate((fed / "root.pem").read_bytes())
    assert sm2_signed(root)
    assert sm2_public_key(root) is not None
    code = main(
        ["pki", "issue-node", "--federation", str(fed), "--node", "530102",
         "--name", "五华区政务服务中心", "--host", "127.0.0.1", "--out", str(tmp_path / "n")]
    )  # fmt: skip
    assert code == 0
    assert _openssl_verify(fed / "root.pem", tmp_path / "n" / "seal.pem").returncode == 0
    with pytest.raises(SystemExit):
        main([*args[:3], str(tmp_path / "x"), "--name", "Y", "--profile", "gost"])


def test_checkpoint_keys_take_sm2_seals_and_refuse_other_keys_cleanly(sm_fed: SmFed) -> None:
    """An SM2 seal is an SM2 note key (SM-profile checkpoints); a key that is neither
    Ed25519 nor SM2 (the P-256 TLS key) is refused with CheckpointError, not with
    cryptography's UnsupportedAlgorithm escaping."""
    from relay.audit.checkpoint import CheckpointError, KeyType, NoteKey

    seal = load_pem_chain((sm_fed.nodes["450102"] / "seal.pem").read_bytes())[0]
    from_cert = NoteKey.from_certificate("tongban.node/450102", seal)
    from_key = NoteKey.for_private_key("tongban.node/450102", sm_fed.signer("450102"))
    assert from_cert == from_key
    assert from_cert.key_type is KeyType.SM2_SM3
    tls = load_pem_chain((sm_fed.nodes["450102"] / "tls.pem").read_bytes())[0]
    with pytest.raises(CheckpointError):
        NoteKey.from_certificate("tongban.node/450102", tls)
