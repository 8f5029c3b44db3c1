"""Console sign-in on the staff listener: the page, the session routes, the session check.

Routes::

    GET    /login                   the sign-in page (zh, English switch; no session)
    GET    /login/login.js|.css     its script and style
    GET    /login/options           {"oidc": bool}: whether OpenID Connect sign-in is on
    POST   /console/v1/session      sign in: {user, password, totp?, new_password?} → 201
                                    + cookie,
                                    {name, display_name, roles, actions, csrf, expires_at}
    DELETE /console/v1/session      sign out (session + X-CSRF-Token)
    GET    /console/v1/me           who is signed in: {name, display_name, roles, actions,
                                    csrf, credential, expires_at} (session or token)

A password handed out by ``tongban staff user add|reset`` signs in only once, together
with the person's own ``new_password`` (403 ``password-change-required`` without it,
400 ``weak-password`` for one that is too short or the same).

The session cookie ``__Host-tongban-session`` holds 256 random bits (HttpOnly, Secure,
SameSite=Strict, Path=/, no Max-Age); the node keeps only its SHA-256. CSRF protection is
a *synchronizer token*: each session has its own random token, given in the sign-in
answer and by ``GET /console/v1/me``; every unsafe request (anything but GET, HEAD,
OPTIONS) made with the cookie must send it in ``X-CSRF-Token``, and an ``Origin`` header,
when present, must be the listener's own. A request with a bearer token is not checked
for CSRF (a browser never adds that header by itself).

A browser that asks for a page (``Accept: text/html``, GET, outside ``/staff/`` and
``/console/v1/``) without a valid session is sent to ``/login?next=<path>``; an API
request gets 401 (``unauthorized``, or ``session-expired`` when its cookie named a session
that has ended).

Every sign-in, failure, lockout, throttle, sign-out and ended session, and every unsafe
staff request (who, method, path, status), is written to the staff journal
(:meth:`relay.signin.store.StaffStore.journal`; ``tongban staff journal`` prints it).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from relay.alerts import ALERTS, StaffAlert
from relay.config import StaffSettings
from relay.db.open import storage_errors
from relay.http.body import read_json_object
from relay.permissions import actions_of
from relay.problem import Problem, ProblemCode
from relay.signin.journal import journal_middleware, locked_account_alerts
from relay.signin.passwords import (
    check_new_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from relay.signin.policy import Lockout, address_retry_at, after_failure, session_end
from relay.signin.store import AccountRecord, SessionRecord, StaffStore, session_hash
from relay.signin.totp import TotpCheck
from relay.staff_auth import STAFF_KEY, StaffClaims, StaffRole

__all__ = ["COOKIE", "CSRF_HEADER", "SESSION_KEY", "SignIn"]

COOKIE = "__Host-tongban-session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_KEY = web.RequestKey("console_session", SessionRecord)
"""``request[SESSION_KEY]``: the console session of a request made with the cookie."""

_log = logging.getLogger("tongban.relay.signin")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_STATIC = {"/login/login.js": "application/javascript", "/login/login.css": "text/css"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    return importlib.resources.files("relay.signin").joinpath("static", name).read_bytes()


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _address(request: web.Request) -> str:
    return request.remote or "-"


def is_page_request(request: web.Request) -> bool:
    """A browser navigating to a page (not an API call)."""
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("Accept", "")
        and not request.path.startswith(("/staff/", "/console/v1/"))
    )


def _retry_problem(code: ProblemCode, until: float, now: float, detail: str) -> Problem:
    wait = max(1, int(until - now + 0.999))
    return Problem(
        429,
        code,
        detail,
        headers={"Retry-After": str(wait)},
        extra={"retry_after": wait, "retry_at": _stamp(until).isoformat(timespec="seconds")},
    )


class SignIn:
    """Console sign-in for one node's staff listener."""

    def __init__(
        self,
        store: StaffStore,
        settings: StaffSettings,
        clock: Callable[[], datetime],
        *,
        totp: TotpCheck | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.totp = totp or TotpCheck(store)
        self.oidc_enabled = False
        self.route_hooks: list[Callable[[web.Application], None]] = []  # e.g. OpenID Connect
        self.open_paths: frozenset[str] = frozenset(
            {"/login", "/login/options", "/console/v1/session", *_STATIC}
        )

    # -- the session check (used by the staff auth middleware) -------------------------

    def _end(self, record: SessionRecord, request: web.Request, event: str) -> None:
        self.store.delete_session(record.id_hash)
        self.store.journal(self.clock(), record.name, event, _address(request), {})

    def _live_session(self, request: web.Request) -> SessionRecord | None:
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None
        record = self.store.session(session_hash(session_id))
        if record is None:
            return None
        now = self.clock().timestamp()
        if now >= session_end(record.created_at, record.last_seen, self.settings):
            self._end(record, request, "session-expired")
            return None
        if record.via == "password":
            account = self.store.account(record.name)
            if account is None or not account.enabled:
                self._end(record, request, "session-ended-account-disabled")
                return None
            record = SessionRecord(
                record.id_hash, record.name, account.display_name, account.roles,
                record.csrf, record.via, record.created_at, record.last_seen,
            )  # fmt: skip
        return record

    def _check_csrf(self, request: web.Request, record: SessionRecord) -> None:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), record.csrf.encode()):
            raise Problem(
                403,
                ProblemCode.CSRF_FAILED,
                f"a request with the session cookie must send the session's {CSRF_HEADER}",
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise Problem(403, ProblemCode.CSRF_FAILED, "the request comes from another site")

    async def session_check(self, request: web.Request) -> StaffClaims | None:
        """Claims of the request's session (see :data:`relay.staff_auth.SessionCheck`)."""
        had_cookie = bool(request.cookies.get(COOKIE))
        record = self._live_session(request)
        if record is None:
            if had_cookie and not is_page_request(request):
                raise Problem(
                    401, ProblemCode.SESSION_EXPIRED, "the session has ended; sign in again"
                )
            return None
        if request.method not in _SAFE:
            self._check_csrf(request, record)
        now = self.clock().timestamp()
        try:
            self.store.touch_session(record.id_hash, now)
        except storage_errors() as exc:  # e.g. a full disk: still let people read
            _log.warning("session of %s not refreshed: %s", record.name, exc)
        request[SESSION_KEY] = record
        return StaffClaims(
            subject=record.name,
            roles=record.roles,
            issued_at=_stamp(record.created_at),
            expires_at=_stamp(session_end(record.created_at, now, self.settings)),
            token_id=record.id_hash[:16],
            credential="session",
        )

    def on_denied(self, request: web.Request) -> web.StreamResponse | None:
        """Send a browser asking for a page to the sign-in page."""
        if not is_page_request(request):
            return None
        target = quote(request.path_qs, safe="/?=&")
        return web.Response(
            status=303, headers={"Location": f"/login?next={target}", "Cache-Control": "no-store"}
        )

    # -- the journal of staff requests --------------------------------------------------

    @property
    def journal_middleware(self) -> Middleware:
        """Records every unsafe staff request (:func:`relay.signin.journal.journal_middleware`)."""
        return journal_middleware(self.store, self.clock)

    # -- routes -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/login", self._page)
        app.router.add_get("/login/options", self._options)
        for path in _STATIC:
            app.router.add_get(path, self._static)
        app.router.add_post("/console/v1/session", self._sign_in)
        app.router.add_delete("/console/v1/session", self._sign_out)
        app.router.add_get("/console/v1/me", self._me)
        for hook in self.route_hooks:
            hook(app)
        if ALERTS in app:
            app[ALERTS].add_source("signin", self.alerts)

    def alerts(self, now: datetime) -> list[StaffAlert]:
        """The staff alerts of sign-in (:func:`relay.signin.journal.locked_account_alerts`)."""
        return locked_account_alerts(self.store, self.settings, now)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=_asset("login.html"), content_type="text/html", charset="utf-8",
            headers=_PAGE_HEADERS,
        )  # fmt: skip

    async def _options(self, request: web.Request) -> web.Response:
        return web.json_response({"oidc": self.oidc_enabled}, headers={"Cache-Control": "no-store"})

    async def _static(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        return web.Response(
            body=_asset(name), content_type=_STATIC[request.path], charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    def _who(self, record: SessionRecord, now: float) -> dict[str, Any]:
        return {
            "name": record.name,
            "display_name": record.display_name,
            "roles": [r.value for r in record.roles],
            "actions": sorted(a.value for a in actions_of(record.roles, "session")),
            "csrf": record.csrf,
            "credential": "session",
            "expires_at": _stamp(session_end(record.created_at, now, self.settings)).isoformat(
                timespec="seconds"
            ),
        }

    def _fail(
        self,
        request: web.Request,
        user: str,
        account: AccountRecord | None,
        now: float,
        reason: str,
    ) -> Problem:
        address = _address(request)
        self.store.add_address_failure(address, now)
        if account is not None:

            def step(failures: int) -> tuple[int, float | None]:
                lock = after_failure(failures, now, self.settings)
                return lock.failures, lock.locked_until

            counted = self.store.count_failure(account.name, step)  # race-free across workers
            lock = Lockout(0, None) if counted is None else Lockout(*counted)
            if lock.locked_until is not None:
                self.store.journal(self.clock(), user, "lockout", address, {"reason": reason})
                return _retry_problem(
                    ProblemCode.ACCOUNT_LOCKED,
                    lock.locked_until,
                    now,
                    "too many failed sign-ins: the account is locked for a while",
                )
        self.store.journal(self.clock(), user, "signin-failed", address, {"reason": reason})
        return Problem(401, ProblemCode.SIGNIN_FAILED, "the user name or password is wrong")

    async def _sign_in(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise Problem(403, ProblemCode.CSRF_FAILED, "the request comes from another site")
        body = await read_json_object(request)
        user, password, code = body.get("user"), body.get("password"), body.get("totp")
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'user' and 'password' must be strings")
        if code is not None and not isinstance(code, str):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'totp' must be a string")
        user = user.strip()[:64]
        address = _address(request)
        now = self.clock().timestamp()
        since = now - self.settings.signin_address_window
        retry_at = address_retry_at(self.store.address_failures(address, since), self.settings)
        if retry_at is not None:
            self.store.journal(self.clock(), user, "signin-throttled", address, {})
            raise _retry_problem(
                ProblemCode.SIGNIN_THROTTLED,
                retry_at,
                now,
                "too many failed sign-ins from this address; try again later",
            )
        account = self.store.account(user)
        locked_until = account.locked_until if account is not None else None
        if locked_until is not None and locked_until > now:
            self.store.journal(self.clock(), user, "signin-locked", address, {})
            raise _retry_problem(
                ProblemCode.ACCOUNT_LOCKED,
                locked_until,
                now,
                "too many failed sign-ins: the account is locked for a while",
            )
        stored = account.password_hash if account is not None else None
        loop = asyncio.get_running_loop()
        good = await loop.run_in_executor(None, verify_password, stored, password)
        if account is None or not good:
            raise self._fail(request, user, account, now, "password")
        if not account.enabled:
            raise self._fail(request, user, account, now, "disabled")
        if account.totp_secret is not None:
            if not code:
                raise Problem(
                    401,
                    ProblemCode.TOTP_REQUIRED,
                    "this account needs the 6-digit code of its authenticator app",
                )
            if not self.totp.verify(account.name, account.totp_secret, code, now):
                raise self._fail(request, user, account, now, "totp")
        if account.must_change:
            await self._replace_handed_out_password(account.name, password, body, address)
        else:
            self.store.clear_failures(account.name)
            if stored is not None and needs_rehash(stored):
                self.store.set_password_hash_only(account.name, hash_password(password))
        record = self.open_session(account.name, account.display_name, account.roles, "password")
        self.store.journal(self.clock(), account.name, "signin", address, {"via": "password"})
        return self.session_response(record, status=201)

    async def _replace_handed_out_password(
        self, name: str, password: str, body: dict[str, Any], address: str
    ) -> None:
        """A password handed out once (``must_change``) signs in only together with the
        person's own new one (``new_password``), which replaces it."""
        new = body.get("new_password")
        if new is None:
            raise Problem(
                403,
                ProblemCode.PASSWORD_CHANGE_REQUIRED,
                "this password was handed out once: send your own in 'new_password'",
            )
        if not isinstance(new, str):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'new_password' must be a string")
        if new == password:
            raise Problem(
                400, ProblemCode.WEAK_PASSWORD, "the new password must differ from the old"
            )
        try:
            check_new_password(new)
        except ValueError as exc:
            raise Problem(400, ProblemCode.WEAK_PASSWORD, str(exc)) from None
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(None, hash_password, new)
        self.store.set_password(name, hashed, must_change=False)
        self.store.journal(self.clock(), name, "password-chosen", address, {})

    def open_session(
        self, name: str, display_name: str, roles: tuple[StaffRole, ...], via: str
    ) -> tuple[str, SessionRecord]:
        """A new session for a person (the random id and its stored record); ended
        sessions of anyone are dropped on the way."""
        now = self.clock().timestamp()
        self.store.delete_sessions_before(
            now - self.settings.session_idle_timeout, now - self.settings.session_lifetime
        )
        session_id = secrets.token_urlsafe(32)
        record = SessionRecord(
            id_hash=session_hash(session_id),
            name=name,
            display_name=display_name,
            roles=roles,
            csrf=secrets.token_urlsafe(32),
            via=via,
            created_at=now,
            last_seen=now,
        )
        self.store.add_session(record)
        return session_id, record

    def session_response(
        self, opened: tuple[str, SessionRecord], *, status: int = 201
    ) -> web.Response:
        session_id, record = opened
        response = web.json_response(
            self._who(record, record.created_at),
            status=status,
            headers={"Cache-Control": "no-store"},
        )
        self.set_cookie(response, session_id)
        return response

    @staticmethod
    def set_cookie(response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(
            COOKIE, session_id, path="/", secure=True, httponly=True, samesite="Strict"
        )

    async def _sign_out(self, request: web.Request) -> web.Response:
        record = self._live_session(request)
        if record is None:
            raise Problem(401, ProblemCode.SESSION_EXPIRED, "no session to end")
        self._check_csrf(request, record)
        self.store.delete_session(record.id_hash)
        self.store.journal(self.clock(), record.name, "signout", _address(request), {})
        response = web.Response(status=204, headers={"Cache-Control": "no-store"})
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    async def _me(self, request: web.Request) -> web.Response:
        record = request.get(SESSION_KEY)
        now = self.clock().timestamp()
        if record is not None:
            body = self._who(record, now)
        else:
            claims = request[STAFF_KEY]
            body = {
                "name": claims.subject,
                "display_name": claims.subject,
                "roles": [r.value for r in claims.roles],
                "actions": sorted(a.value for a in actions_of(claims.roles, claims.credential)),
                "csrf": None,
                "credential": claims.credential,
                "expires_at": claims.expires_at.isoformat(timespec="seconds"),
            }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
