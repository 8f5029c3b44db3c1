"""SHA-256 taken beside other work: an upload's worker thread hands each piece to a
helper thread that hashes it while the worker seals and writes the same piece.

hashlib releases the GIL while it hashes a buffer larger than 2 KiB, so the two
threads run on two cores: the plaintext hash of a staff upload no longer adds its time
to sealing, hashing the sealed bytes and writing them, and a peer's blob is hashed while
it is written. At most one piece is in the helper at a time (:meth:`ThreadedSha256.update`
first waits for the piece before it): the caller holds that piece anyway, so memory stays
what it was, and the digest covers the pieces in the order they were given.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["ThreadedSha256"]


class ThreadedSha256:
    """A SHA-256 whose :meth:`update` returns at once and hashes in a helper thread.

    The bytes handed to :meth:`update` must not change until the next call (``bytes``
    never do). :meth:`close` stops the helper; the digest stays readable.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._wait()
        if len(data) < 1 << 16:  # a small piece costs less than the hand-over
            self._sha.update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tongban-sha256")
        self._pending = self._pool.submit(self._sha.update, data)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def hexdigest(self) -> str:
        self._wait()
        return self._sha.hexdigest()

    def close(self) -> None:
        self._wait()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
