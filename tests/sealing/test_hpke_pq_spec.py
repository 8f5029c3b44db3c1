"""The post-quantum suite, pinned byte by byte by an independent implementation.

``mlkem768x25519-sha256-aes256gcm`` is RFC 9180 base mode with KEM id 0x647A (X-Wing,
as draft-ietf-hpke-pq names "MLKEM768-X25519"), HKDF-SHA256 (0x0001) and AES-256-GCM
(0x0002). This file re-implements the X-Wing combiner and the RFC 9180 key schedule from
the documents (hmac/hashlib, ML-KEM and X25519 primitives only) and checks both
directions against ``signing.hpke``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signing.errors import DecryptionFailed
from signing.hpke import HpkeSuite, generate_hpke_key, hpke_open, hpke_seal, seal_info

SUITE_ID = b"HPKE" + struct.pack(">HHH", 0x647A, 0x0001, 0x0002)
XWING_LABEL = b"\\.//^\\"
INFO = seal_info("file-key", {"recipient": "420106"})


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + SUITE_ID + label + ikm)


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + SUITE_ID + label + info, length)


def _key_and_nonce(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    context = (
        b"\x00"
        + _labeled_extract(b"", b"psk_id_hash", b"")
        + _labeled_extract(b"", b"info_hash", info)
    )
    secret = _labeled_extract(shared_secret, b"secret", b"")
    return (
        _labeled_expand(secret, b"key", context, 32),
        _labeled_expand(secret, b"base_nonce", context, 12),
    )


def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def spec_open(ciphertext: bytes, secret: bytes, info: bytes) -> bytes:
    """Open ``enc (1088 ML-KEM ct || 32 X25519 ephemeral) || aead`` with our key file bytes."""
    pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:64])
    xk = x25519.X25519PrivateKey.from_private_bytes(secret[64:])
    ct_m, ct_x, sealed = ciphertext[:1088], ciphertext[1088:1120], ciphertext[1120:]
    ss_x = xk.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    shared = _combine(pq.decapsulate(ct_m), ss_x, ct_x, xk.public_key().public_bytes_raw())
    key, nonce = _key_and_nonce(shared, info)
    return AESGCM(key).decrypt(nonce, sealed, b"")


def spec_seal(plaintext: bytes, public_bytes: bytes, info: bytes) -> bytes:
    pk_m = mlkem.MLKEM768PublicKey.from_public_bytes(public_bytes[:1184])
    pk_x = public_bytes[1184:]
    ss_m, ct_m = pk_m.encapsulate()
    ephemeral = x25519.X25519PrivateKey.generate()
    ct_x = ephemeral.public_key().public_bytes_raw()
    ss_x = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(pk_x))
    key, nonce = _key_and_nonce(_combine(ss_m, ss_x, ct_x, pk_x), info)
    return ct_m + ct_x + AESGCM(key).encrypt(nonce, plaintext, b"")


@pytest.mark.parametrize("size", [0, 32, 1000])
def test_independent_xwing_hpke_opens_our_pq_seal(size: int) -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    plaintext = os.urandom(size)
    assert spec_open(hpke_seal(plaintext, key.public_key(), info=INFO), key.secret, INFO) == (
        plaintext
    )


def test_we_open_the_independent_xwing_hpke_seal() -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    ciphertext = spec_seal(b"stream key", key.public_key().public_bytes, INFO)
    assert hpke_open(ciphertext, key, info=INFO) == b"stream key"


def test_public_bytes_are_mlkem_encapsulation_key_then_x25519() -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(key.secret[:64])
    xk = x25519.X25519PrivateKey.from_private_bytes(key.secret[64:])
    expected = pq.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
    assert key.public_key().public_bytes == expected


@pytest.mark.parametrize("part", ["mlkem-ct", "x25519-ct", "aead"])
def test_pq_tamper_in_each_part_is_refused(part: str) -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    ciphertext = bytearray(hpke_seal(b"secret", key.public_key(), info=INFO))
    ciphertext[{"mlkem-ct": 100, "x25519-ct": 1100, "aead": 1125}[part]] ^= 0x01
    with pytest.raises(DecryptionFailed):
        hpke_open(bytes(ciphertext), key, info=INFO)


def test_pq_seal_opened_with_a_key_sharing_only_the_x25519_half_is_refused() -> None:
    """Both halves count: the same X25519 key with another ML-KEM key does not open."""
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    other = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    mixed = type(key)(key.suite, other.secret[:64] + key.secret[64:])
    ciphertext = hpke_seal(b"secret", key.public_key(), info=INFO)
    with pytest.raises(DecryptionFailed):
        hpke_open(ciphertext, mixed, info=INFO)
