"""A staff upload sealed as it streams in: the staged file is written once, already the
sealed blob (docs/protocol.md §4.2 stream, or on an SM-profile node the SM4-GCM stream
of §4.4; associated data :func:`relay.core.blobs.attachment_aad`), and no plaintext
reaches the disk.

Files of an upload in progress, beside the store's partial path ``P``::

    P        the sealed blob so far: header, then every complete segment
    P.key    {"kid", "wrapped"}: the stream key HPKE-sealed to this node's own key
             (info purpose ``attachment-key``, naming the stream unless it is §4.2's),
             written before the first byte
    P.tail   the plaintext after the last complete segment, when an upload call ended
             inside a segment: ``signing.segments.seal_tail`` under the stream key
             (with the stream's own cipher: SM4-GCM for an SM4-GCM stream), bound to
             the segment boundary it starts at

Which stream an upload is in, its :class:`signing.segments.SegmentCipher`, is the
caller's to say (:mod:`relay.core.attachments` reads it from the wrapped key).

The recorded offset ``O`` (the store's ``Upload.offset``) is in plaintext bytes. Its
segment boundary ``b`` (``signing.segments.segment_boundary``) says how much of ``P`` is
kept; the bytes from ``b`` to ``O`` come from ``P.tail``. Periodic syncs record the
last boundary (or the offset the call resumed from, whose tail is still kept); the end
of a call records ``O`` after ``P.tail`` is durable. Should the tail not open (a crash
between writing a new tail and recording its offset), the upload continues at ``b`` —
the client is told so by the next ``offset-mismatch``.

Resuming hashes the plaintext again by decrypting the kept segments, and the blob by
reading them: the only read-back, once per resumed call.

Costs per piece of an upload (the worker thread of ``write_through``): the worker
hashes it, seals it, hashes the sealed segments and writes them with one ``writev`` per
piece (no joined copy, not one system call per 64 KiB segment). Hashing the plaintext in
a second thread was tried and left out: on two cores it cost more CPU (GIL hand-overs)
than it saved in wall time, and the periodic fsyncs, not the hashing, were what
stalled the worker.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

from relay.core.blobs import UploadDamaged, release_cached, write_all
from relay.durable import write_durably
from signing.errors import DecryptionFailed, MalformedInput
from signing.segments import (
    SegmentCipher,
    SegmentSealer,
    ciphertext_offset,
    open_sealed_prefix,
    open_tail,
    seal_tail,
    segment_boundary,
)
from signing.stream import HEADER_SIZE

__all__ = ["SealingSink", "TailLost", "drop_sidecars", "read_key_file", "write_key_file"]


class TailLost(Exception):
    """The plaintext after the last sealed segment cannot be read back: the upload
    continues at the segment boundary ``boundary``."""

    def __init__(self, boundary: int) -> None:
        super().__init__(f"continue at {boundary}")
        self.boundary = boundary


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(f"{path.name}.{suffix}")


def _write_durably(path: Path, data: bytes) -> None:
    write_durably(path, data, tmp=_sidecar(path, "new"))  # P.new: dropped with the upload


def write_key_file(path: Path, kid: str, wrapped: bytes) -> None:
    """Keep the wrapped stream key of the upload at partial path ``path``."""
    text = json.dumps({"kid": kid, "wrapped": base64.urlsafe_b64encode(wrapped).decode()})
    _write_durably(_sidecar(path, "key"), text.encode())


def read_key_file(path: Path) -> tuple[str, bytes] | None:
    """(kid, wrapped key) of the upload at partial path ``path``; None when absent."""
    try:
        value = json.loads(_sidecar(path, "key").read_bytes())
        return str(value["kid"]), base64.urlsafe_b64decode(value["wrapped"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise UploadDamaged("the upload's key file is damaged") from None


def drop_sidecars(path: Path) -> None:
    for suffix in ("key", "tail", "new"):
        _sidecar(path, suffix).unlink(missing_ok=True)


class SealingSink:
    """The :class:`relay.core.blobs.Sink` of a staff upload: plaintext in, sealed blob
    out (hashed both ways on the way through). ``offset`` is where this call continues
    (0: a new stream under ``key``); ``cipher`` is the stream's segment cipher."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        aad: bytes,
        size: int,
        offset: int,
        cipher: SegmentCipher = SegmentCipher.AES256GCM,
    ) -> None:
        self._path = path
        self._key = key
        self._cipher = cipher
        self._aad = aad
        self._size = size
        self._offset = offset
        self.plain_sha = hashlib.sha256()
        self.blob_sha = hashlib.sha256()
        self.blob_size = 0
        self._f: BinaryIO  # unbuffered: _emit writes the sealed pieces with os.writev
        self._sealer: SegmentSealer

    def open(self) -> None:
        f = open(self._path, "r+b", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            if self._offset == 0:
                self._sealer = SegmentSealer.start(
                    self._key, aad=self._aad, size=self._size, cipher=self._cipher
                )
                f.truncate(0)
                self._emit(f, [self._sealer.header])
                self._emit(f, self._sealer.feed(b""))  # an empty file: its one segment
            else:
                self._resume(f)
        except BaseException:
            f.close()
            raise
        self._f = f

    def _resume(self, f: BinaryIO) -> None:
        segments, boundary = segment_boundary(self._offset)
        kept = ciphertext_offset(segments)
        header = f.read(HEADER_SIZE)
        f.seek(0)
        reader = _HashingReader(f)
        try:
            kept_plain = open_sealed_prefix(
                reader, self._key, aad=self._aad, segments=segments, cipher=self._cipher
            )
            for plain in kept_plain:
                self.plain_sha.update(plain)
            self._sealer = SegmentSealer.resume(
                self._key, header, aad=self._aad, size=self._size, offset=boundary,
                cipher=self._cipher,
            )  # fmt: skip
        except (DecryptionFailed, MalformedInput):
            raise UploadDamaged("the held upload does not open") from None
        self.blob_sha = reader.sha  # header and kept segments, read once
        self.blob_size = kept
        f.truncate(kept)  # anything after the kept segments was never recorded
        f.seek(kept)
        if self._offset > boundary:
            try:
                held = self._tail_path().read_bytes()
                tail = open_tail(self._key, header, boundary, held, cipher=self._cipher)
            except (OSError, DecryptionFailed):
                raise TailLost(boundary) from None
            if len(tail) < self._offset - boundary:
                raise TailLost(boundary)
            tail = tail[: self._offset - boundary]
            self.plain_sha.update(tail)
            self._emit(f, self._sealer.feed(tail))

    def _tail_path(self) -> Path:
        return _sidecar(self._path, "tail")

    def _emit(self, f: BinaryIO, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.blob_sha.update(piece)
            self.blob_size += len(piece)
        write_all(f.fileno(), pieces)

    def write(self, data: bytes) -> None:
        self.plain_sha.update(data)
        self._emit(self._f, self._sealer.feed(data))

    def mark(self) -> int:
        return max(self._sealer.sealed, self._offset)  # as sync(False) records

    def fsync(self) -> None:
        os.fsync(self._f.fileno())
        release_cached(self._f.fileno())

    def sync(self, final: bool) -> int:
        self.fsync()
        if not final:  # the tail this call resumed from (if any) is still in P.tail
            return max(self._sealer.sealed, self._offset)
        if self._sealer.sealed == self._sealer.fed:
            return self._sealer.sealed
        start = self._sealer.sealed
        _write_durably(
            self._tail_path(),
            seal_tail(
                self._key, self._sealer.header, start, self._sealer.pending, cipher=self._cipher
            ),
        )
        return self._sealer.fed

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self._f.close()


class _HashingReader:
    """Reads from ``f`` and hashes what it reads (the kept part of a resumed blob)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha.update(data)
        return data
