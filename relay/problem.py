"""RFC 9457 problem documents for every HTTP listener of a node.

A :class:`Problem` is the one exception the HTTP layer raises to answer with an error.
:func:`problem_middleware` turns it, aiohttp's own HTTP errors and any unexpected
exception into an ``application/problem+json`` body::

    {"type": "urn:tongban:problem:<code>", "title": "...", "status": 413,
     "detail": "...", "code": "<code>", "instance": "/federation/v1/packets"}

Codes are stable (:class:`ProblemCode`); titles are fixed per code; ``detail`` is the
only free text and never carries an internal cause (a 500 logs the cause and says
nothing about it).

A storage fault that reaches the edge (an ``sqlite3.Error`` or ``psycopg.Error`` — a
PostgreSQL server gone or restarting —, or an ``OSError`` such as
a full disk or an I/O error) is not a bug in the request: it answers 503
``storage-unavailable`` with ``Retry-After`` (:func:`storage_problem`), logged once as
an error without a traceback. Nothing was accepted: the write was one transaction.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from aiohttp import web

from relay.db.open import database_errors

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "ProblemCode",
    "problem_middleware",
    "problem_response",
    "storage_problem",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:tongban:problem:"
_log = logging.getLogger("tongban.relay.http")


class ProblemCode(StrEnum):
    """Stable problem codes; the value is the suffix of the problem ``type`` URN."""

    BAD_REQUEST = "bad-request"
    BAD_JSON = "bad-json"
    INVALID_REQUEST = "invalid-request"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token-expired"  # noqa: S105 - a problem code, not a secret
    TOKEN_INVALID = "token-invalid"  # noqa: S105 - a problem code, not a secret
    FORBIDDEN = "forbidden"
    PEER_NOT_TRUSTED = "peer-not-trusted"
    PEER_REVOKED = "peer-revoked"
    PEER_NOT_PARTNER = "peer-not-partner"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    CONFLICT = "conflict"
    NOT_AUTHORIZED = "not-authorized"
    UNKNOWN_NODE = "unknown-node"
    SIZE_MISMATCH = "size-mismatch"
    OFFSET_MISMATCH = "offset-mismatch"
    DIGEST_MISMATCH = "digest-mismatch"
    BODY_TOO_LARGE = "body-too-large"
    BATCH_TOO_LARGE = "batch-too-large"
    PACKET_TOO_LARGE = "packet-too-large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    HEADER_TOO_LARGE = "header-too-large"
    TOO_MANY_REQUESTS = "too-many-requests"
    REQUEST_TIMEOUT = "request-timeout"
    NOT_READY = "not-ready"
    SERVICE_UNAVAILABLE = "service-unavailable"
    STORAGE_UNAVAILABLE = "storage-unavailable"
    INTERNAL_ERROR = "internal-error"
    AUDIT_RANGE = "audit-range"
    AUDIT_COSIGNATURE = "audit-cosignature"
    AUDIT_UNKNOWN_ORIGIN = "audit-unknown-origin"
    AUDIT_UNKNOWN_LEAF = "audit-unknown-leaf"
    AUDIT_HALTED = "audit-halted"
    AUDIT_UNAVAILABLE = "audit-unavailable"
    # console sign-in (relay.signin)
    SIGNIN_FAILED = "signin-failed"
    TOTP_REQUIRED = "totp-required"
    ACCOUNT_LOCKED = "account-locked"
    SIGNIN_THROTTLED = "signin-throttled"
    SESSION_EXPIRED = "session-expired"
    CSRF_FAILED = "csrf-failed"
    PASSWORD_CHANGE_REQUIRED = "password-change-required"  # noqa: S105 - a problem code
    WEAK_PASSWORD = "weak-password"  # noqa: S105 - a problem code
    RELOAD_REFUSED = "reload-refused"


_TITLES: Mapping[ProblemCode, str] = {
    ProblemCode.BAD_REQUEST: "Bad request",
    ProblemCode.BAD_JSON: "Request body is not valid JSON",
    ProblemCode.INVALID_REQUEST: "Request does not match the API",
    ProblemCode.UNAUTHORIZED: "Authentication required",
    ProblemCode.TOKEN_EXPIRED: "Bearer token expired",
    ProblemCode.TOKEN_INVALID: "Bearer token invalid",
    ProblemCode.FORBIDDEN: "Not allowed",
    ProblemCode.PEER_NOT_TRUSTED: "Peer certificate not trusted",
    ProblemCode.PEER_REVOKED: "Peer certificate revoked",
    ProblemCode.PEER_NOT_PARTNER: "Peer is not a partner of this node",
    ProblemCode.NOT_FOUND: "Not found",
    ProblemCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ProblemCode.CONFLICT: "Conflict",
    ProblemCode.NOT_AUTHORIZED: "Not granted by the agreement",
    ProblemCode.UNKNOWN_NODE: "Unknown node",
    ProblemCode.SIZE_MISMATCH: "Upload size does not match",
    ProblemCode.OFFSET_MISMATCH: "Upload offset does not match",
    ProblemCode.DIGEST_MISMATCH: "Content digest does not match",
    ProblemCode.BODY_TOO_LARGE: "Request body too large",
    ProblemCode.BATCH_TOO_LARGE: "Batch too large",
    ProblemCode.PACKET_TOO_LARGE: "Packet too large for any batch",
    ProblemCode.UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
    ProblemCode.HEADER_TOO_LARGE: "Request header too large",
    ProblemCode.TOO_MANY_REQUESTS: "Too many concurrent requests",
    ProblemCode.REQUEST_TIMEOUT: "Request took too long",
    ProblemCode.NOT_READY: "Node not ready",
    ProblemCode.SERVICE_UNAVAILABLE: "Service unavailable",
    ProblemCode.STORAGE_UNAVAILABLE: "Storage unavailable",
    ProblemCode.INTERNAL_ERROR: "Internal error",
    ProblemCode.AUDIT_RANGE: "Audit log cannot prove that range",
    ProblemCode.AUDIT_COSIGNATURE: "Cosignature refused",
    ProblemCode.AUDIT_UNKNOWN_ORIGIN: "No cosigned checkpoint of that origin",
    ProblemCode.AUDIT_UNKNOWN_LEAF: "No audit leaf for that packet",
    ProblemCode.AUDIT_HALTED: "Audit exchange halted after a fork",
    ProblemCode.AUDIT_UNAVAILABLE: "Audit log unavailable",
    ProblemCode.SIGNIN_FAILED: "Sign-in failed",
    ProblemCode.TOTP_REQUIRED: "One-time code required",
    ProblemCode.ACCOUNT_LOCKED: "Account locked for a while",
    ProblemCode.SIGNIN_THROTTLED: "Too many failed sign-ins from this address",
    ProblemCode.SESSION_EXPIRED: "Session ended",
    ProblemCode.CSRF_FAILED: "CSRF token missing or wrong",
    ProblemCode.PASSWORD_CHANGE_REQUIRED: "Choose your own password",
    ProblemCode.WEAK_PASSWORD: "New password not acceptable",
    ProblemCode.RELOAD_REFUSED: "Reload refused; the previous state stays",
}


class Problem(Exception):
    """An HTTP error answered as an RFC 9457 problem document."""

    def __init__(
        self,
        status: int,
        code: ProblemCode,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def title(self) -> str:
        return _TITLES[self.code]

    def to_json(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": _TYPE_PREFIX + self.code.value,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code.value,
            "instance": instance,
        }
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


def problem_response(problem: Problem, instance: str) -> web.Response:
    """Encode ``problem`` as an ``application/problem+json`` response."""
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.to_json(instance), ensure_ascii=False).encode(),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def _from_http_exception(exc: web.HTTPException) -> Problem:
    status = exc.status
    if status == 404:
        return Problem(404, ProblemCode.NOT_FOUND, "no resource at this path")
    if status == 405:
        allowed = exc.headers.get("Allow", "")
        return Problem(
            405,
            ProblemCode.METHOD_NOT_ALLOWED,
            f"method not allowed here; allowed: {allowed}",
            headers={"Allow": allowed} if allowed else None,
        )
    if status == 413:
        return Problem(413, ProblemCode.BODY_TOO_LARGE, "request body exceeds the limit")
    if status == 415:
        return Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, "unsupported content type")
    if status == 401:
        return Problem(401, ProblemCode.UNAUTHORIZED, "authentication required")
    if status == 403:
        return Problem(403, ProblemCode.FORBIDDEN, "not allowed")
    if status == 408:
        return Problem(408, ProblemCode.REQUEST_TIMEOUT, "request took too long")
    if status == 431:
        return Problem(431, ProblemCode.HEADER_TOO_LARGE, "request header too large")
    if status >= 500:
        return Problem(status, ProblemCode.INTERNAL_ERROR, "the node could not answer")
    return Problem(status, ProblemCode.BAD_REQUEST, exc.reason or "bad request")


STORAGE_RETRY_AFTER = 30
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def storage_problem() -> Problem:
    """503 ``storage-unavailable``: storage refused the operation; try again later."""
    return Problem(
        503,
        ProblemCode.STORAGE_UNAVAILABLE,
        "the node's storage cannot take this now; nothing was accepted, try again later",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER)},
    )


def _is_storage_fault(exc: Exception) -> bool:
    if isinstance(exc, database_errors()):
        return True
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error raised below with a problem document."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_from_http_exception(exc), request.path)
    except Exception as exc:
        if _is_storage_fault(exc):
            _log.error("storage fault answering %s %s: %s", request.method, request.path, exc)
            return problem_response(storage_problem(), request.path)
        _log.exception("unexpected error answering %s %s", request.method, request.path)
        internal = Problem(500, ProblemCode.INTERNAL_ERROR, "the node could not answer")
        return problem_response(internal, request.path)
