"""Group commit of new outgoing packets: one transaction per event-loop turn.

Each created packet used to be its own ``BEGIN IMMEDIATE … COMMIT`` with an fsync,
on the event loop: sixteen staff clients waited on sixteen fsyncs in a row. Here
:meth:`GroupCommit.enqueue` only queues the request; the first request of a loop turn
schedules one flush (``loop.call_soon``), which runs after every request that arrived
in that turn was queued, allocates their sequence numbers and queues them all in one
store transaction (:meth:`RelayStore.enqueue_many`, one savepoint per packet), and
only then answers each caller: a packet's creation returns after the commit that holds
it, never before. A packet whose build fails (too large, malformed) fails alone; a
failing commit fails every packet of the group, and none of them is queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    """Batches :meth:`RelayStore.enqueue` calls made in the same loop turn."""

    def __init__(self, store: RelayStore, *, most: int = 256) -> None:
        """``most``: the largest group (more requests wait for the next flush)."""
        self._store = store
        self._most = most
        self._queue: list[_Request] = []
        self._scheduled = False
        self.commits = 0
        """Transactions committed so far (for benchmarks and tests)."""

    async def enqueue(self, peer: str, case_id: str, build: Build) -> NewOutgoing:
        """Queue ``build`` as the next packet of ``case_id`` towards ``peer``; returns
        once the transaction holding it committed (raises what the build or the
        commit raised)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[NewOutgoing] = loop.create_future()
        self._queue.append(_Request(peer, case_id, build, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        group, self._queue = self._queue[: self._most], self._queue[self._most :]
        self._scheduled = bool(self._queue)
        if self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        group = [r for r in group if not r.answer.cancelled()]
        if not group:
            return
        try:
            results = self._store.enqueue_many([(r.peer, r.case_id, r.build) for r in group])
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
