"""Independent judges: joserfc verifies the seals, zxing-cpp reads the QR codes."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
import zxingcpp
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import OKPKey
from joserfc.registry import HeaderParameter
from licence_support import ISSUER, T0, Federation, make_licence, publish
from PIL import Image

from signing.errors import MalformedInput
from signing.licence import issue_licence, parse_licence
from signing.qr import render_qr
from signing.status_list import StatusPurpose, parse_status_list


def _registry() -> jws.JWSRegistry:
    # tongban's JWS header carries the signing time as "iat" (docs/protocol.md §2)
    extra = {"iat": HeaderParameter("signing time", "int", required=True)}
    registry = jws.JWSRegistry(header_registry=extra, algorithms=["EdDSA"])
    registry.max_header_length = 4096  # the header carries the x5c seal certificate
    return registry


def _seal_key(fed: Federation) -> OKPKey:
    cert = fed.signer(ISSUER).chain[0]
    pem = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return OKPKey.import_key(pem)


# RFC 9864 deprecates the polymorphic "EdDSA" name in favour of "Ed25519"; tongban v1
# signs with "EdDSA" (docs/protocol.md §2), which joserfc still verifies with a warning.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


@pytest.fixture(scope="module")
def token(fed: Federation) -> str:
    return issue_licence(make_licence(), fed.signer(ISSUER), at=T0 + timedelta(hours=1))


def test_joserfc_verifies_the_licence_seal(fed: Federation, token: str) -> None:
    obj = jws.deserialize_compact(token, _seal_key(fed), registry=_registry())
    assert obj.headers()["typ"] == "vc+jwt"
    assert obj.headers()["alg"] == "EdDSA"
    claims = json.loads(obj.payload)
    assert claims["iss"] == "urn:tongban:node:320982"
    assert claims["vc"]["type"] == ["VerifiableCredential", "TongbanLicence"]


def test_joserfc_rejects_a_tampered_licence(fed: Federation, token: str) -> None:
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(forged, _seal_key(fed), registry=_registry())


def test_joserfc_verifies_the_status_list_credential(fed: Federation) -> None:
    token = publish(fed.signer(ISSUER), StatusPurpose.REVOCATION, set_bits=[3])
    obj = jws.deserialize_compact(token, _seal_key(fed), registry=_registry())
    claims = json.loads(obj.payload)
    assert claims["vc"]["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert claims["vc"]["credentialSubject"]["encodedList"].startswith("u")
    assert parse_status_list(token).status_list.set_indices() == (3,)


def _decode_png(png: bytes) -> list[str]:
    # QR codes only: the search for every format now and then took a run of the QR's
    # modules for a GS1 linear barcode (its certificate, so its pattern, is new each run)
    found = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    return [r.text for r in found]


def test_zxing_reads_the_exact_token_back_from_the_png(token: str) -> None:
    qr = render_qr(token)
    assert _decode_png(qr.png) == [token]
    assert qr.error == "M"
    assert qr.token_length == len(token)
    assert 1 <= qr.version <= 40
    assert qr.modules == 17 + 4 * qr.version
    assert parse_licence(_decode_png(qr.png)[0]) == make_licence()
    print(
        f"licence token {len(token)} chars -> QR version {qr.version}-{qr.error}, "
        f"{qr.modules} modules, {qr.printed_width_mm(0.5):.0f} mm at 0.5 mm/module"
    )


def test_qr_svg_is_an_svg_document_of_the_same_symbol(token: str) -> None:
    qr = render_qr(token, scale=2)
    root = ET.fromstring(qr.svg)
    assert root.tag.endswith("svg")
    size = (qr.modules + 8) * 2  # quiet zone of 4 modules on each side
    assert root.get("width") == str(size)
    assert root.get("height") == str(size)


def test_a_token_too_big_for_level_m_falls_back_to_level_l() -> None:
    text = "x" * 2500  # over the 2,331-byte capacity of 40-M, under 2,953 of 40-L
    qr = render_qr(text, scale=1)
    assert qr.error == "L"
    assert qr.version == 37  # 37-L holds 2,520 bytes, 36-L only 2,409
    assert _decode_png(qr.png) == [text]
    with pytest.raises(MalformedInput):
        render_qr("x" * 2954)  # beyond 40-L
