"""Ed25519 through libsodium (PyNaCl): verifying every signature a partner sends, and
signing packets and receipts.

Why not ``cryptography``'s ``Ed25519PublicKey.verify``: with the OpenSSL it ships, a
verify takes about 105 µs on the project's 2-core machines and libsodium's about 55 µs
(``python -m bench verify`` prints the JWS verify against both raw verifies), and three
verifies lie on every packet's way: the outer and the inner JWS at the receiver, the
receipt back at the sender.

The answers are the same on every Wycheproof Ed25519 vector
(``tests/signing_jws/test_jws_wycheproof.py``). Where RFC 8032 leaves verifiers a choice,
libsodium is the stricter: it refuses an ``S`` not below the group order, non-canonical
point encodings, and a public key or ``R`` of small order (docs/protocol.md §2.2, 8). An
RFC 8032 signer never makes any of these. Keys stay ``cryptography`` objects everywhere
else (certificates, PEM files); only their raw bytes reach libsodium. Signing gives the
same bytes as any RFC 8032 signer (Ed25519 is deterministic) in about 22 µs, not 33
(the bench's whole ``sign_compact`` runs at 1.4 times OpenSSL's raw signature).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519
from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError

SIGNATURE_BYTES = 64


def ed25519_verify(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``key``'s Ed25519 signature of ``message``."""
    return ed25519_verify_raw(key.public_bytes_raw(), signature, message)


def ed25519_verify_raw(public: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``message`` by the 32-byte
    public key ``public`` (for callers that keep the raw key: the JWS leaf memo)."""
    if len(signature) != SIGNATURE_BYTES:  # else libsodium would read part of the message
        return False  # as signature and check the rest
    try:
        crypto_sign_open(signature + message, public)
    except BadSignatureError:
        return False
    return True


def ed25519_secret(key: ed25519.Ed25519PrivateKey) -> bytes:
    """The 64 bytes libsodium signs with: the RFC 8032 seed, then the public key."""
    return key.private_bytes_raw() + key.public_key().public_bytes_raw()


def ed25519_sign(secret: bytes, message: bytes) -> bytes:
    """The Ed25519 signature of ``message`` by the key :func:`ed25519_secret` gave."""
    return crypto_sign(message, secret)[:SIGNATURE_BYTES]
