"""Resumable sealing into the segmented stream (docs/protocol.md §4.2, and its SM4-GCM
form of §4.4), for content that arrives in pieces over time — a staged attachment
sealed as its upload streams in.

:class:`SegmentSealer` takes plaintext in order and returns the ciphertext to append:
the 40-byte header first, then each segment as soon as its plaintext is complete (a
segment is the last one exactly when it reaches the announced total size, known in
advance). Between pieces it holds less than one segment of plaintext
(:attr:`SegmentSealer.pending`). A sealer can stop after any sealed segment and be
continued later, by this or another process, from the stream key, the header and the
plaintext offset of the segment boundary (:meth:`SegmentSealer.resume`): the segment
index follows from the offset, so no nonce is ever used twice. The output is
byte-for-byte what Tink's ``AesGcmHkdfStreaming`` writes for the same key, header and
plaintext (tests reproduce the fixed vectors and open the output with Tink).

**Segment cipher** (:class:`SegmentCipher`, a keyword argument of everything here, the
§4.2 one by default): the two streams share the layout — header, segment sizes, nonces,
the last flag — and differ only in how the segment key is derived and what seals a
segment: HKDF-SHA256 to a 32-byte AES-256-GCM key (§4.2), or HKDF-SM3 to a 16-byte
SM4-GCM key (§4.4, what :func:`signing.sm_seal.decrypt_stream` opens). The tail keeps
to the cipher of its stream (an SM-profile node keeps no AES ciphertext).

:func:`open_sealed_prefix` decrypts the complete, non-last segments before a boundary
(the plaintext of a stopped upload, to hash it again when it continues).
:func:`seal_tail` / :func:`open_tail` keep the plaintext after the last sealed segment
encrypted while an upload waits for its next piece, under a key derived for that use
(never the segment key: its nonces belong to the segments).

Opening a complete stream stays with :func:`signing.stream.decrypt_stream` (Tink) and
:func:`signing.sm_seal.decrypt_stream`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from enum import StrEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.errors import DecryptionFailed, MalformedInput
from signing.sm_seal import sm4_gcm_decrypt, sm4_gcm_encrypt
from signing.stream import CIPHERTEXT_SEGMENT_SIZE, HEADER_SIZE, KEY_SIZE, TAG_SIZE

__all__ = [
    "FIRST_SEGMENT",
    "SEGMENT",
    "SegmentCipher",
    "SegmentSealer",
    "ciphertext_offset",
    "open_sealed_prefix",
    "open_tail",
    "seal_tail",
    "segment_boundary",
]

FIRST_SEGMENT = CIPHERTEXT_SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE  # 65,480 plaintext bytes
SEGMENT = CIPHERTEXT_SEGMENT_SIZE - TAG_SIZE  # 65,520 plaintext bytes in later segments
_SALT = KEY_SIZE
_PREFIX = 7
_TAIL_INFO = b"tongban/v1 upload tail"


def segment_boundary(offset: int) -> tuple[int, int]:
    """(segments, plaintext offset) of the last segment boundary at or before ``offset``:
    the number of full segments that ``offset`` plaintext bytes fill, and where they end."""
    if offset < FIRST_SEGMENT:
        return 0, 0
    later = (offset - FIRST_SEGMENT) // SEGMENT
    return 1 + later, FIRST_SEGMENT + later * SEGMENT


def ciphertext_offset(segments: int) -> int:
    """Ciphertext bytes (header included) that hold the first ``segments`` full segments."""
    return HEADER_SIZE if segments == 0 else segments * CIPHERTEXT_SEGMENT_SIZE


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise MalformedInput(f"a stream key has {KEY_SIZE} bytes")


def _parse_header(header: bytes) -> tuple[bytes, bytes]:
    if len(header) != HEADER_SIZE or header[0] != HEADER_SIZE:
        raise MalformedInput("not a stream header")
    return header[1 : 1 + _SALT], header[1 + _SALT :]


class SegmentCipher(StrEnum):
    """How a stream's segments are sealed; the value names it (not on the wire)."""

    AES256GCM = "aes256gcm-hkdf-sha256"  # protocol.md §4.2 (Tink)
    SM4GCM = "sm4gcm-hkdf-sm3"  # §4.4


_Buffer = bytes | bytearray | memoryview


class _Aead(Protocol):
    """The part of ``AESGCM`` used here; ``decrypt`` raises ``InvalidTag`` or
    :class:`DecryptionFailed`."""

    def encrypt(self, nonce: bytes, data: _Buffer, associated_data: bytes | None, /) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes: ...


class _Sm4Gcm:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, data: _Buffer, associated_data: bytes | None, /) -> bytes:
        return sm4_gcm_encrypt(self._key, nonce, associated_data or b"", bytes(data))

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes:
        return sm4_gcm_decrypt(self._key, nonce, associated_data or b"", data)


def _derive(cipher: SegmentCipher, key: bytes, salt: bytes, info: bytes) -> _Aead:
    """The AEAD under HKDF(key, salt, info) of ``cipher``: SHA-256 to an AES-256 key, or
    SM3 to an SM4 key."""
    if cipher is SegmentCipher.SM4GCM:
        return _Sm4Gcm(HKDF(hashes.SM3(), 16, salt=salt, info=info).derive(key))
    return AESGCM(HKDF(hashes.SHA256(), KEY_SIZE, salt=salt, info=info).derive(key))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class SegmentSealer:
    """Seal ``size`` bytes of plaintext, fed in order, into the segmented stream."""

    def __init__(
        self,
        key: bytes,
        header: bytes,
        *,
        aad: bytes,
        size: int,
        segments: int = 0,
        cipher: SegmentCipher = SegmentCipher.AES256GCM,
    ) -> None:
        """Use :meth:`start` or :meth:`resume`."""
        _check_key(key)
        salt, self._prefix = _parse_header(header)
        if size < 0:
            raise MalformedInput("a stream size cannot be negative")
        self.header = header
        self.cipher = cipher
        self._aead = _derive(cipher, key, salt, aad)
        self._size = size
        self._index = segments
        self.sealed = 0 if segments == 0 else FIRST_SEGMENT + (segments - 1) * SEGMENT
        if self.sealed > size:
            raise MalformedInput("more segments than the size holds")
        self._pending = bytearray()

    @classmethod
    def start(
        cls,
        key: bytes,
        *,
        aad: bytes,
        size: int,
        cipher: SegmentCipher = SegmentCipher.AES256GCM,
    ) -> SegmentSealer:
        """A new stream with a fresh random salt and nonce prefix; write :attr:`header`
        before the first segment."""
        header = bytes([HEADER_SIZE]) + os.urandom(_SALT) + os.urandom(_PREFIX)
        return cls(key, header, aad=aad, size=size, cipher=cipher)

    @classmethod
    def resume(
        cls,
        key: bytes,
        header: bytes,
        *,
        aad: bytes,
        size: int,
        offset: int,
        cipher: SegmentCipher = SegmentCipher.AES256GCM,
    ) -> SegmentSealer:
        """Continue a stream whose segments up to plaintext ``offset`` (a segment
        boundary, see :func:`segment_boundary`) are sealed."""
        segments, boundary = segment_boundary(offset)
        if boundary != offset:
            raise MalformedInput(f"{offset} is not a segment boundary")
        return cls(key, header, aad=aad, size=size, segments=segments, cipher=cipher)

    @property
    def fed(self) -> int:
        """Plaintext bytes taken so far (sealed and pending)."""
        return self.sealed + len(self._pending)

    @property
    def pending(self) -> bytes:
        """Plaintext taken but not yet sealed (less than one segment)."""
        return bytes(self._pending)

    def _room(self) -> int:
        return FIRST_SEGMENT if self._index == 0 else SEGMENT

    def _seal(self, data: bytes | bytearray | memoryview, out: list[bytes]) -> None:
        last = self.sealed + len(data) == self._size
        out.append(self._aead.encrypt(_nonce(self._prefix, self._index, last), data, None))
        self._index += 1
        self.sealed += len(data)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take the next plaintext bytes; return the ciphertext segments they complete,
        in order. Raises :class:`MalformedInput` past the announced size."""
        if self.fed + len(data) > self._size:
            raise MalformedInput("more plaintext than the announced size")
        out: list[bytes] = []
        view = memoryview(data)
        if self._pending:
            take = min(self._room() - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) == self._room() or self.fed == self._size:
                self._seal(self._pending, out)
                self._pending = bytearray()
        while len(view) >= self._room() or (view and self.sealed + len(view) == self._size):
            take = min(self._room(), len(view))
            self._seal(view[:take], out)
            view = view[take:]
        self._pending += view
        if self._size == 0 and self._index == 0:  # the empty stream: one empty last segment
            self._seal(b"", out)
        return out

    @property
    def done(self) -> bool:
        return self._index > 0 and self.sealed == self._size


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def open_sealed_prefix(
    src: Readable,
    key: bytes,
    *,
    aad: bytes,
    segments: int,
    cipher: SegmentCipher = SegmentCipher.AES256GCM,
) -> Iterator[bytes]:
    """Plaintext of the first ``segments`` segments of the stream in ``src`` (read from
    its start), each authenticated as a full, non-last segment; raises
    :class:`DecryptionFailed` when one is not."""
    _check_key(key)
    header = src.read(HEADER_SIZE)
    try:
        salt, prefix = _parse_header(header)
    except MalformedInput:
        raise DecryptionFailed from None
    aead = _derive(cipher, key, salt, aad)
    for index in range(segments):
        size = CIPHERTEXT_SEGMENT_SIZE - (HEADER_SIZE if index == 0 else 0)
        segment = src.read(size)
        if len(segment) != size:
            raise DecryptionFailed
        try:
            yield aead.decrypt(_nonce(prefix, index, False), segment, None)
        except InvalidTag:
            raise DecryptionFailed from None


def _tail_cipher(key: bytes, header: bytes, cipher: SegmentCipher) -> _Aead:
    _check_key(key)
    salt, _ = _parse_header(header)
    return _derive(cipher, key, salt, _TAIL_INFO)


def seal_tail(
    key: bytes,
    header: bytes,
    start: int,
    plaintext: bytes,
    *,
    cipher: SegmentCipher = SegmentCipher.AES256GCM,
) -> bytes:
    """``plaintext`` (the bytes of a stream from plaintext offset ``start`` that are not
    yet a full segment) encrypted for keeping: random nonce, ``start`` bound as AAD,
    under a key derived (with ``cipher``'s HKDF) for this use from the stream key."""
    nonce = os.urandom(12)
    sealer = _tail_cipher(key, header, cipher)
    return nonce + sealer.encrypt(nonce, plaintext, start.to_bytes(8, "big"))


def open_tail(
    key: bytes,
    header: bytes,
    start: int,
    sealed: bytes,
    *,
    cipher: SegmentCipher = SegmentCipher.AES256GCM,
) -> bytes:
    """The plaintext of :func:`seal_tail` for the same key, header, ``start`` and
    ``cipher``; :class:`DecryptionFailed` otherwise."""
    try:
        aead = _tail_cipher(key, header, cipher)
        return aead.decrypt(sealed[:12], sealed[12:], start.to_bytes(8, "big"))
    except (InvalidTag, ValueError):
        raise DecryptionFailed from None
