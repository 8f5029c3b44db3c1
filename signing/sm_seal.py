"""Sealing primitives of the SM profile: SM2 encryption with SM4-GCM, and SM4-GCM for
streamed segments. On the wire as the sealing suite ``sm2-sm4gcm`` (:mod:`signing.hpke`
dispatches to :func:`sm2_seal` / :func:`sm2_open` for it; ``docs/protocol.md`` §4.4) and
as the attachment stream of packets sealed to such a key (:mod:`relay.core.blobs`).

**Sealing** (:func:`sm2_seal` / :func:`sm2_open`; :func:`seal_secret` /
:func:`open_secret` are the same for secrets of at most 4 KiB), the SM counterpart of an
HPKE single-shot seal: a fresh 16-byte SM4 key ``k`` is encrypted to the recipient's SM2
public key with SM2 public-key encryption (GB/T 32918.4, GmSSL, ciphertext DER
``C1 || C3 || C2`` as in GM/T 0009), and the plaintext is encrypted under ``k`` with
SM4-GCM (12 zero bytes of nonce: ``k`` is used once) with ``info`` as associated data,
so a sealed message opens only for the use it was made for. Output::

    len(sm2_ct) (2 bytes, big-endian) || sm2_ct || sm4gcm_ct || tag (16 bytes)

**Segmented stream** (:func:`encrypt_stream` / :func:`decrypt_stream`), the structure of
the default profile's Tink ``AES-GCM-HKDF`` stream with SM primitives: a header of
``0x28`` (its length, 40), a 32-byte salt and a 7-byte nonce prefix; the segment key is
HKDF-SM3(stream key, salt, info = associated data) of 16 bytes; ciphertext segments of
65,536 bytes (the first one 40 bytes shorter, for the header), each SM4-GCM with nonce
``prefix || segment index (4 bytes, big-endian) || last flag (1 byte)`` and a 16-byte
tag, so truncation, reordering, splicing and appended bytes are refused. Constant
memory: one segment at a time.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import gmssl_pyx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.errors import DecryptionFailed, MalformedInput
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey

__all__ = [
    "SEGMENT_SIZE",
    "STREAM_KEY_SIZE",
    "decrypt_stream",
    "encrypt_stream",
    "open_secret",
    "seal_secret",
    "sm2_open",
    "sm2_seal",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
]

SM4_KEY_SIZE = 16
TAG_SIZE = 16
STREAM_KEY_SIZE = 32
SEGMENT_SIZE = 65_536
_SALT_SIZE = 32
_PREFIX_SIZE = 7
_HEADER_SIZE = 1 + _SALT_SIZE + _PREFIX_SIZE
_MAX_SECRET = 4096


def sm4_gcm_encrypt(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """SM4-GCM (OpenSSL through ``cryptography``): ciphertext followed by the 16-byte tag."""
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(plaintext) + enc.finalize() + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, aad: bytes, data: bytes) -> bytes:
    """Open :func:`sm4_gcm_encrypt` output; :class:`DecryptionFailed` when it does not."""
    if len(data) < TAG_SIZE:
        raise DecryptionFailed()
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-TAG_SIZE:])).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(data[:-TAG_SIZE]) + dec.finalize()
    except InvalidTag:
        raise DecryptionFailed() from None


def seal_secret(recipient: Sm2PublicKey, secret: bytes, info: bytes) -> bytes:
    """Seal ``secret`` (at most 4 KiB) to ``recipient`` for the use named by ``info``."""
    if len(secret) > _MAX_SECRET:
        raise ValueError("seal_secret is for small secrets (keys), at most 4 KiB")
    return sm2_seal(recipient, secret, info)


def open_secret(key: Sm2PrivateKey, sealed: bytes, info: bytes) -> bytes:
    """Open :func:`seal_secret` output with the recipient's key; :class:`DecryptionFailed`
    for another key, another ``info`` or any altered byte."""
    return sm2_open(key, sealed, info)


def sm2_seal(recipient: Sm2PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """Seal ``plaintext`` (any size held in memory: a packet's content) to ``recipient``."""
    k = os.urandom(SM4_KEY_SIZE)
    sm2_ct = bytes(gmssl_pyx.sm2_encrypt(recipient.point, k))
    return len(sm2_ct).to_bytes(2, "big") + sm2_ct + sm4_gcm_encrypt(k, bytes(12), info, plaintext)


def sm2_open(key: Sm2PrivateKey, sealed: bytes, info: bytes) -> bytes:
    """Open :func:`sm2_seal` output; :class:`DecryptionFailed` for another key, another
    ``info`` or any altered byte."""
    if len(sealed) < 2:
        raise DecryptionFailed()
    n = int.from_bytes(sealed[:2], "big")
    if len(sealed) < 2 + n + TAG_SIZE:
        raise DecryptionFailed()
    try:
        k = bytes(gmssl_pyx.sm2_decrypt(key.secret, sealed[2 : 2 + n]))
    except gmssl_pyx.GmsslInnerError:
        raise DecryptionFailed() from None
    if len(k) != SM4_KEY_SIZE:
        raise DecryptionFailed()
    return sm4_gcm_decrypt(k, bytes(12), info, sealed[2 + n :])


def _segment_key(key: bytes, salt: bytes, aad: bytes) -> bytes:
    if len(key) != STREAM_KEY_SIZE:
        raise MalformedInput(f"an SM stream key is {STREAM_KEY_SIZE} bytes")
    return HKDF(hashes.SM3(), SM4_KEY_SIZE, salt, aad).derive(key)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise MalformedInput("stream too long")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_exactly(src: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = src.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, aad: bytes) -> int:
    """Encrypt all of ``src`` into ``dst``; returns the ciphertext length."""
    salt, prefix = os.urandom(_SALT_SIZE), os.urandom(_PREFIX_SIZE)
    seg_key = _segment_key(key, salt, aad)
    dst.write(bytes([_HEADER_SIZE]) + salt + prefix)
    written, index = _HEADER_SIZE, 0
    size = SEGMENT_SIZE - _HEADER_SIZE - TAG_SIZE
    current = _read_exactly(src, size)
    while True:
        size = SEGMENT_SIZE - TAG_SIZE
        following = _read_exactly(src, size)
        last = not following
        segment = sm4_gcm_encrypt(seg_key, _nonce(prefix, index, last), b"", current)
        dst.write(segment)
        written += len(segment)
        if last:
            return written
        current, index = following, index + 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, aad: bytes) -> int:
    """Decrypt ``src`` into ``dst``; returns the plaintext length. Raises
    :class:`DecryptionFailed` (plaintext of earlier authentic segments may be in ``dst``)."""
    header = _read_exactly(src, _HEADER_SIZE)
    if len(header) != _HEADER_SIZE or header[0] != _HEADER_SIZE:
        raise DecryptionFailed()
    salt, prefix = header[1 : 1 + _SALT_SIZE], header[1 + _SALT_SIZE :]
    seg_key = _segment_key(key, salt, aad)
    current = _read_exactly(src, SEGMENT_SIZE - _HEADER_SIZE)
    total, index = 0, 0
    while True:
        following = _read_exactly(src, SEGMENT_SIZE)
        last = not following
        plain = sm4_gcm_decrypt(seg_key, _nonce(prefix, index, last), b"", current)
        dst.write(plain)
        total += len(plain)
        if last:
            return total
        current, index = following, index + 1
