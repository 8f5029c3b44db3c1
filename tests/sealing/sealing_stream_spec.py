"""An independent implementation of the stream format, written from docs/protocol.md.

It uses only ``cryptography``'s HKDF and AESGCM, never Tink. If Tink output decrypts here
and this module's output decrypts with Tink, the byte-level description is complete.
Test code only: it holds whole messages in memory.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEGMENT = 65_536
HEADER = 40
TAG = 16


class SpecError(Exception):
    pass


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _segment_key(key: bytes, salt: bytes, aad: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=aad).derive(key)


def spec_decrypt(ciphertext: bytes, key: bytes, aad: bytes) -> bytes:
    if len(ciphertext) < HEADER + TAG or ciphertext[0] != HEADER:
        raise SpecError("bad header")
    salt, prefix = ciphertext[1:33], ciphertext[33:40]
    aes = AESGCM(_segment_key(key, salt, aad))
    body = ciphertext[HEADER:]
    out, pos, index = [], 0, 0
    while True:
        size = SEGMENT - HEADER if index == 0 else SEGMENT
        segment = body[pos : pos + size]
        pos += len(segment)
        last = pos == len(body)
        if len(segment) < TAG or (not last and len(segment) != size):
            raise SpecError("bad segment length")
        out.append(aes.decrypt(_nonce(prefix, index, last), segment, None))
        if last:
            return b"".join(out)
        index += 1


def spec_encrypt(plaintext: bytes, key: bytes, aad: bytes, *, salt: bytes, prefix: bytes) -> bytes:
    assert len(salt) == 32
    assert len(prefix) == 7
    aes = AESGCM(_segment_key(key, salt, aad))
    sizes = [SEGMENT - HEADER - TAG]
    while sum(sizes) < len(plaintext):
        sizes.append(SEGMENT - TAG)
    out, pos = [bytes([HEADER]) + salt + prefix], 0
    for index, size in enumerate(sizes):
        chunk = plaintext[pos : pos + size]
        pos += size
        out.append(aes.encrypt(_nonce(prefix, index, index == len(sizes) - 1), chunk, None))
    return b"".join(out)
