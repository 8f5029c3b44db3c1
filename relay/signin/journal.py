"""The staff journal's two readers and writers on the staff listener: the middleware
that records every acting staff request, and the alert source for locked accounts.

The journal itself (``journal`` table of the staff directory, :mod:`relay.signin.store`)
holds one line per sign-in event and per unsafe staff request: when, who (the account
name, or a token's subject), from which address, what (method, path, status, and
whether a session or a bearer token was used). ``tongban staff journal`` prints it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.alerts import Severity, StaffAlert
from relay.config import StaffSettings
from relay.problem import Problem
from relay.signin.store import StaffStore
from relay.staff_auth import STAFF_KEY

__all__ = ["journal_middleware", "locked_account_alerts"]

_log = logging.getLogger("tongban.relay.signin")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_JOURNALED = frozenset({"/console/v1/session"})  # sign-in and sign-out log themselves


def journal_middleware(store: StaffStore, clock: Callable[[], datetime]) -> Middleware:
    """Record every unsafe staff request: who, method, path, status. When the journal
    cannot be written (a full disk), the line is logged at ERROR and the answer stays
    what the handler said: what was done stays done, and a refusal would make the
    caller retry something already accepted."""

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
            try:
                store.journal(clock(), claims.subject, "request", request.remote or "-", detail)
            except (sqlite3.Error, OSError) as exc:
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
