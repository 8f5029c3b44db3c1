"""sign_compact / verify_compact: round trips, an independent verifier, and refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey
from joserfc.registry import HeaderParameter

from signing.certificates import Purpose
from signing.encoding import b64url, b64url_decode
from signing.errors import InvalidSignature
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

TYP = "tongban-test+jws"


def _verify(world, token, **kw):
    kw.setdefault("at", world.now)
    kw.setdefault("typ", TYP)
    return verify_compact(token, world.bundle if "bundle" not in kw else kw.pop("bundle"), **kw)


def _jose_registry(algs: list[str]) -> jose_jws.JWSRegistry:
    """joserfc's registry taught our ``iat`` header member and x5c-sized headers."""
    registry = jose_jws.JWSRegistry(
        header_registry={"iat": HeaderParameter("signing time", "int")}, algorithms=algs
    )
    registry.max_header_length = 8192
    return registry


def _header(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[0]))


def _forge(header: dict, payload: bytes, signer: Signer) -> str:
    """A token with an arbitrary header, *correctly* signed by the real key, so a refusal
    can only come from the header check."""
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(payload)
    signing_input = f"{head}.{body}".encode()
    if isinstance(signer.key, ec.EllipticCurvePrivateKey):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(signer.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = signer.key.sign(signing_input)
    return f"{head}.{body}.{b64url(sig)}"


@pytest.mark.parametrize("which", ["ed_signer", "es_signer"])
def test_round_trip_gives_payload_signer_and_time(world, which) -> None:
    signer = getattr(world, which)
    token = sign_compact(b'{"hello":"world"}', signer, typ=TYP, at=world.now)
    header = _header(token)
    assert header["alg"] == {"ed_signer": "EdDSA", "es_signer": "ES256"}[which]
    assert header["kid"] == signer.kid
    assert header["iat"] == int(world.now.timestamp())
    result = _verify(world, token, node_id="420106")
    assert result.payload == b'{"hello":"world"}'
    assert result.signer.node_id == "420106"
    assert result.signed_at == world.now
    assert result.header["typ"] == TYP


def test_kid_is_sha256_of_leaf_der(world) -> None:
    der = world.ed_signer.chain[0].public_bytes(Encoding.DER)
    assert world.ed_signer.kid == b64url(hashlib.sha256(der).digest())


# joserfc warns that the "EdDSA" identifier is deprecated by RFC 9864 in favour of
# "Ed25519"; protocol v1 still writes "EdDSA" (docs/protocol.md § jws).
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
@pytest.mark.parametrize("which", ["ed_signer", "es_signer"])
def test_joserfc_verifies_our_jws_with_the_public_key(world, which) -> None:
    signer = getattr(world, which)
    token = sign_compact(b"payload bytes", signer, typ=TYP, at=world.now)
    pem = signer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    key = (ECKey if which == "es_signer" else OKPKey).import_key(pem)
    alg = signer.algorithm
    obj = jose_jws.deserialize_compact(token, key, algorithms=[alg], registry=_jose_registry([alg]))
    assert obj.payload == b"payload bytes"
    assert obj.headers()["kid"] == signer.kid


def test_we_verify_a_jws_produced_by_joserfc(world) -> None:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    signer = world.es_signer
    pem = signer.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    header = {
        "alg": "ES256",
        "typ": TYP,
        "kid": signer.kid,
        "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in signer.chain],
        "iat": int(world.now.timestamp()),
    }
    token = jose_jws.serialize_compact(
        header, b"from joserfc", ECKey.import_key(pem), registry=_jose_registry(["ES256"])
    )
    assert _verify(world, token).payload == b"from joserfc"


def test_tampered_header_payload_or_signature_is_refused(world) -> None:
    token = sign_compact(b"original", world.ed_signer, typ=TYP, at=world.now)
    head, body, sig = token.split(".")
    header = _header(token)
    header["note"] = "added"
    new_head = b64url(json.dumps(header).encode())
    raw_sig = bytearray(b64url_decode(sig))
    raw_sig[5] ^= 1
    for bad in (
        f"{new_head}.{body}.{sig}",
        f"{head}.{b64url(b'changed')}.{sig}",
        f"{head}.{body}.{b64url(bytes(raw_sig))}",
        f"{head}.{body}.",
        f"{head}.{body}",
        f"{head}.{body}.{sig}.x",
        f"{head}.{body}.{sig}=",
        f"{head}.{body} .{sig}",
    ):
        with pytest.raises(InvalidSignature):
            _verify(world, bad)


def test_alg_none_is_refused(world) -> None:
    header = _header(sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now))
    header["alg"] = "none"
    head = b64url(json.dumps(header).encode())
    for token in (f"{head}.{b64url(b'x')}.", f"{head}.{b64url(b'x')}.AA"):
        with pytest.raises(InvalidSignature):
            _verify(world, token)


@pytest.mark.parametrize("which", ["ed_signer", "es_signer"])
def test_hs256_with_the_public_key_as_secret_is_refused(world, which) -> None:
    signer = getattr(world, which)
    header = _header(sign_compact(b"x", signer, typ=TYP, at=world.now))
    header["alg"] = "HS256"
    head = b64url(json.dumps(header).encode())
    body = b64url(b"x")
    for secret in (
        signer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        signer.chain[0].public_bytes(Encoding.PEM),
        signer.chain[0].public_bytes(Encoding.DER),
    ):
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidSignature):
            _verify(world, f"{head}.{body}.{b64url(mac)}")


def test_alg_other_than_the_key_dictates_is_refused_even_if_correctly_signed(world) -> None:
    header = _header(sign_compact(b"x", world.es_signer, typ=TYP, at=world.now))
    for alg in ("EdDSA", "ES384", "RS256", "PS256", "Ed25519", "es256"):
        header["alg"] = alg
        with pytest.raises(InvalidSignature):
            _verify(world, _forge(header, b"x", world.es_signer))
    header["alg"] = "ES256"
    assert _verify(world, _forge(header, b"x", world.es_signer)).payload == b"x"


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("crit", ["exp"]),
        ("crit", ["b64"]),
        ("crit", []),
        ("b64", False),
        ("jwk", {"kty": "OKP"}),
        ("jku", "https://attacker.example/keys"),
        ("x5u", "https://attacker.example/cert"),
    ],
)
def test_crit_b64_and_remote_key_members_are_refused(world, member, value) -> None:
    header = _header(sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now))
    assert _verify(world, _forge(header, b"x", world.ed_signer)).payload == b"x"
    header[member] = value
    with pytest.raises(InvalidSignature):
        _verify(world, _forge(header, b"x", world.ed_signer))


def test_kid_x5t_and_x5c_mismatches_are_refused(world) -> None:
    good = _header(sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now))
    cases = [
        {**good, "kid": world.other_signer.kid},
        {**good, "x5t#S256": world.other_signer.kid},
        {k: v for k, v in good.items() if k != "kid"},
        {k: v for k, v in good.items() if k != "x5c"},
        {**good, "x5c": []},
        {**good, "x5c": ["not base64!"]},
        {**good, "x5c": good["x5c"][0]},
    ]
    for header in cases:
        with pytest.raises(InvalidSignature):
            _verify(world, _forge(header, b"x", world.ed_signer))
    # x5c of another node whose kid matches, signed by our key: signature fails
    other = _header(sign_compact(b"x", world.other_signer, typ=TYP, at=world.now))
    with pytest.raises(InvalidSignature):
        _verify(world, _forge(other, b"x", world.ed_signer), bundle=world.bundle)


def test_iat_missing_malformed_or_in_the_future_is_refused(world) -> None:
    good = _header(sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now))
    for iat in (None, "1700000000", True, -1, 1.5, int(world.now.timestamp()) + 301):
        header = (
            {**good, "iat": iat}
            if iat is not None
            else {k: v for k, v in good.items() if k != "iat"}
        )
        with pytest.raises(InvalidSignature):
            _verify(world, _forge(header, b"x", world.ed_signer))
    header = {**good, "iat": int(world.now.timestamp()) + 299}
    assert _verify(world, _forge(header, b"x", world.ed_signer)).payload == b"x"


def test_expired_not_yet_valid_and_revoked_certificates_are_refused(world) -> None:
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now)
    with pytest.raises(InvalidSignature):
        _verify(world, token, at=world.now + timedelta(days=800))
    with pytest.raises(InvalidSignature):
        _verify(world, token, at=world.now - timedelta(minutes=10))
    revoked = sign_compact(b"x", world.other_signer, typ=TYP, at=world.now)
    assert _verify(world, revoked).signer.node_id == "420981"
    with pytest.raises(InvalidSignature):
        _verify(world, revoked, bundle=world.revoked_bundle)


def test_wrong_typ_wrong_node_and_wrong_purpose_are_refused(world) -> None:
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now)
    with pytest.raises(InvalidSignature):
        _verify(world, token, typ="tongban-other+jws")
    with pytest.raises(InvalidSignature):
        _verify(world, token, node_id="420981")
    with pytest.raises(InvalidSignature):
        _verify(world, token, purpose=Purpose.TLS_PEER)


def test_duplicate_header_members_are_refused(world) -> None:
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now)
    head_json = b64url_decode(token.split(".")[0]).decode()
    dup = head_json[:-1] + ',"typ":"' + TYP + '"}'
    head = b64url(dup.encode())
    signing_input = f"{head}.{b64url(b'x')}".encode()
    sig = world.ed_signer.key.sign(signing_input)
    with pytest.raises(InvalidSignature):
        _verify(world, f"{head}.{b64url(b'x')}.{b64url(sig)}")


def test_detached_payload_round_trip_and_refusals(world) -> None:
    token = sign_compact(b"the document", world.ed_signer, typ=TYP, at=world.now, detached=True)
    assert token.split(".")[1] == ""
    assert _verify(world, token, detached_payload=b"the document").payload == b"the document"
    with pytest.raises(InvalidSignature):
        _verify(world, token, detached_payload=b"the documenT")
    with pytest.raises(InvalidSignature):
        _verify(world, token)  # empty payload is not the signed one
    attached = sign_compact(b"the document", world.ed_signer, typ=TYP, at=world.now)
    with pytest.raises(InvalidSignature):
        _verify(world, attached, detached_payload=b"the document")


def test_extra_header_cannot_override_reserved_members(world) -> None:
    for name in ("alg", "kid", "x5c", "iat", "typ", "crit", "b64", "jwk"):
        with pytest.raises(ValueError, match="may not set"):
            sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now, extra_header={name: 1})
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now, extra_header={"cty": "a"})
    assert _verify(world, token).header["cty"] == "a"


def test_refusal_cause_is_logged_on_tongban_signing(world, caplog) -> None:
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now)
    with (
        caplog.at_level(logging.WARNING, logger="tongban.signing"),
        pytest.raises(InvalidSignature) as info,
    ):
        _verify(world, token, typ="nope")
    assert str(info.value) == "signature verification failed"  # opaque to the caller
    assert any("typ" in r.getMessage() and r.name == "tongban.signing" for r in caplog.records)


def test_non_canonical_base64url_with_stray_trailing_bits_is_refused(world) -> None:
    """A 64-byte signature is 86 base64url characters; the last one carries 2 unused bits.
    Flipping one of them decodes to the same bytes: a second spelling of the same token."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now)
    head, body, sig = token.split(".")
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    assert b64url_decode(twin) == b64url_decode(sig)
    with pytest.raises(InvalidSignature):
        _verify(world, f"{head}.{body}.{twin}")


def test_signing_time_must_be_timezone_aware(world) -> None:
    with pytest.raises(ValueError, match="timezone"):
        sign_compact(b"x", world.ed_signer, typ=TYP, at=world.now.replace(tzinfo=None))


@pytest.mark.parametrize("detached", [False, True])
@pytest.mark.parametrize("extra", [None, {"zz": [1, "二"], "a": True}])
def test_tokens_are_the_bytes_pyjwt_writes(world, detached, extra) -> None:
    """sign_compact writes the compact JWS itself (issue 12: pyjwt's generic checks cost
    a third of a signature): for Ed25519 (deterministic) the very bytes PyJWS.encode
    gives for the same header; an ES256 token verifies with pyjwt's own decoder."""
    from jwt.api_jws import PyJWS

    payload = json.dumps({"n": 1, "text": "通办"}).encode()
    token = sign_compact(
        payload, world.ed_signer, typ=TYP, at=world.now, detached=detached, extra_header=extra
    )
    signer = world.ed_signer
    header = {
        **(extra or {}), "alg": "EdDSA", "typ": TYP, "kid": signer.kid,
        "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in signer.chain],
        "iat": int(world.now.timestamp()),
    }  # fmt: skip
    reference = PyJWS().encode(payload, signer.key, algorithm="EdDSA", headers=header)
    if detached:
        head, _, sig = reference.split(".")
        reference = f"{head}..{sig}"
    assert token == reference
    es = sign_compact(payload, world.es_signer, typ=TYP, at=world.now, extra_header=extra)
    public = world.es_signer.key.public_key()
    assert PyJWS().decode(es, public, algorithms=["ES256"]) == payload


def test_a_remembered_header_lets_nothing_else_through(world) -> None:
    """verify_compact remembers a decoded header by its segment (issue 12); every other
    check still runs on every token with that header."""
    token = sign_compact(b'{"n":1}', world.ed_signer, typ=TYP, at=world.now)
    assert _verify(world, token).payload == b'{"n":1}'  # the header is remembered now
    head, body, sig = token.split(".")
    other_body = b64url(b'{"n":2}')
    flipped = sig[:10] + ("B" if sig[10] == "A" else "A") + sig[11:]  # never the same
    for forged in (f"{head}.{other_body}.{sig}", f"{head}.{body}.{flipped}"):
        with pytest.raises(InvalidSignature):
            _verify(world, forged)
    with pytest.raises(InvalidSignature):
        _verify(world, token, typ="other+jws")
    with pytest.raises(InvalidSignature):
        _verify(world, token, bundle=world.revoked_bundle, at=world.now + timedelta(days=4000))
    assert _verify(world, token).payload == b'{"n":1}'


def test_a_remembered_signing_header_follows_the_chain_the_time_and_the_type(world) -> None:
    """sign_compact makes a header segment once per (key, chain, typ, second) (issue 12):
    a signer with the same key and leaf but a longer chain, the next second and another
    type each get their own header; a header with extra members is never remembered."""
    from cryptography import x509

    root = x509.load_pem_x509_certificate((world.fed / "root.pem").read_bytes())
    signer = world.ed_signer
    longer = Signer(key=signer.key, chain=(*signer.chain, root))
    assert longer.kid == signer.kid

    def header(token: str) -> dict:
        return json.loads(b64url_decode(token.split(".")[0]))

    first = header(sign_compact(b"{}", signer, typ=TYP, at=world.now))
    assert len(header(sign_compact(b"{}", longer, typ=TYP, at=world.now))["x5c"]) == 2
    assert len(first["x5c"]) == 1
    later = header(sign_compact(b"{}", signer, typ=TYP, at=world.now + timedelta(seconds=1)))
    assert later["iat"] == first["iat"] + 1
    assert header(sign_compact(b"{}", signer, typ="other+jws", at=world.now))["typ"] == "other+jws"
    extra = sign_compact(b"{}", signer, typ=TYP, at=world.now, extra_header={"cty": "a"})
    assert header(extra)["cty"] == "a"
    assert "cty" not in header(sign_compact(b"{}", signer, typ=TYP, at=world.now))
    token = sign_compact(b"{}", longer, typ=TYP, at=world.now)
    assert _verify(world, token).signer.node_id == "420106"
