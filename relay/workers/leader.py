"""Once per node, not once per worker: the leader, chosen by a PostgreSQL advisory lock.

Design note. Every worker runs a campaign (:meth:`AdvisoryLeadership.run`) on a
connection of its own: every ``poll`` seconds it asks ``pg_try_advisory_lock(KEY)``;
the worker whose session holds the lock is the leader. A session-level advisory lock
lives exactly as long as the session that took it, so when the leader dies (kill -9, a
crash, its host lost) PostgreSQL ends the session, the lock is free, and the next
worker to ask takes it over within one ``poll``. While it leads, a worker checks its
session each ``poll`` (``SELECT 1`` within ``check_timeout``); a session it cannot
reach is given up at once — the server may have ended it and handed the lock to
another — and the worker campaigns again on a new connection.

Work that must happen once per node is run through :func:`while_leading`, which starts
it when the worker becomes the leader and stops it (its stop event set, then awaited)
when the worker stops leading or the node stops. The node hands its
:class:`Leadership` to the listeners' extensions as ``app[LEADERSHIP]``.

An overlap is possible but short: a leader whose session the server already ended (a
network cut) leads on until its next check fails, at most ``poll + check_timeout``.
The work under leadership is therefore written so that an overlap is harmless: a
checkpoint of a given size is stored once (first wins) and every worker hands out the
stored one; webhook deliveries and purges are rows in the database.

On SQLite a node has one worker (several are refused), which always leads:
:class:`SoleWorker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from relay.config import NodeConfig
from relay.db.open import database_errors

if TYPE_CHECKING:  # loaded by the first campaign: a SoleWorker node never needs it
    import psycopg

__all__ = [
    "LEADERSHIP",
    "LEADER_KEY",
    "AdvisoryLeadership",
    "Leadership",
    "SoleWorker",
    "leader_gauges",
    "leadership_for",
    "while_leading",
]

_log = logging.getLogger("tongban.relay.workers")

LEADER_KEY = 0x7468_6C64  # pg advisory lock key of "tongban leader" (one node per database)


class Leadership(Protocol):
    """Whether this worker is the node's leader, and waits for it to change."""

    @property
    def leading(self) -> bool: ...

    async def wait_leading(self) -> None: ...

    async def wait_following(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


LEADERSHIP = web.AppKey("leadership", Leadership)


class SoleWorker:
    """The only worker of a node (SQLite): always the leader."""

    leading = True

    async def wait_leading(self) -> None:
        return

    async def wait_following(self) -> None:
        await asyncio.Event().wait()  # never

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


class AdvisoryLeadership:
    """A worker's campaign for the advisory lock ``key`` of the database at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        key: int = LEADER_KEY,
        poll: float = 2.0,
        check_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        self._url = url
        self._key = key
        self._poll = poll
        self._check_timeout = check_timeout
        self.name = name or f"worker {os.getpid()}"
        self._conn: psycopg.Connection[Any] | None = None
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self._stepping = asyncio.Lock()  # one step at a time on the session
        self.terms = 0  # how many times this worker became the leader

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the campaign's session (None without a session)."""
        return None if self._conn is None else self._conn.info.backend_pid

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign (and, once leading, check the session) every ``poll`` seconds until
        ``stop`` is set; then end the session, which frees the lock for another."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll)
        finally:
            self._become(False)
            self._abandon()

    async def step(self) -> bool:
        """One campaign step: take the lock, or check we still hold it; whether we lead."""
        async with self._stepping:
            return await self._step()

    async def _step(self) -> bool:
        try:
            async with asyncio.timeout(self._check_timeout):
                if self._conn is None:
                    self._conn = await asyncio.to_thread(self._connect)
                held = await asyncio.to_thread(self._ask, self._conn, self.leading)
        except database_errors(TimeoutError) as exc:
            if self.leading:
                _log.warning("%s: leader session lost, stepping down: %s", self.name, exc)
            else:
                _log.debug("%s: cannot campaign now: %s", self.name, exc)
            self._abandon()
            held = False
        self._become(held)
        return held

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(
            self._url,
            autocommit=True,
            application_name="tongban leader",
            connect_timeout=max(int(self._check_timeout), 2),
            # a dead peer is noticed by the kernel too, not only by our next check
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    def _ask(self, conn: psycopg.Connection[Any], holding: bool) -> bool:
        if holding:  # the lock lives as long as the session: is the session alive?
            conn.execute("SELECT 1").fetchone()
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        return bool(row and row[0])

    def _become(self, leading: bool) -> None:
        if leading == self.leading:
            return
        if leading:
            self.terms += 1
            self._following.clear()
            self._leading.set()
            _log.info("%s: became the node's leader", self.name)
        else:
            self._leading.clear()
            self._following.set()
            _log.info("%s: no longer the node's leader", self.name)

    def _abandon(self) -> None:
        """Drop the session (closed in a thread: it may be stuck on a dead network)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: close here
                asyncio.get_running_loop().run_in_executor(None, _close_quietly, conn)
                return
            _close_quietly(conn)


def _close_quietly(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def leader_gauges(leadership: Leadership) -> Callable[[object], list[Metric]]:
    """``tongban_worker_leader``: 1 while this worker leads, else 0 (for /metrics)."""

    def source(now: object) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "tongban_worker_leader",
                "1 while this worker is its node's leader (runs the once-per-node work)",
                value=1.0 if leadership.leading else 0.0,
            )
        ]

    return source


def leadership_for(config: NodeConfig, *, poll: float = 2.0) -> Leadership:
    """The campaign of a worker of ``config``'s node: on PostgreSQL the advisory lock,
    on SQLite the sole worker."""
    if config.database.url is None:
        return SoleWorker()
    return AdvisoryLeadership(config.database.url, poll=poll, name=f"node {config.node_id} "
                              f"worker {os.getpid()}")  # fmt: skip


async def while_leading(
    leadership: Leadership,
    work: Callable[[asyncio.Event], Awaitable[object]],
    stop: asyncio.Event,
    *,
    name: str = "work",
) -> None:
    """Run ``work(its_stop)`` whenever this worker leads, until ``stop`` is set: it is
    started on becoming the leader and, on stepping down or ``stop``, its stop event is
    set and it is awaited (it ends its current step, then returns)."""
    stopping = asyncio.ensure_future(stop.wait())
    task: asyncio.Future[object] | None = None
    inner = asyncio.Event()
    try:
        while not stop.is_set():
            leading = asyncio.ensure_future(leadership.wait_leading())
            await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            leading.cancel()
            if stop.is_set():
                return
            inner = asyncio.Event()
            task = asyncio.ensure_future(work(inner))
            following = asyncio.ensure_future(leadership.wait_following())
            await asyncio.wait({following, stopping, task}, return_when=asyncio.FIRST_COMPLETED)
            following.cancel()
            inner.set()
            try:
                await task
            except Exception:  # the work's own loop logs its steps; this ends a term
                _log.exception("%s under leadership ended with an error", name)
            if not stop.is_set() and leadership.leading:
                return  # the work ended by itself while leading: do not restart it
    finally:
        stopping.cancel()
        if task is not None and not task.done():  # cancelled ourselves: end the work too
            inner.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
