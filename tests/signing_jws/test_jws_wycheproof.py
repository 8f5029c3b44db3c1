"""Wycheproof vectors against the EdDSA / ES256 verification path of verify_compact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key
from jwt.algorithms import ECAlgorithm

from signing.errors import InvalidSignature
from signing.jws import verify_raw, verify_with_key

# ../shared beside the checkout (as in CI), whatever folder the checkout is in
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "wycheproof"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def _cases(name: str):
    data = _load(name)
    for group in data["testGroups"]:
        for test in group["tests"]:
            yield group, test


def test_ed25519_vectors_every_valid_accepted_every_invalid_refused() -> None:
    seen = {"valid": 0, "invalid": 0}
    for group, test in _cases("ed25519_test.json"):
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(group["publicKey"]["pk"]))
        msg, sig = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
        assert test["result"] in ("valid", "invalid"), test
        if test["result"] == "valid":
            verify_raw("EdDSA", key, msg, sig)
        else:
            with pytest.raises(InvalidSignature):
                verify_raw("EdDSA", key, msg, sig)
        seen[test["result"]] += 1
    assert seen == {"valid": 88, "invalid": 63}


def test_ecdsa_p256_p1363_vectors_every_valid_accepted_every_invalid_refused() -> None:
    seen = {"valid": 0, "invalid": 0}
    for group, test in _cases("ecdsa_secp256r1_sha256_p1363_test.json"):
        assert group["sha"] == "SHA-256"
        key = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        msg, sig = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
        assert test["result"] in ("valid", "invalid"), test
        if test["result"] == "valid":
            verify_raw("ES256", key, msg, sig)
        else:
            with pytest.raises(InvalidSignature):
                verify_raw("ES256", key, msg, sig)
        seen[test["result"]] += 1
    assert seen == {"valid": 173, "invalid": 89}


def test_ed25519_key_refuses_es256_and_p256_key_refuses_eddsa() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    sig = ed.sign(b"m")
    verify_raw("EdDSA", ed.public_key(), b"m", sig)
    with pytest.raises(InvalidSignature):
        verify_raw("ES256", ed.public_key(), b"m", sig)
    p = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidSignature):
        verify_raw("EdDSA", p.public_key(), b"m", b"\0" * 64)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidSignature):
        verify_raw("ES256", p384.public_key(), b"m", b"\0" * 64)


def _p256_jwk_key(jwk: dict) -> ec.EllipticCurvePublicKey:
    key = ECAlgorithm.from_jwk(json.dumps({k: jwk[k] for k in ("kty", "crv", "x", "y")}))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def test_wycheproof_jws_es256_vectors_and_every_other_alg_refused() -> None:
    """Groups with an ES256 signing key (JWK ``use`` ``sig``) run as Wycheproof says.

    Every token signed with another algorithm (HS*, RS*, PS*, ES512, alg none) must be
    refused by an ES256 key: our verifier never accepts an algorithm other than the one
    the certificate key dictates. Two vectors do not apply: tcId 354/356 are correct
    ES256 signatures that are invalid only because the JWK is marked ``use: enc`` /
    ``key_ops: [encrypt]``; our keys come from certificates, whose key usage is checked
    by path validation (tests/pki wrong-purpose cases), not from JWKs.
    """
    data = _load("json_web_signature_test.json")
    p256 = None
    for group in data["testGroups"]:
        public = group.get("public") or {}
        if (
            public.get("kty") == "EC"
            and public.get("crv") == "P-256"
            and public.get("use") == "sig"
        ):
            p256 = _p256_jwk_key(public)
    assert p256 is not None
    ran = {"valid": 0, "invalid": 0, "foreign": 0, "not-applicable": 0}
    for group in data["testGroups"]:
        public = group.get("public") or {}
        es256_sig = (
            public.get("alg") == "ES256"
            and public.get("crv") == "P-256"
            and public.get("use") == "sig"
        )
        for test in group["tests"]:
            if es256_sig:
                key = _p256_jwk_key(public)
                if test["result"] == "valid":
                    verify_with_key(test["jws"], key)
                    ran["valid"] += 1
                else:
                    with pytest.raises(InvalidSignature):
                        verify_with_key(test["jws"], key)
                    ran["invalid"] += 1
            elif public.get("crv") == "P-256" and public.get("alg") is None:
                assert test["tcId"] in (354, 356), test
                ran["not-applicable"] += 1
            else:
                with pytest.raises(InvalidSignature):
                    verify_with_key(test["jws"], p256)
                ran["foreign"] += 1
    assert ran["valid"] == 2
    assert ran["invalid"] == 37
    assert ran["not-applicable"] == 2
    assert ran["foreign"] == 401 - 39 - 2
