"""SM-profile sealing primitives (signing.sm_seal): SM4 against the GB/T 32907 example,
SM4-GCM of OpenSSL checked by GmSSL (two implementations), SM2-sealed secrets, and the
SM4-GCM segmented stream refusing every rearrangement."""

from __future__ import annotations

import io
import os

import gmssl_pyx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from signing.errors import DecryptionFailed
from signing.sm2 import Sm2PrivateKey
from signing.sm_seal import (
    SEGMENT_SIZE,
    decrypt_stream,
    encrypt_stream,
    open_secret,
    seal_secret,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)

HEADER = 40


def test_sm4_block_matches_the_gbt32907_example() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (enc.update(key) + enc.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_agrees_with_gmssl_both_ways() -> None:
    key, nonce, aad, text = os.urandom(16), os.urandom(12), b"aad", os.urandom(1000)
    ours = sm4_gcm_encrypt(key, nonce, aad, text)
    assert gmssl_pyx.sm4_gcm_decrypt(key, nonce, aad, ours[:-16], ours[-16:]) == text
    ct, tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, text)
    assert sm4_gcm_decrypt(key, nonce, aad, bytes(ct) + bytes(tag)) == text
    with pytest.raises(DecryptionFailed):
        sm4_gcm_decrypt(key, nonce, b"other", ours)


def test_sealed_secret_opens_only_for_its_key_and_info() -> None:
    alice, bob = Sm2PrivateKey.generate(), Sm2PrivateKey.generate()
    secret = os.urandom(32)
    sealed = seal_secret(alice.public_key, secret, b"tongban packet key")
    assert open_secret(alice, sealed, b"tongban packet key") == secret
    with pytest.raises(DecryptionFailed):
        open_secret(bob, sealed, b"tongban packet key")
    with pytest.raises(DecryptionFailed):
        open_secret(alice, sealed, b"tongban attachment key")
    for i in (0, 5, len(sealed) // 2, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(DecryptionFailed):
            open_secret(alice, bytes(bad), b"tongban packet key")
    with pytest.raises(DecryptionFailed):
        open_secret(alice, sealed[:-1], b"tongban packet key")


def _encrypt(data: bytes, key: bytes, aad: bytes = b"attachment") -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, aad)
    return out.getvalue()


def _decrypt(data: bytes, key: bytes, aad: bytes = b"attachment") -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, key, aad)
    return out.getvalue()


FIRST = SEGMENT_SIZE - HEADER - 16  # plaintext of the first segment


@pytest.mark.parametrize(
    "size", [0, 1, FIRST - 1, FIRST, FIRST + 1, FIRST + SEGMENT_SIZE - 16, 3 * SEGMENT_SIZE]
)
def test_stream_round_trip_across_segment_boundaries(size: int) -> None:
    key, data = os.urandom(32), os.urandom(size)
    sealed = _encrypt(data, key)
    assert _decrypt(sealed, key) == data


def test_stream_segments_are_sm4_gcm_that_gmssl_opens() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key, data = os.urandom(32), os.urandom(100)
    sealed = _encrypt(data, key)
    salt, prefix = sealed[1:33], sealed[33:40]
    seg_key = HKDF(hashes.SM3(), 16, salt, b"attachment").derive(key)
    nonce = prefix + (0).to_bytes(4, "big") + b"\x01"
    body = sealed[40:]
    assert gmssl_pyx.sm4_gcm_decrypt(seg_key, nonce, b"", body[:-16], body[-16:]) == data


def test_stream_refuses_truncation_reordering_appending_and_wrong_context() -> None:
    key = os.urandom(32)
    data = os.urandom(FIRST + 2 * (SEGMENT_SIZE - 16) + 10)  # four segments
    sealed = _encrypt(data, key)
    first_end = SEGMENT_SIZE
    segs = [
        sealed[first_end + i * SEGMENT_SIZE : first_end + (i + 1) * SEGMENT_SIZE] for i in range(3)
    ]
    assert sealed[:first_end] + b"".join(segs) == sealed
    cases = {
        "truncated at a segment boundary": sealed[:first_end] + segs[0] + segs[1],
        "truncated mid-segment": sealed[:-5],
        "reordered": sealed[:first_end] + segs[1] + segs[0] + segs[2],
        "appended": sealed + b"\x00",
        "bit flip": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
    }
    accepted = []
    for name, bad in cases.items():
        try:
            _decrypt(bad, key)
        except DecryptionFailed:
            continue
        accepted.append(name)
    assert accepted == []
    with pytest.raises(DecryptionFailed):
        _decrypt(sealed, key, aad=b"recording")
    with pytest.raises(DecryptionFailed):
        _decrypt(sealed, os.urandom(32))
    other = _encrypt(data, key)  # same key, another stream: segments do not splice
    with pytest.raises(DecryptionFailed):
        _decrypt(sealed[:first_end] + other[first_end:], key)
