"""File helpers for attachments: streaming hashes, resumable writes through a worker
thread, and decryption streamed to an async consumer — all in constant memory.

:func:`write_through` is how an upload body reaches the disk: the event loop keeps
reading the request (TLS, HTTP) while one worker thread writes, hashes — and, for a
staff upload, seals (:mod:`relay.core.staging`) — what it is handed, at most
:data:`_IN_FLIGHT` bytes behind. Each byte is written once; progress is fsync'd and
recorded every :data:`SYNC_BYTES` or :data:`_SYNC_SECONDS`, and when the body ends
(also when it ends with an error), so a broken upload resumes where the durable bytes
stop.

A periodic sync runs behind the writing: the worker takes the sink's :meth:`Sink.mark`
(the offset everything written so far reaches) between two writes and hands
:meth:`Sink.fsync` to a helper thread, then goes on writing; the mark is recorded once
that fsync has returned (it covers at least the bytes written before it began). One
periodic sync is in flight at most. The disk thus writes back while the upload streams
in, the worker never waits for it, and the final sync finds little left to write.

What a sync made durable also leaves the page cache (:func:`release_cached`), and so
does what :func:`read_from` and :func:`decrypt_to_async` have read: an attachment is
written once and sent or read once, so its gigabyte would only push the node's
database pages out of the cache. On this project's 2-core virtual machine growing the
cache cost more CPU than the bytes themselves (writing 1 GiB while it grew: 2.1-3.4 s
of kernel time; releasing behind every 64 MiB: 0.4-0.5 s; reading 1 GiB into the cache
2.3 s, releasing behind 0.12 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import queue
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

from relay.core import streams
from relay.core.errors import AttachmentError

__all__ = [
    "CHUNK",
    "SYNC_BYTES",
    "BlobSink",
    "ReadOnce",
    "Sink",
    "UploadDamaged",
    "attachment_aad",
    "decrypt_to_async",
    "read_from",
    "release_cached",
    "sha256_file",
    "write_all",
    "write_through",
]

CHUNK = 1 << 20
_IN_FLIGHT = 4 * CHUNK
"""Bytes handed to the worker thread and not yet written (one chunk more at most)."""
SYNC_BYTES = 64 * CHUNK
"""Bytes an upload writes between two periodic syncs (or :data:`_SYNC_SECONDS`), and a
:class:`ReadOnce` reads between two releases of the page cache."""
_SYNC_SECONDS = 2.0
_IOV_MAX = 1024  # iovecs per writev (Linux UIO_MAXIOV)
_FADVISE = getattr(os, "posix_fadvise", None)  # not on macOS


def release_cached(fd: int) -> None:
    """Let the kernel drop the clean cached pages of ``fd``'s file (after an fsync, what
    it made durable; after reading, what was read). ``POSIX_FADV_DONTNEED`` never drops
    a page not yet written back, so nothing can be lost; a later read of the file comes
    from the disk. Advice only: a file system that refuses it changes nothing else."""
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def attachment_aad(plain_digest: str) -> bytes:
    """Associated data of a sealed attachment blob: binds it to its plaintext digest."""
    return b"tongban/v1 attachment " + plain_digest.encode("ascii")


def sha256_file(path: Path, limit: int | None = None) -> tuple[str, int]:
    """(SHA-256 hex, size) of the file, or of its first ``limit`` bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK if limit is None else min(CHUNK, limit - size)):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def write_all(fd: int, pieces: list[bytes]) -> None:
    """Write ``pieces`` at the position of ``fd``, in order, in as few calls as the
    kernel allows (a regular file takes them all at once unless the disk fills)."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        done = os.writev(fd, views[:_IOV_MAX])
        if not done:
            raise OSError(errno.EIO, "writev wrote nothing")
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]


class UploadDamaged(Exception):
    """What an upload holds on disk cannot be continued (shorter than recorded, does
    not open): the caller drops it and the client starts again from 0."""


class Sink(Protocol):
    """Where :func:`write_through` puts an upload; every method runs in the worker."""

    def open(self) -> None:
        """Prepare to continue at the start offset (read back what earlier calls wrote
        when it must be hashed again)."""

    def write(self, data: bytes) -> None: ...

    def mark(self) -> int:
        """The offset to record once what was written so far is durable (between two
        writes, not at the end: the bytes kept only by :meth:`sync` do not count)."""
        ...

    def fsync(self) -> None:
        """Make what was written so far durable (and release it from the page cache,
        :func:`release_cached`). Runs in a helper thread while the worker may go on
        writing."""

    def sync(self, final: bool) -> int:
        """Make what was written durable (and release it from the page cache); the
        offset to record (``final``: the body ended, keep everything taken)."""
        ...

    def close(self) -> None: ...


class BlobSink:
    """A peer's upload of a sealed blob: appended as it comes, hashed on the way in.
    Resumed at ``start`` > 0, the bytes before it are hashed again from the file."""

    def __init__(self, path: Path, start: int) -> None:
        self._path = path
        self.pos = start
        self.sha = hashlib.sha256()
        self._f: BinaryIO  # opened in the worker thread, unbuffered (pieces are large)

    def open(self) -> None:
        if self.pos:
            h = hashlib.sha256()
            with open(self._path, "rb") as f:
                left = self.pos
                while left and (chunk := f.read(min(CHUNK, left))):
                    h.update(chunk)
                    left -= len(chunk)
            if left:
                raise UploadDamaged("the held upload is shorter than its recorded offset")
            self.sha = h
        out = open(self._path, "r+b", buffering=0)  # noqa: SIM115 - closed by close()
        out.truncate(self.pos)  # bytes after the recorded offset were never acknowledged
        out.seek(self.pos)
        self._f = out

    def write(self, data: bytes) -> None:
        write_all(self._f.fileno(), [data])
        self.sha.update(data)
        self.pos += len(data)

    def mark(self) -> int:
        return self.pos

    def fsync(self) -> None:
        os.fsync(self._f.fileno())
        release_cached(self._f.fileno())

    def sync(self, final: bool) -> int:
        self.fsync()
        return self.pos

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self._f.close()


class _Budget:
    """Bytes in flight from the event loop to the worker thread. :meth:`take` (loop)
    waits while more than ``limit`` would be (one chunk always passes) until the
    worker :meth:`give`-s bytes back or :meth:`close`-s; the loop is woken only when it
    waits (a wake-up per chunk costs the loop more than the chunk's bookkeeping)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        self._used = 0
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    async def take(self, n: int) -> None:
        while True:
            with self._lock:
                if self._closed or not self._used or self._used + n <= self._limit:
                    self._used += n
                    return
                self._waiter = waiter = self._loop.create_future()
            await waiter

    def give(self, n: int) -> None:
        with self._lock:
            self._used -= n
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def write_through(
    chunks: AsyncIterable[bytes],
    sink: Sink,
    *,
    start: int,
    size: int,
    record: Callable[[int], None],
) -> int:
    """Hand ``chunks`` (the body of an upload continuing at ``start`` of ``size``
    bytes) to ``sink`` in a worker thread while this coroutine keeps reading them.

    ``record(offset)`` runs on the event loop after each durable sync (the thread never
    touches the store). Returns the offset of the final sync. Raises
    :class:`AttachmentError` (``too-large``) for more bytes than ``size``, and whatever
    the sink raised; what was synced before an error stays recorded.
    """
    loop = asyncio.get_running_loop()
    room = _Budget(loop, _IN_FLIGHT)
    handoff: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    failures: list[Exception] = []

    def recorded(offset: int) -> None:
        try:
            record(offset)
        except Exception as exc:  # raised to the caller once the worker is done
            failures.append(exc)

    def sync_behind(mark: int) -> None:
        sink.fsync()
        loop.call_soon_threadsafe(recorded, mark)  # before the future is done: in order

    def work() -> int:
        syncer = ThreadPoolExecutor(1, thread_name_prefix="tongban-fsync")
        syncing: Future[None] | None = None
        try:
            sink.open()
            unsynced, since = 0, time.monotonic()
            while (chunk := handoff.get()) is not None:
                sink.write(chunk)
                room.give(len(chunk))
                unsynced += len(chunk)
                due = unsynced >= SYNC_BYTES or time.monotonic() - since >= _SYNC_SECONDS
                if due and (syncing is None or syncing.done()):
                    if syncing is not None:
                        syncing.result()  # an fsync that failed fails the upload
                    syncing = syncer.submit(sync_behind, sink.mark())
                    unsynced, since = 0, time.monotonic()
            if syncing is not None:
                syncing.result()
            offset = sink.sync(True)
            loop.call_soon_threadsafe(recorded, offset)
            return offset
        finally:
            syncer.shutdown()  # waits: the sink is not closed under a running fsync
            with contextlib.suppress(Exception):
                sink.close()
            room.close()  # a reader waiting for room stops waiting

    worker = loop.run_in_executor(None, work)
    pos = start
    try:
        async for chunk in chunks:
            if pos + len(chunk) > size:
                raise AttachmentError("too-large", "more bytes than the announced size")
            await room.take(len(chunk))
            if room.closed:
                break  # the worker stopped (the sink failed): its error is raised below
            handoff.put(chunk)
            pos += len(chunk)
    finally:
        handoff.put(None)
        offset = await worker
    if failures:
        raise failures[0]
    return offset


class ReadOnce:
    """A file read once from start to end: what was read leaves the page cache
    (:func:`release_cached`) every :data:`SYNC_BYTES` and at the end; a reader that
    stops before the end (a send broken off, a download abandoned) calls
    :meth:`release`."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._release_at = f.tell() + SYNC_BYTES

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if not data or self._f.tell() >= self._release_at:
            release_cached(self._f.fileno())
            self._release_at = self._f.tell() + SYNC_BYTES
        return data

    def release(self) -> None:
        """Let what was read leave the page cache now, with what the kernel read ahead
        (read-ahead still in flight at that moment may stay)."""
        release_cached(self._f.fileno())


async def read_from(path: Path, offset: int) -> AsyncIterator[bytes]:
    """The file from ``offset`` in chunks; each read runs in a worker thread while the
    consumer sends the chunk before it (the event loop never waits for the disk). What
    was read leaves the page cache as it goes (:class:`ReadOnce`)."""
    loop = asyncio.get_running_loop()
    with open(path, "rb") as f:
        f.seek(offset)
        source = ReadOnce(f)
        pending = loop.run_in_executor(None, source.read, CHUNK)
        try:
            while chunk := await pending:
                pending = loop.run_in_executor(None, source.read, CHUNK)
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                await pending  # the file closes only after its last read
            source.release()  # also when the consumer stopped early


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
                source = ReadOnce(src)  # the streams read with read(n) alone
                try:
                    streams.decrypt(kind, source, writer, key, aad)  # type: ignore[arg-type]
                finally:
                    source.release()  # also when the consumer stopped early
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
