"""The compact licence form (CWT / COSE_Sign1 / zlib / decimal digits in a verify URL)."""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import replace
from datetime import timedelta

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from licence_support import ISSUER, OTHER, T0, Federation, make_licence, publish

from signing.digits import digits_decode, digits_encode
from signing.errors import MalformedInput
from signing.licence import StatusEntry
from signing.licence_compact import (
    Issuer,
    IssuerList,
    credential_from_text,
    issue_compact_licence,
    licence_url,
    parse_compact_licence,
    verify_compact_licence,
)
from signing.licence_report import Check, Failure, Outcome
from signing.qr import render_url_qr
from signing.status_list import StatusPurpose

AT = T0 + timedelta(days=3)
PUBLIC = "https://zwfw.dafeng.example:8443"
NAME_ZH = "盐城市大丰区行政审批局"
NAME_EN = "Dafeng District Administrative Approval Bureau, Yancheng"


def _issuer(fed: Federation, node: str = ISSUER) -> Issuer:
    return Issuer(node, NAME_ZH, NAME_EN, PUBLIC, fed.signer(node).chain)


def _typical(issuer: Issuer, **changes: object):
    """A food business licence as a county office issues it (Chinese scope)."""
    status = tuple(
        StatusEntry(p, 1, issuer.status_url(p))
        for p in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)
    )
    fields: dict[str, object] = {
        "number": "JY13209820260001",
        "licence_type": "food-business-licence",
        "holder_id": "91320982MA1XK2JC3L",
        "holder_name": "盐城江城餐饮管理有限公司",
        "scope": "热食类食品制售",
        "status": status,
    }
    fields.update(changes)
    return make_licence(**fields)


def _lists(fed: Federation, issuer: Issuer, *, revoked=(), suspended=()) -> dict[str, str]:
    signer = fed.signer(ISSUER)
    rev, sus = (issuer.status_url(p) for p in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION))
    return {
        rev: publish(signer, StatusPurpose.REVOCATION, set_bits=revoked, url=rev),
        sus: publish(signer, StatusPurpose.SUSPENSION, set_bits=suspended, url=sus),
    }


def test_round_trip_states_the_same_licence_and_passes_every_check(fed: Federation) -> None:
    issuer = _issuer(fed)
    licence = _typical(issuer)
    url = licence_url(PUBLIC, issue_compact_licence(licence, fed.signer(ISSUER), issuer))
    assert url.startswith(PUBLIC + "/v#")
    assert " " not in url
    report = verify_compact_licence(
        url,
        fed.bundle,
        IssuerList([issuer]),
        at=AT,
        status_lists=_lists(fed, issuer),
        entitled=lambda node, kind, at: node == ISSUER,
    )
    assert report.valid, report.to_json()
    assert report.unchecked == ()
    assert report.licence == licence
    assert parse_compact_licence(url, IssuerList([issuer])) == licence


def test_claims_that_differ_from_the_defaults_travel_explicitly(fed: Federation) -> None:
    issuer = _issuer(fed)
    licence = _typical(
        issuer,
        department_zh="盐城市大丰区市场监督管理局",
        department_en="Dafeng Market Regulation",
        valid_from=T0 + timedelta(days=1),
        status=(StatusEntry(StatusPurpose.REVOCATION, 7, "https://elsewhere.example/rev"),),
    )
    credential = issue_compact_licence(licence, fed.signer(ISSUER), issuer)
    report = verify_compact_licence(credential, fed.bundle, IssuerList([issuer]), at=AT)
    assert report.licence == licence


def _digits_decode_independently(text: str) -> bytes:
    """docs/protocol.md §9.4's digit groups in a few lines, not our module."""
    last = {0: 0, 3: 1, 5: 2, 8: 3, 10: 4, 13: 5, 15: 6}
    out = bytearray()
    for i in range(0, len(text), 17):
        chunk = text[i : i + 17]
        out += int(chunk).to_bytes(7 if len(chunk) == 17 else last[len(chunk)], "big")
    return bytes(out)


def test_an_independent_decoder_verifies_the_compact_form(fed: Federation) -> None:
    """cbor2 + cryptography + zlib, following docs/protocol.md §9.4 alone."""
    from urllib.parse import unquote

    issuer = _issuer(fed)
    licence = _typical(issuer)
    url = licence_url(PUBLIC, issue_compact_licence(licence, fed.signer(ISSUER), issuer))
    data = _digits_decode_independently(unquote(url.split("#", 1)[1]))
    if data[0] == 0x78:
        data = zlib.decompress(data)
    sign1 = cbor2.loads(data)
    assert sign1.tag == 18
    protected, unprotected, payload, signature = sign1.value
    header = cbor2.loads(protected)
    leaf = fed.signer(ISSUER).chain[0]
    from cryptography.hazmat.primitives.serialization import Encoding

    assert header == {1: -8, 4: hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest()[:8]}
    assert unprotected == {}
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    key = leaf.public_key()
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(signature, to_be_signed)  # raises if the seal does not verify
    claims = cbor2.loads(payload)
    body = claims[-65537]
    assert claims[2] == licence.holder_id
    assert claims[7].decode() == licence.number
    assert claims[6] == int(licence.issued_at.timestamp())
    assert claims[4] == int(licence.valid_until.timestamp())
    assert (body[1], body[2], body[3]) == (
        licence.holder_name,
        licence.licence_type,
        "热食类食品制售",
    )
    assert body[6] == 1  # index 1 in both of the issuer's standard lists


def test_a_typical_licence_is_a_version_12_code_at_level_m_that_zxing_reads(
    fed: Federation,
) -> None:
    """Printed at 300 dpi with 4 pixels a module (0.34 mm), zxing-cpp reads the URL."""
    import zxingcpp
    from PIL import Image

    issuer = _issuer(fed)
    for second in range(5):  # signatures differ; the length must not
        at = T0 + timedelta(hours=1, seconds=second)
        licence = _typical(issuer, issued_at=at, valid_from=at)
        url = licence_url(PUBLIC, issue_compact_licence(licence, fed.signer(ISSUER), issuer))
        qr = render_url_qr(url, scale=4)
        assert qr.error == "M"
        assert qr.version <= 12, (qr.version, len(url))
    image = Image.open(io.BytesIO(qr.png))
    image.info["dpi"] = (300, 300)
    module_mm = 4 / 300 * 25.4
    assert 0.33 <= module_mm < 0.35
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [r.text for r in results] == [url]


def test_digits_round_trip_every_length_and_refuse_what_no_encoder_writes() -> None:
    assert digits_encode(b"") == ""
    assert digits_encode(b"AB") == "16706"  # 0x4142, 5 digits for a last group of 2
    assert digits_encode(b"\xff" * 7) == "72057594037927935"  # 2^56 - 1 in 17 digits
    assert digits_encode(b"\x00" * 8) == "0" * 17 + "000"
    for n in range(30):
        data = bytes((i * 37 + n) % 256 for i in range(n))
        text = digits_encode(data)
        assert text.isdigit() or not text
        assert digits_decode(text) == data
        assert _digits_decode_independently(text) == data
    for bad in ("12", "1" * 18, "256", "72057594037927936", "12a45", "１２３"):
        with pytest.raises(MalformedInput):
            digits_decode(bad)


def _verify(fed: Federation, issuer: Issuer, credential: str, **kw: object):
    return verify_compact_licence(credential, fed.bundle, IssuerList([issuer]), **kw)  # type: ignore[arg-type]


def _flip_signature(credential: str) -> str:
    data = digits_decode(credential)
    cose = zlib.decompress(data) if data[0] == 0x78 else data
    obj = cbor2.loads(cose)
    claims = cbor2.loads(obj.value[2])
    claims[-65537][3] = "全部食品经营"  # a broader scope than the office granted
    obj.value[2] = cbor2.dumps(claims)
    return digits_encode(cbor2.dumps(obj))


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("tampered", Failure.SIGNATURE),
        ("revoked", Failure.REVOKED),
        ("suspended", Failure.SUSPENDED),
        ("expired", Failure.EXPIRED),
        ("not-entitled", Failure.ISSUER_NOT_ENTITLED),
        ("unknown-issuer", Failure.UNKNOWN_ISSUER),
        ("garbage", Failure.MALFORMED),
    ],
)
def test_each_bad_compact_licence_gets_its_verdict(fed: Federation, case: str, code: Failure):
    issuer = _issuer(fed)
    credential = issue_compact_licence(_typical(issuer), fed.signer(ISSUER), issuer)
    lists = _lists(fed, issuer)
    entitled, known = (lambda node, kind, at: True), IssuerList([issuer])
    if case == "tampered":
        credential = _flip_signature(credential)
    elif case == "revoked":
        lists = _lists(fed, issuer, revoked=[1])
    elif case == "suspended":
        lists = _lists(fed, issuer, suspended=[1])
    elif case == "expired":
        short = _typical(issuer, valid_until=T0 + timedelta(days=2))
        credential = issue_compact_licence(short, fed.signer(ISSUER), issuer)
    elif case == "not-entitled":
        entitled = lambda node, kind, at: False  # noqa: E731
    elif case == "unknown-issuer":
        known = IssuerList([_issuer(fed, OTHER)])
    elif case == "garbage":
        credential = "NOT A LICENCE"
    report = verify_compact_licence(
        credential, fed.bundle, known, at=AT, status_lists=lists, entitled=entitled
    )
    assert not report.valid
    assert report.failure is code, report.to_json()
    if case == "unknown-issuer":
        detail = report.result(Check.CHAIN).detail
        assert "key id" in detail
        assert "descriptor" in detail


def test_bytes_after_the_credential_make_it_malformed(fed: Federation) -> None:
    """One licence, one QR text: CBOR or zlib data with bytes after it was taken as the
    same licence (``cbor2.loads`` ignores what follows the item)."""
    issuer = _issuer(fed)
    credential = issue_compact_licence(_typical(issuer), fed.signer(ISSUER), issuer)
    data = digits_decode(credential)
    cose = zlib.decompress(data) if data[0] == 0x78 else data
    for padded in (cose + b"\x00", data + b"\x00" if data[0] == 0x78 else cose + b"\xa0"):
        report = _verify(fed, issuer, digits_encode(padded), at=AT)
        assert report.failure is Failure.MALFORMED, report.to_json()
        with pytest.raises(MalformedInput):
            parse_compact_licence(digits_encode(padded), IssuerList([issuer]))


def test_a_kid_resolving_to_another_key_fails_the_signature(fed: Federation) -> None:
    """A trust list that maps the kid to the wrong certificate cannot make it verify."""
    issuer = _issuer(fed)
    credential = issue_compact_licence(_typical(issuer), fed.signer(ISSUER), issuer)
    liar = Issuer(OTHER, NAME_ZH, NAME_EN, PUBLIC, fed.signer(OTHER).chain)
    report = verify_compact_licence(credential, fed.bundle, lambda kid: liar, at=AT)
    assert report.result(Check.CHAIN).outcome is Outcome.PASSED
    assert report.failure is Failure.SIGNATURE


def test_credential_from_text_takes_a_url_or_the_bare_text() -> None:
    assert credential_from_text("https://h.example/v#AB%20C%25D") == "AB C%D"
    assert credential_from_text("  AB C  ") == "AB C"
    with pytest.raises(Exception, match="fragment"):
        credential_from_text("https://h.example/v")


def test_the_compact_form_refuses_a_licence_of_another_node(fed: Federation) -> None:
    issuer = _issuer(fed)
    other = replace(issuer, node_id=OTHER)
    with pytest.raises(Exception, match="another issuing node"):
        issue_compact_licence(_typical(issuer), fed.signer(ISSUER), other)


def _es256_seal(fed: Federation):
    """An ES256 (P-256) seal certificate for ISSUER under the federation root."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from certs.pki import DOCUMENT_SIGNING, _key_usage, _leaf_builder
    from signing.keys import Signer

    root = x509.load_pem_x509_certificate((fed.directory / "root.pem").read_bytes())
    root_key = serialization.load_pem_private_key(
        (fed.directory / "root.key").read_bytes(), password=None
    )
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = fed.signer(ISSUER).chain[0].subject
    cert = (
        _leaf_builder(root, root_key, subject, key.public_key(), T0)
        .add_extension(_key_usage(signature=True, commitment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return Signer(key=key, chain=(cert,))


def test_an_es256_seal_makes_a_compact_licence_that_verifies_independently(fed: Federation):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.hashes import SHA256

    signer = _es256_seal(fed)
    issuer = Issuer(ISSUER, NAME_ZH, NAME_EN, PUBLIC, signer.chain)
    licence = _typical(issuer)
    credential = issue_compact_licence(licence, signer, issuer)
    report = verify_compact_licence(credential, fed.bundle, IssuerList([issuer]), at=AT)
    assert report.failure is None
    assert report.licence == licence
    data = _digits_decode_independently(credential)
    sign1 = cbor2.loads(zlib.decompress(data) if data[0] == 0x78 else data)
    protected, _, payload, signature = sign1.value
    assert cbor2.loads(protected)[1] == -7
    assert len(signature) == 64  # r || s, as COSE writes ECDSA signatures
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key = signer.chain[0].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(der, cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(SHA256()))
    # the algorithm is bound to the key: an Ed25519 issuer's kid with alg -7 is refused
    ed = _issuer(fed)
    relabelled = cbor2.dumps({1: -7, 4: ed.kid})
    forged = cbor2.dumps(cbor2.CBORTag(18, [relabelled, {}, payload, signature]))
    report = verify_compact_licence(digits_encode(forged), fed.bundle, IssuerList([ed]), at=AT)
    assert report.failure is Failure.SIGNATURE


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400) | st.text(max_size=300).map(lambda t: t.encode()))
def test_any_input_gets_a_report_never_an_exception(fed: Federation, data: bytes) -> None:
    issuer = _issuer(fed)
    for text in (digits_encode(data), digits_encode(zlib.compress(data)), data.decode("latin-1")):
        report = verify_compact_licence(text, fed.bundle, IssuerList([issuer]), at=AT)
        assert not report.valid
        assert report.failure in (Failure.MALFORMED, Failure.UNKNOWN_ISSUER)
