"""Group commit of new outgoing packets: one transaction per group of requests.

Each created packet used to be its own ``BEGIN IMMEDIATE … COMMIT`` with an fsync,
on the event loop: sixteen staff clients waited on sixteen fsyncs in a row. Here
:meth:`GroupCommit.enqueue` only queues the request; the first request finding no
flush running starts one (a task, so it runs after every request that arrived in the
same loop turn was queued), which allocates their sequence numbers and queues them all
in one store transaction (:meth:`RelayStore.enqueue_many`), and only then answers each
caller: a packet's creation returns after the commit that holds it, never before. A
packet whose build fails (too large, malformed) fails alone; a failing commit fails
every packet of the group, and none of them is queued.

With ``off_loop`` (the SQLite store: its new packets go through a connection of their
own) the transaction, fsync included, runs in a worker thread: the event loop keeps
reading and checking requests meanwhile, and those that arrive while a group commits
form the next group, committed as soon as the first is done. One group commits at a
time, so sequence numbers are still allocated by one writer in request order.

A commit has a fixed cost whatever its size (on SQLite about 0.5 ms of CPU and an fsync:
a group of one took 2.5 ms, a group of twelve 5.6 ms, in ``bench relay_http``). Creators
that are sealing their content say so (:meth:`GroupCommit.coming`): they enqueue within
a seal's time. Before committing, a group waits for them, at most ``linger`` seconds and
never longer than until the last of them has enqueued or given up. A creator alone never
waits. (PostgreSQL's ``commit_delay`` waits blindly once ``commit_siblings``
transactions are open; here the group waits only for requests known to be on their way.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from relay.core.store import NewOutgoing, RelayStore

__all__ = ["GroupCommit"]

Build = Callable[[int, str | None], NewOutgoing]


@dataclass
class _Request:
    peer: str
    case_id: str
    build: Build
    answer: asyncio.Future[NewOutgoing]


class GroupCommit:
    """Batches :meth:`RelayStore.enqueue` calls made in the same loop turn, and those
    announced by :meth:`coming` for a group that can wait (``linger``)."""

    def __init__(
        self,
        store: RelayStore,
        *,
        most: int = 256,
        off_loop: bool = False,
        linger: float = 0.0,
    ) -> None:
        """``most``: the largest group (more requests wait for the next flush).
        ``off_loop``: run each group's transaction in a worker thread (for a store whose
        ``enqueue_many`` writes through a connection of its own, as
        :class:`~relay.core.sqlite_store.SqliteStore` does); the event loop meanwhile
        takes the next requests, which form the next group. ``linger``: the longest a
        group waits for the requests :meth:`coming` announces (0: it never waits)."""
        self._store = store
        self._most = most
        self._off_loop = off_loop
        self._linger = linger
        self._queue: list[_Request] = []
        self._flushing: asyncio.Task[None] | None = None
        self._coming = 0
        self._waiter: asyncio.Future[None] | None = None  # of a group that waits
        self.commits = 0
        """Transactions committed so far (for benchmarks and tests)."""

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a request on its way: one :meth:`enqueue` is expected by the end of
        the block (a group being formed waits for it, see ``linger``). A block that
        ends without enqueueing (its creation failed) only ends the wait sooner."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1
            self._poke()

    def _poke(self) -> None:
        """Wake the group waiting (a request queued, or one on its way gave up)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """Requests queued for the next group (for tests)."""
        return len(self._queue)

    async def enqueue(self, peer: str, case_id: str, build: Build) -> NewOutgoing:
        """Queue ``build`` as the next packet of ``case_id`` towards ``peer``; returns
        once the transaction holding it committed (raises what the build or the
        commit raised)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[NewOutgoing] = loop.create_future()
        self._queue.append(_Request(peer, case_id, build, answer))
        self._poke()
        if self._flushing is None or self._flushing.done():
            # starts after every request of this loop turn was queued
            self._flushing = loop.create_task(self._flush())
        return await answer

    async def _flush(self) -> None:
        while self._queue:
            await self._gather()
            group, self._queue = self._queue[: self._most], self._queue[self._most :]
            group = [r for r in group if not r.answer.cancelled()]
            if group:
                await self._commit(group)

    async def _gather(self) -> None:
        """Wait, at most ``linger`` seconds, while requests are on their way (and the
        group is not full)."""
        if self._linger <= 0 or len(self._queue) >= self._most or self._coming <= 0:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._linger):  # one timer for the whole wait
                while len(self._queue) < self._most and self._coming > 0:
                    self._waiter = loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None

    async def _commit(self, group: list[_Request]) -> None:
        items = [(r.peer, r.case_id, r.build) for r in group]
        try:
            if self._off_loop:
                results = await asyncio.to_thread(self._store.enqueue_many, items)
            else:
                results = self._store.enqueue_many(items)
        except Exception as exc:  # the commit failed: nothing of the group is queued
            for r in group:
                if not r.answer.done():
                    r.answer.set_exception(exc)
            return
        self.commits += 1
        for r, result in zip(group, results, strict=True):
            if r.answer.done():  # the caller went away; its packet is queued all the same
                continue
            if isinstance(result, Exception):
                r.answer.set_exception(result)
            else:
                r.answer.set_result(result)
