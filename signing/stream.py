"""Segmented streaming encryption of large content (attachments, recordings).

The construction is Tink's streaming AEAD ``AES-GCM-HKDF`` (an online AEAD in the STREAM
family) with fixed parameters: 32-byte key, HKDF-SHA256, 32-byte derived segment key,
65,536-byte ciphertext segments, RAW output prefix. Any size is encrypted and decrypted
in constant memory (1 MiB reads); every segment is authenticated with its index and a
last-segment flag, so truncation, reordering, splicing and appended bytes are refused.
The byte-level wire format is in ``docs/protocol.md`` (section ``sealing``).

Decryption writes plaintext to ``dst`` as segments authenticate; a failure part-way
leaves the plaintext of the earlier, authentic segments in ``dst``. Callers that must
not expose partial content write to a temporary file and keep it only on success (as
``tongban open`` does).
"""

from __future__ import annotations

import logging
import os
from typing import BinaryIO

import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from signing.errors import DecryptionFailed, MalformedInput

__all__ = [
    "CIPHERTEXT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "TAG_SIZE",
    "ciphertext_size",
    "decrypt_stream",
    "encrypt_stream",
    "new_stream_key",
]

_log = logging.getLogger("tongban.signing")

KEY_SIZE = 32
CIPHERTEXT_SEGMENT_SIZE = 65_536
TAG_SIZE = 16
HEADER_SIZE = 1 + KEY_SIZE + 7  # length byte, salt, nonce prefix
_CHUNK = 1 << 20
_WRITE = CIPHERTEXT_SEGMENT_SIZE - TAG_SIZE  # one segment of plaintext per write
_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"

streaming_aead.register()


def new_stream_key() -> bytes:
    """A fresh 32-byte stream key from the OS random source."""
    return os.urandom(KEY_SIZE)


def ciphertext_size(plaintext_size: int) -> int:
    """Exact ciphertext length for ``plaintext_size`` bytes of plaintext."""
    first = CIPHERTEXT_SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE
    if plaintext_size <= first:
        return HEADER_SIZE + plaintext_size + TAG_SIZE
    rest = plaintext_size - first
    full = CIPHERTEXT_SEGMENT_SIZE - TAG_SIZE
    segments = 1 + -(-rest // full)
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def _primitive(key: bytes) -> streaming_aead.StreamingAead:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise MalformedInput(f"a stream key has {KEY_SIZE} bytes")
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=CIPHERTEXT_SEGMENT_SIZE,
        derived_key_size=KEY_SIZE,
        hkdf_hash_type=common_pb2.SHA256,
    )
    proto_key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, params=params, key_value=key
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url=_TYPE_URL,
                    value=proto_key.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    primitive: streaming_aead.StreamingAead = handle.primitive(streaming_aead.StreamingAead)
    return primitive


class _Borrowed:
    """A view of a caller's stream that Tink may close without closing the stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.closed = False
        self.count = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            view = view[written:]
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self.closed = True


def _read_into(src: BinaryIO, buffer: memoryview) -> int:
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        return int(readinto(buffer) or 0)
    data = src.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, *, aad: bytes) -> int:
    """Encrypt all of ``src`` into ``dst`` under ``key`` bound to ``aad``.

    Returns the number of ciphertext bytes written to ``dst``. Neither stream is closed.
    """
    out = _Borrowed(dst)
    buffer = memoryview(bytearray(_CHUNK))  # reused: no fresh 1 MiB allocation per read
    with _primitive(key).new_encrypting_stream(out, aad) as enc:
        while size := _read_into(src, buffer):
            view = buffer[:size]
            while view:  # Tink copies each write: small pieces keep malloc off mmap
                view = view[enc.write(view[:_WRITE]) :]
    dst.flush()
    return out.count


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, *, aad: bytes) -> int:
    """Decrypt the ciphertext in ``src`` (to its end) into ``dst``.

    Returns the number of plaintext bytes written. Raises :class:`DecryptionFailed` on a
    wrong key or ``aad``, or any modified, truncated, reordered or extended ciphertext;
    plaintext of segments before the failure may already be in ``dst`` (module docs).
    """
    written = 0
    source = _Borrowed(src)
    try:
        with _primitive(key).new_decrypting_stream(source, aad) as dec:
            buffer = memoryview(bytearray(_CHUNK))
            while size := dec.readinto(buffer):
                dst.write(buffer[:size])
                written += size
    except tink.TinkError as exc:
        _log.info("stream decryption failed after %d plaintext bytes: %s", written, exc)
        raise DecryptionFailed from None
    # tink-cc accepts bytes appended after a full-size last segment without reading them
    # (tink-crypto/tink-cc#20): the ciphertext must end exactly where its length says.
    if source.count + len(src.read(1)) != ciphertext_size(written):
        _log.info("stream decryption failed: bytes after the last segment")
        raise DecryptionFailed
    dst.flush()
    return written
