"""The two segmented streams a sealed blob may be, and re-encryption from one to the other.

A sealed blob (an attachment) is the Tink AES-256-GCM-HKDF stream
(:mod:`signing.stream`, protocol.md §4.2) or, when the packet carrying it is sealed to
an SM-profile node's ``sm2-sm4gcm`` key, the SM4-GCM stream with HKDF-SM3
(:mod:`signing.sm_seal`, §4.4): :func:`stream_for` maps the packet's ``sealed.suite``
to its blobs' stream. Both take a 32-byte key and associated data.

A node stages its own attachments in the stream of its own current key (an SM-profile
node in the SM4-GCM stream, :mod:`relay.core.attachments`), sealing them as they arrive
with :mod:`signing.segments` under :attr:`Stream.segment_cipher`; a packet to a partner
of the other stream carries a copy re-encrypted by :func:`transcode_file` under a fresh
key. Transcoding runs in constant memory and writes no plaintext to disk: one
thread decrypts into a bounded in-memory pipe while the caller's thread encrypts from
it. The copy is returned only when the source decrypted completely (every segment
authenticated); otherwise :class:`signing.errors.DecryptionFailed` is raised and the
caller publishes nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from signing import sm_seal, stream
from signing.hpke import HpkeSuite
from signing.segments import SegmentCipher

__all__ = ["Stream", "decrypt", "encrypt", "stream_for", "transcode_file"]

_PIPE_BYTES = 1 << 20  # plaintext held between the two threads, at most


class Stream(StrEnum):
    """The segmented stream of a sealed blob (the value is its name in protocol.md)."""

    TINK_AES256GCM = "tink-aes256gcm-hkdf-sha256-64k"
    SM4GCM = "sm4gcm-hkdf-sm3-64k"

    @property
    def segment_cipher(self) -> SegmentCipher:
        """What seals its segments, for resumable sealing (:mod:`signing.segments`)."""
        return SegmentCipher.SM4GCM if self is Stream.SM4GCM else SegmentCipher.AES256GCM


def stream_for(suite: str) -> Stream:
    """The stream of the blobs of a packet sealed with ``suite`` (a wire suite name)."""
    return Stream.SM4GCM if suite == HpkeSuite.SM2_SM4GCM else Stream.TINK_AES256GCM


def encrypt(kind: Stream, src: BinaryIO, dst: BinaryIO, key: bytes, aad: bytes) -> None:
    """Encrypt all of ``src`` into ``dst`` with the ``kind`` stream."""
    if kind is Stream.SM4GCM:
        sm_seal.encrypt_stream(src, dst, key, aad)
    else:
        stream.encrypt_stream(src, dst, key, aad=aad)


def decrypt(kind: Stream, src: BinaryIO, dst: BinaryIO, key: bytes, aad: bytes) -> None:
    """Decrypt ``src`` (to its end) into ``dst``; :class:`DecryptionFailed` as the stream
    module raises it (authentic plaintext before the failure may be in ``dst``)."""
    if kind is Stream.SM4GCM:
        sm_seal.decrypt_stream(src, dst, key, aad)
    else:
        stream.decrypt_stream(src, dst, key, aad=aad)


class _Pipe:
    """A bounded byte pipe between a writing and a reading thread."""

    def __init__(self, limit: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._limit = limit
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> int:
        data = bytes(data)
        with self._cond:
            while self._held and self._held + len(data) > self._limit and not self._closed:
                self._cond.wait()
            if self._closed:
                raise BrokenPipeError("the reader stopped")
            self._chunks.append(data)
            self._held += len(data)
            self._cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._closed:
                self._cond.wait()
            if not self._chunks:
                return b""
            first = self._chunks.popleft()
            if 0 <= n < len(first):
                first, rest = first[:n], first[n:]
                self._chunks.appendleft(rest)
            self._held -= len(first)
            self._cond.notify_all()
            return first


class _HashingFile:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def transcode_file(
    src: Path, dst: Path, keys: tuple[bytes, bytes], *, aad: bytes, kinds: tuple[Stream, Stream]
) -> tuple[str, int]:
    """Re-encrypt the sealed blob ``src`` (stream ``kinds[0]`` under ``keys[0]``) into
    ``dst`` (``kinds[1]`` under ``keys[1]``), same ``aad``; fsync ``dst`` and return its
    SHA-256 (hex) and size. Raises :class:`DecryptionFailed` when ``src`` does not
    decrypt completely (``dst`` then holds nothing to publish)."""
    pipe = _Pipe(_PIPE_BYTES)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with open(src, "rb") as fin:
                decrypt(kinds[0], fin, pipe, keys[0], aad)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)
        finally:
            pipe.close()

    producer = threading.Thread(target=produce, name="tongban-transcode", daemon=True)
    producer.start()
    try:
        with open(dst, "wb") as fout:
            sink = _HashingFile(fout)
            encrypt(kinds[1], pipe, sink, keys[1], aad)  # type: ignore[arg-type]
            fout.flush()
            os.fsync(fout.fileno())
    finally:
        pipe.close()  # a producer still writing stops
        producer.join()
    if failure:
        dst.unlink(missing_ok=True)
        raise failure[0]
    return sink.sha.hexdigest(), sink.size
