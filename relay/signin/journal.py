"""The staff journal's two readers and writers on the staff listener: the middleware
that records every acting staff request, and the alert source for locked accounts.

The journal itself (``journal`` table of the staff directory, :mod:`relay.signin.store`)
holds one line per sign-in event and per unsafe staff request: when, who (the account
name, or a token's subject), from which address, what (method, path, status, and
whether a session or a bearer token was used). ``tongban staff journal`` prints it.

Request lines are group-committed (:class:`JournalWriter`): a request's answer still
waits until its line is committed, but the lines of all requests that finish while a
commit is running share the next commit, made in a worker thread on the journal's own
connection. Sixteen busy staff clients used to cost sixteen fsyncs in a row on the
event loop (issue 12: over half the wall time of packet creation).
"""

from __future__ import annotations

import asyncio
import logging
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


class JournalWriter:
    """Group commit of journal lines: one transaction for every line queued while the
    previous transaction ran, committed in a worker thread (a single writer)."""

    def __init__(self, store: StaffStore) -> None:
        self._store = store
        self._queue: list[_Line] = []
        self._drain: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions committed so far (for tests)."""

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
                await asyncio.to_thread(self._store.journal_many, [line.row for line in group])
            except Exception as exc:  # nothing of the group is written; each caller hears
                for line in group:
                    line.written.set_exception(exc)
                    line.written.exception()  # retrieved: a caller that went away is no error
                continue
            self.commits += 1
            for line in group:
                line.written.set_result(None)


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
