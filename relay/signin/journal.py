"""The staff journal's two readers and writers on the staff listener: the middleware
that records every acting staff request, and the alert source for locked accounts.

The journal itself (``journal`` table of the staff directory, :mod:`relay.signin.store`)
holds one line per sign-in event and per unsafe staff request: when, who (the account
name, or a token's subject), from which address, what (method, path, status, and
whether a session or a bearer token was used). ``tongban staff journal`` prints it.

Request lines are group-committed (:class:`JournalWriter`): a request's answer still
waits until its line is committed, but the lines of all requests that finish in the
same turn of the event loop share one commit, on the journal's own connection. Sixteen
busy staff clients used to cost sixteen fsyncs in a row on the event loop (issue 12:
over half the wall time of packet creation).

The commit runs on the event loop while the disk is quick, and in a worker thread while
it is slow (see :class:`JournalWriter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.alerts import Severity, StaffAlert
from relay.config import StaffSettings
from relay.db.open import storage_errors
from relay.problem import Problem
from relay.signin.store import JournalRow, StaffStore, journal_row
from relay.staff_auth import STAFF_KEY

__all__ = ["JournalWriter", "journal_middleware", "locked_account_alerts"]

_log = logging.getLogger("tongban.relay.signin")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_JOURNALED = frozenset({"/console/v1/session"})  # sign-in and sign-out log themselves


@dataclass
class _Line:
    row: JournalRow
    written: asyncio.Future[None]


SLOW_COMMIT = 0.005
"""A journal commit on the event loop that takes longer than this (seconds) shows a
slow disk: the next ones go to a worker thread for :data:`OFF_LOOP_FOR` seconds."""

OFF_LOOP_FOR = 60.0
"""Seconds the journal commits in a worker thread after a slow commit on the loop; the
loop is tried again after that (the disk may have been busy for a while only)."""


class JournalWriter:
    """Group commit of journal lines: one transaction for every line queued in the same
    turn of the event loop (or while the previous transaction ran), by a single writer.

    The transaction is small (a line or a few, one fsync): on the event loop it takes
    about 0.3 ms here. It used to run in a worker thread, where it waited about 2 ms
    for the interpreter lock while the loop was busy with other requests, and every
    staff request's answer waited with it: with 16 clients creating packets, moving it
    to the loop raised the rate by 11-25% (``bench relay_http``, issue 12). A disk
    whose flush is slow would hold the loop instead, so a commit that takes longer than
    :data:`SLOW_COMMIT` on the loop sends the next ones to a worker thread for
    :data:`OFF_LOOP_FOR` seconds (``clock``: a monotonic clock, for tests)."""

    def __init__(self, store: StaffStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._queue: list[_Line] = []
        self._drain: asyncio.Task[None] | None = None
        self._off_loop_until: float | None = None  # while the disk is slow
        self.commits = 0
        """Transactions committed so far (for tests)."""

    @property
    def off_loop(self) -> bool:
        """Whether commits run in a worker thread now (after a slow one on the loop)."""
        return self._off_loop_until is not None and self._clock() < self._off_loop_until

    async def write(self, row: JournalRow) -> None:
        """Returns once ``row`` is committed; raises what the commit raised. A caller
        that goes away does not take its line with it: the line is written anyway."""
        line = _Line(row, asyncio.get_running_loop().create_future())
        self._queue.append(line)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run())
        await asyncio.shield(line.written)

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self._commit([line.row for line in group])
            except Exception as exc:  # nothing of the group is written; each caller hears
                for line in group:
                    line.written.set_exception(exc)
                    line.written.exception()  # retrieved: a caller that went away is no error
                continue
            self.commits += 1
            for line in group:
                line.written.set_result(None)

    async def _commit(self, rows: list[JournalRow]) -> None:
        if self.off_loop:
            await asyncio.to_thread(self._store.journal_many, rows)
            return
        started = self._clock()
        try:
            self._store.journal_many(rows)
        finally:
            took = self._clock() - started
            if took > SLOW_COMMIT:
                self._off_loop_until = self._clock() + OFF_LOOP_FOR
                _log.info(
                    "a staff journal commit took %.1f ms on the event loop (a slow disk, or"
                    " a lock held elsewhere); the journal commits in a worker thread for the"
                    " next %.0f s",
                    took * 1000,
                    OFF_LOOP_FOR,
                )


def journal_middleware(store: StaffStore, clock: Callable[[], datetime]) -> Middleware:
    """Record every unsafe staff request: who, method, path, status. When the journal
    cannot be written (a full disk), the line is logged at ERROR and the answer stays
    what the handler said: what was done stays done, and a refusal would make the
    caller retry something already accepted."""
    writer = JournalWriter(store)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        claims = request.get(STAFF_KEY)
        if claims is None or request.method in _SAFE or request.path in _NOT_JOURNALED:
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except Problem as problem:
            status = problem.status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            detail = {
                "method": request.method,
                "path": request.path,
                "status": status,
                "credential": claims.credential,
            }
            row = journal_row(clock(), claims.subject, "request", request.remote or "-", detail)
            try:
                await writer.write(row)
            except storage_errors() as exc:
                _log.error("staff journal unwritable (%s); %s %s", exc, claims.subject, detail)

    return middleware


def locked_account_alerts(
    store: StaffStore, settings: StaffSettings, now: datetime
) -> list[StaffAlert]:
    """An account locked after repeated failed sign-ins: someone may be guessing its
    password, or its owner needs help (``tongban staff user reset`` unlocks it)."""
    stamp = now.timestamp()
    found: list[StaffAlert] = []
    for account in store.accounts():
        if account.locked_until is None or account.locked_until <= stamp:
            continue
        until = datetime.fromtimestamp(account.locked_until, UTC)
        found.append(
            StaffAlert(
                id=f"signin:locked:{account.name}",
                source="signin",
                code="account-locked",
                severity=Severity.WARNING,
                at=until - timedelta(seconds=settings.lockout_duration),
                title_zh="有工作人员账户因多次登录失败被暂时锁定",
                title_en="A staff account is locked after repeated failed sign-ins",
                detail=f"Account {account.name} is locked until "
                f"{until.isoformat(timespec='seconds')}. If its owner did not mistype, "
                "someone may be guessing the password: see tongban staff journal; "
                "tongban staff user reset unlocks it with a new password",
                subject=account.name,
                extra={"locked_until": until.isoformat(timespec="seconds")},
            )
        )
    return found
