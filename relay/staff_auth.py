"""Staff bearer tokens: EdDSA JWTs signed by a per-node key, checked by a middleware.

A node signs its staff tokens with its own Ed25519 *staff-token key* (PKCS#8 PEM in the
data dir, mode 0600, created on first use) — not with its seal key: a staff token is a
local credential and must never verify anywhere else. Claims::

    {"iss": "tongban:<node id>", "aud": "tongban-staff:<node id>", "sub": "<name>",
     "roles": ["clerk"], "iat": <int>, "exp": <int>, "jti": "<random>"}

Verification pins the algorithm to ``EdDSA`` (the key's algorithm; the token's ``alg``
header is never trusted), requires every claim above, checks the audience, and takes
the current time as an argument (:func:`verify_token`). Failures map to 401 problems
``unauthorized`` (no token), ``token-expired`` and ``token-invalid``.

A token must carry at least one known role (``roles: []`` or an unknown role is
``token-invalid``). What each role may do is the one permission map in
:mod:`relay.permissions`; handlers ask for an action (:func:`relay.permissions.require`).

The staff listener also accepts a console session (a cookie, see :mod:`relay.signin`)
instead of a bearer token: the middleware is given a ``session_check`` that turns the
request's cookie into the same :class:`StaffClaims` (``credential="session"``, the
account name as subject), so every handler works unchanged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from relay.problem import Problem, ProblemCode
from signing.keyfile import KeyFileError, load_or_create_ed25519_key

__all__ = [
    "STAFF_KEY",
    "SessionCheck",
    "StaffClaims",
    "StaffRole",
    "TokenCache",
    "TokenError",
    "TokenKeyError",
    "audience",
    "issue_token",
    "load_or_create_token_key",
    "require_role",
    "staff_auth_middleware",
    "verify_token",
]

_log = logging.getLogger("tongban.relay.staff")
_ALGORITHM = "EdDSA"
_MAX_TTL = 31 * 86400
_CLOCK_SKEW = timedelta(seconds=60)


class StaffRole(StrEnum):
    """What a staff member may do through the staff API."""

    CLERK = "clerk"  # 收件: hand in cases, create packets, upload attachments, read
    READER = "reader"  # read outbox, inbox and packets only (bearer tokens)
    APPROVER = "approver"  # 审批: accept, correct, decide
    INSPECTOR = "inspector"  # 勘查: surveys only
    LICENCE_OFFICER = "licence_officer"  # 证照: issue, suspend, revoke licences
    ADMINISTRATOR = "administrator"  # 管理员: accounts, the audit log


class TokenError(Exception):
    """A bearer token that does not verify; ``code`` is ``token-expired`` or ``token-invalid``."""

    def __init__(self, code: ProblemCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenKeyError(Exception):
    """The staff-token key file cannot be used (unreadable, not Ed25519, too open)."""


@dataclass(frozen=True)
class StaffClaims:
    """A verified staff token."""

    subject: str
    roles: tuple[StaffRole, ...]
    issued_at: datetime
    expires_at: datetime
    token_id: str
    credential: str = "token"  # "token" (bearer JWT) or "session" (console cookie)


STAFF_KEY = web.RequestKey("staff", StaffClaims)
"""``request[STAFF_KEY]`` holds the verified claims of the calling staff member."""


def audience(node_id: str) -> str:
    return f"tongban-staff:{node_id}"


def load_or_create_token_key(path: Path) -> Ed25519PrivateKey:
    """Load the staff-token key, creating it (mode 0600, parents 0700) when missing."""
    try:
        return load_or_create_ed25519_key(path, "staff-token key")
    except KeyFileError as exc:
        raise TokenKeyError(str(exc)) from exc.__cause__


def issue_token(
    key: Ed25519PrivateKey,
    *,
    node_id: str,
    subject: str,
    roles: Sequence[StaffRole],
    now: datetime,
    ttl: float,
) -> str:
    """A signed staff token for ``subject`` valid from ``now`` for ``ttl`` seconds."""
    if not subject.strip():
        raise ValueError("the subject must not be empty")
    if not roles:
        raise ValueError("a staff token needs at least one role")
    if not 1 <= ttl <= _MAX_TTL:  # whole seconds: less would give exp == iat
        raise ValueError("the token lifetime must be between 1 second and 31 days")
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": f"tongban:{node_id}",
        "aud": audience(node_id),
        "sub": subject,
        "roles": [str(r) for r in roles],
        "iat": iat,
        "exp": iat + int(ttl),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM, headers={"typ": "JWT"})


def verify_token(
    token: str, public_key: Ed25519PublicKey, *, node_id: str, now: datetime
) -> StaffClaims:
    """Verify a staff token at ``now``; raises :class:`TokenError`."""
    return _claims_at(_signed_claims(token, public_key, node_id), now)


class TokenCache:
    """The signature part of :func:`verify_token`, remembered per token: the claims of
    a token whose signature, issuer, audience and roles checked under one key, parsed
    once. Only that is cached (facts about fixed bytes and a fixed key); expiry and
    issue time are checked again at every use. A busy office system sends the same
    token with every request, and its Ed25519 verify was a tenth of the CPU of creating
    a packet."""

    def __init__(self, public_key: Ed25519PublicKey, node_id: str, *, most: int = 1024) -> None:
        self._key = public_key
        self._node_id = node_id
        self._most = most
        self._signed: dict[str, StaffClaims] = {}

    def verify(self, token: str, now: datetime) -> StaffClaims:
        """:func:`verify_token` at ``now``; raises :class:`TokenError`."""
        claims = self._signed.get(token)
        if claims is None:
            claims = _parsed(_signed_claims(token, self._key, self._node_id))
            if len(self._signed) >= self._most:
                self._signed.clear()  # bounded; a refill costs one verify per token
            self._signed[token] = claims
        return _in_force(claims, now)


def _signed_claims(token: str, public_key: Ed25519PublicKey, node_id: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[_ALGORITHM],
            audience=audience(node_id),
            issuer=f"tongban:{node_id}",
            options={
                "require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                "verify_exp": False,  # checked below against ``now``
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        _log.info("staff token refused: %s", exc)
        raise TokenError(ProblemCode.TOKEN_INVALID, "the bearer token is not valid") from None
    return claims


def _claims_at(claims: dict[str, Any], now: datetime) -> StaffClaims:
    return _in_force(_parsed(claims), now)


def _parsed(claims: dict[str, Any]) -> StaffClaims:
    """The claims of a token whose signature checked, whatever the time."""
    iat, exp, roles = claims.get("iat"), claims.get("exp"), claims.get("roles")
    if not isinstance(iat, int) or not isinstance(exp, int) or not isinstance(roles, list):
        raise TokenError(ProblemCode.TOKEN_INVALID, "the bearer token is not valid")
    try:
        parsed_roles = tuple(StaffRole(r) for r in roles)
    except ValueError:
        raise TokenError(
            ProblemCode.TOKEN_INVALID, "the bearer token names an unknown role"
        ) from None
    if not parsed_roles:
        raise TokenError(ProblemCode.TOKEN_INVALID, "the bearer token carries no role")
    return StaffClaims(
        subject=str(claims["sub"]),
        roles=parsed_roles,
        issued_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
        token_id=str(claims["jti"]),
    )


def _in_force(claims: StaffClaims, now: datetime) -> StaffClaims:
    """``claims`` if the token is in force at ``now`` (not expired, not issued more than
    a minute ahead); raises :class:`TokenError`."""
    if now >= claims.expires_at:
        raise TokenError(ProblemCode.TOKEN_EXPIRED, "the bearer token has expired")
    if claims.issued_at > now + _CLOCK_SKEW:
        raise TokenError(ProblemCode.TOKEN_INVALID, "the bearer token is issued in the future")
    return claims


_CHALLENGE = 'Bearer realm="tongban-staff"'


SessionCheck = Callable[[web.Request], Awaitable[StaffClaims | None]]
"""Claims of the request's console session; ``None`` when it carries no session cookie;
raises a :class:`~relay.problem.Problem` for a bad or expired session or a missing CSRF
token."""


def staff_auth_middleware(
    public_key: Ed25519PublicKey,
    node_id: str,
    clock: Callable[[], datetime],
    *,
    open_paths: Collection[str] = ("/openapi.yaml",),
    session_check: SessionCheck | None = None,
    on_denied: Callable[[web.Request], web.StreamResponse | None] | None = None,
) -> Middleware:
    """Middleware: require a valid staff bearer token or, when ``session_check`` is
    given, a console session (except on ``open_paths``). ``on_denied`` may answer a
    request that carries neither (e.g. send a browser to the sign-in page)."""
    tokens = TokenCache(public_key, node_id)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header and session_check is not None:
            session = await session_check(request)
            if session is not None:
                request[STAFF_KEY] = session
                return await handler(request)
        if scheme.lower() != "bearer" or not token.strip():
            if on_denied is not None and (answer := on_denied(request)) is not None:
                return answer
            raise Problem(
                401,
                ProblemCode.UNAUTHORIZED,
                "a staff bearer token is required (tongban staff token)",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        try:
            claims = tokens.verify(token.strip(), clock())
        except TokenError as exc:
            error = "invalid_token"
            raise Problem(
                401,
                exc.code,
                str(exc),
                headers={"WWW-Authenticate": f'{_CHALLENGE}, error="{error}"'},
            ) from None
        request[STAFF_KEY] = claims
        return await handler(request)

    return middleware


def require_role(request: web.Request, role: StaffRole) -> StaffClaims:
    """The caller's claims if they hold ``role``; else a 403 problem."""
    claims = request[STAFF_KEY]
    if role not in claims.roles:
        raise Problem(403, ProblemCode.FORBIDDEN, f"this needs the staff role {role.value!r}")
    return claims
