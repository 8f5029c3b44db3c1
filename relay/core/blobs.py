"""File helpers for attachments: streaming hashes, sealing at rest, resumable appends,
and decryption streamed to an async consumer — all in constant memory."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from relay.core import streams
from relay.core.errors import AttachmentError
from signing.stream import encrypt_stream

__all__ = [
    "CHUNK",
    "append_stream",
    "attachment_aad",
    "decrypt_to_async",
    "read_from",
    "seal_file",
    "sha256_file",
]

CHUNK = 1 << 20
_SYNC_EVERY = 16 * CHUNK


def attachment_aad(plain_digest: str) -> bytes:
    """Associated data of a sealed attachment blob: binds it to its plaintext digest."""
    return b"tongban/v1 attachment " + plain_digest.encode("ascii")


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class _HashingWriter:
    """A binary sink that writes to ``out`` and hashes what it writes."""

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


def seal_file(src: Path, dst: Path, key: bytes, *, aad: bytes) -> tuple[str, int]:
    """Encrypt ``src`` into ``dst`` with ``signing.stream`` and fsync ``dst``; returns
    the SHA-256 (hex) and size of what it wrote (hashed on the way: no read-back)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        sink = _HashingWriter(fout)
        encrypt_stream(fin, sink, key, aad=aad)  # type: ignore[arg-type]
        fout.flush()
        os.fsync(fout.fileno())
    return sink.sha.hexdigest(), sink.size


async def append_stream(
    path: Path,
    start: int,
    size: int,
    chunks: AsyncIterable[bytes],
    record: Callable[[int], None],
    sha: Any = None,
) -> int:
    """Write ``chunks`` to ``path`` from ``start`` (truncating anything after it);
    ``sha`` (a ``hashlib`` object), when given, is updated with every byte written.

    Progress is fsync'd and ``record``-ed every 16 MiB and when the stream ends —
    also when it ends with an error, so an interrupted upload resumes where the
    durable bytes stop. Raises :class:`AttachmentError` (``too-large``).
    """
    pos = start
    synced = start
    with open(path, "r+b") as f:
        f.truncate(start)
        f.seek(start)
        try:
            async for chunk in chunks:
                if pos + len(chunk) > size:
                    raise AttachmentError("too-large", "more bytes than the announced size")
                f.write(chunk)
                if sha is not None:
                    sha.update(chunk)
                pos += len(chunk)
                if pos - synced >= _SYNC_EVERY:
                    f.flush()
                    os.fsync(f.fileno())
                    record(pos)
                    synced = pos
        finally:
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
            if pos != synced:
                record(pos)
    return pos


async def read_from(path: Path, offset: int) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK):
            yield chunk


class _Abandoned(Exception):
    """The consumer stopped reading; the worker thread stops decrypting."""


class _QueueWriter:
    """A binary sink for a worker thread that hands each write to the event loop,
    waiting for room (bounded queue: constant memory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]):
        self._loop, self._queue = loop, queue
        self.abandoned = False

    def write(self, data: bytes) -> int:
        if self.abandoned:
            raise _Abandoned
        asyncio.run_coroutine_threadsafe(self._queue.put(bytes(data)), self._loop).result()
        return len(data)

    def flush(self) -> None:
        pass


async def decrypt_to_async(
    path: Path,
    key: bytes,
    *,
    aad: bytes,
    plain_digest: str,
    kind: streams.Stream = streams.Stream.TINK_AES256GCM,
) -> AsyncIterator[bytes]:
    """Decrypt the sealed blob at ``path`` (stream ``kind``, :mod:`relay.core.streams`)
    and yield plaintext as segments authenticate.

    At the end the plaintext SHA-256 is compared with ``plain_digest``; a mismatch
    raises :class:`AttachmentError` (``digest-mismatch``); a decryption failure
    raises ``signing.errors.DecryptionFailed``. Consumers must treat the stream as
    untrusted until it ends without an error.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
    writer = _QueueWriter(loop, queue)

    def work() -> None:
        try:
            with open(path, "rb") as src:
                streams.decrypt(kind, src, writer, key, aad)  # type: ignore[arg-type]
        except _Abandoned:
            pass
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    task = loop.run_in_executor(None, work)
    h = hashlib.sha256()
    try:
        while (chunk := await queue.get()) is not None:
            h.update(chunk)
            yield chunk
    finally:
        if not task.done():
            writer.abandoned = True  # early exit: let the worker stop at its next write
            while not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=0.1)
    await task
    if h.hexdigest() != plain_digest:
        raise AttachmentError("digest-mismatch", "decrypted attachment has another digest")
