"""Ed25519 verification through libsodium (signing.sodium): the answers a verifier must
give, including the edge cases where RFC 8032 lets verifiers differ."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from signing.errors import InvalidSignature
from signing.jws import verify_raw
from signing.sodium import ed25519_secret, ed25519_sign, ed25519_verify

# the neutral point (y = 1): a public key of small order
IDENTITY = bytes([1]) + bytes(31)


def test_a_signature_by_the_key_verifies_and_any_change_is_refused() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    key = private.public_key()
    signature = private.sign(b"tongban packet")
    assert ed25519_verify(key, signature, b"tongban packet")
    assert not ed25519_verify(key, signature, b"tongban packeT")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not ed25519_verify(key, flipped, b"tongban packet")
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    assert not ed25519_verify(other, signature, b"tongban packet")


def test_a_short_signature_cannot_borrow_bytes_from_the_message() -> None:
    # libsodium checks signature || message: 63 bytes of signature and a message that
    # starts with the 64th would hand it exactly the valid pair
    private = ed25519.Ed25519PrivateKey.generate()
    signature = private.sign(b"message")
    shifted = signature[63:] + b"message"
    assert not ed25519_verify(private.public_key(), signature[:63], shifted)
    assert not ed25519_verify(private.public_key(), signature + b"\x00", b"message")
    assert not ed25519_verify(private.public_key(), b"", b"message")


def test_a_small_order_public_key_verifies_nothing() -> None:
    # R = the neutral point, S = 0 satisfies the cofactorless equation for every message
    # under a small-order key; RFC 8032 lets a verifier accept it, tongban's refuse it
    key = ed25519.Ed25519PublicKey.from_public_bytes(IDENTITY)
    forged = IDENTITY + bytes(32)
    assert not ed25519_verify(key, forged, b"any message at all")
    with pytest.raises(InvalidSignature):
        verify_raw("EdDSA", key, b"header.payload", forged)


def test_an_s_not_below_the_group_order_is_refused() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    signature = private.sign(b"message")
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + order  # the same point, S out of range
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not ed25519_verify(private.public_key(), malleated, b"message")


def test_libsodium_signs_the_bytes_openssl_signs() -> None:
    # Ed25519 is deterministic: any RFC 8032 signer gives these very bytes
    private = ed25519.Ed25519PrivateKey.generate()
    secret = ed25519_secret(private)
    for message in (b"", b"tongban", "通办".encode() * 500):
        assert ed25519_sign(secret, message) == private.sign(message)
