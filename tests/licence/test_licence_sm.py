"""E-licences in the SM profile (issue 19): a licence and its status lists sealed
``SM2SM3`` by an office of an SM-profile federation verify offline, and a revocation
bit in its SM2-signed status list is seen."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from licence_support import ISSUER, T0, Federation, lists_for, make_licence

from certs.pki import init_federation, issue_node
from signing.encoding import b64url_decode
from signing.licence import issue_licence, verify_licence


def _sm_federation(base: Path) -> Federation:
    init_federation(base / "fed", "Jiangsu", now=T0, profile="sm")
    issue_node(base / "fed", ISSUER, "盐城市大丰区行政审批局", "127.0.0.1", base / ISSUER, now=T0)
    return Federation(base / "fed", {ISSUER: base / ISSUER})


def test_sm2_sealed_licence_verifies_and_its_revocation_is_seen(tmp_path: Path) -> None:
    fed = _sm_federation(tmp_path)
    signer = fed.signer(ISSUER)
    token = issue_licence(make_licence(), signer, at=T0 + timedelta(hours=1))
    assert json.loads(b64url_decode(token.split(".")[0]))["alg"] == "SM2SM3"
    at = T0 + timedelta(days=1)
    report = verify_licence(token, fed.bundle, at=at, status_lists=lists_for(signer))
    assert report.valid, report
    revoked = lists_for(signer, revoked=[42])
    assert not verify_licence(token, fed.bundle, at=at, status_lists=revoked).valid


def test_sm2_compact_licence_verifies_and_openssl_checks_its_cose_signature(
    tmp_path: Path,
) -> None:
    """The QR form of an SM-profile licence: COSE_Sign1 with the private-use alg -65537
    (SM2SM3). Ours verifies it, refuses it altered or relabelled ES256, and OpenSSL
    verifies the SM2 signature over the Sig_structure."""
    import subprocess
    import zlib

    import cbor2

    from signing.digits import digits_decode, digits_encode
    from signing.licence_compact import (
        Issuer,
        IssuerList,
        issue_compact_licence,
        verify_compact_licence,
    )
    from signing.sm2 import raw_to_der

    fed = _sm_federation(tmp_path / "pki")
    signer = fed.signer(ISSUER)
    issuer = Issuer(ISSUER, "大丰区行政审批局", "Dafeng", "https://dafeng.example", signer.chain)
    credential = issue_compact_licence(make_licence(), signer, issuer)
    at = T0 + timedelta(days=1)
    report = verify_compact_licence(credential, fed.bundle, IssuerList([issuer]), at=at)
    assert report.checks[0].outcome.value == "passed", report
    assert report.checks[1].outcome.value == "passed", report

    data = digits_decode(credential)
    cose = cbor2.loads(zlib.decompress(data) if data[0] == 0x78 else data)
    protected, _, payload, signature = cose.value
    assert cbor2.loads(protected)[1] == -65537
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    (tmp_path / "input").write_bytes(to_sign)
    (tmp_path / "sig.der").write_bytes(raw_to_der(signature))
    (tmp_path / "seal.pem").write_bytes((fed.nodes[ISSUER] / "seal.pem").read_bytes())
    pub = subprocess.run(
        ["openssl", "x509", "-in", "seal.pem", "-pubkey", "-noout"],
        capture_output=True, text=True, check=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "pub.pem").write_text(pub.stdout)
    judge = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin",
         "-digest", "sm3", "-in", "input", "-sigfile", "sig.der",
         "-pkeyopt", "distid:1234567812345678"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert judge.returncode == 0, judge.stderr + judge.stdout

    def forged(header: dict[int, object], body: bytes) -> str:
        tag = cbor2.CBORTag(18, [cbor2.dumps(header), {}, body, signature])
        return digits_encode(cbor2.dumps(tag))

    kid = cbor2.loads(protected)[4]
    for bad in (forged({1: -7, 4: kid}, payload), forged({1: -65537, 4: kid}, payload + b"\0")):
        refused = verify_compact_licence(bad, fed.bundle, IssuerList([issuer]), at=at)
        assert refused.checks[0].outcome.value == "failed"
