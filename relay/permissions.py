"""Who may do what on the staff listener: the one permission map (pure).

A staff member holds roles (:class:`~relay.staff_auth.StaffRole`); a request needs an
action (:class:`StaffAction`). :data:`PERMISSIONS` says which actions each role grants:

==================  ====================================================================
role                actions
==================  ====================================================================
clerk (收件)         read, receive
approver (审批)      read, decide
inspector (勘查)     view-surveys, survey
licence_officer     read, licence
(证照)
administrator       read, view-surveys, audit, accounts, personal-data, integration
(管理员)
reader (token)      read, view-surveys
==================  ====================================================================

A *bearer token* is the credential of the office's own systems; its ``clerk`` role
predates the console roles and keeps what it always allowed: every action except
``accounts`` (:data:`TOKEN_PERMISSIONS`). A token may carry the console roles too; they
then mean what they mean for a person.

Two places ask: :func:`permission_middleware` checks reads by path before any handler
runs (:data:`READ_POLICY`: ``/staff/v1/surveys`` needs ``view-surveys``, every other
``/staff/v1/`` read needs ``read``; console pages and ``/console/v1/me`` need only a
signed-in person), and each acting handler asks :func:`require` for its action — a case
step for the action of its event kind (:data:`EVENT_ACTIONS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.cases.model import EventKind
from relay.problem import Problem, ProblemCode
from relay.staff_auth import STAFF_KEY, StaffClaims, StaffRole

__all__ = [
    "APPLICANT_STEPS",
    "EVENT_ACTIONS",
    "PERMISSIONS",
    "READ_POLICY",
    "TOKEN_PERMISSIONS",
    "StaffAction",
    "actions_of",
    "allowed",
    "permission_middleware",
    "read_action",
    "require",
]


class StaffAction(StrEnum):
    """Something a staff request does; granted to roles by :data:`PERMISSIONS`."""

    READ = "read"  # cases, outbox, inbox, packets, alerts
    RECEIVE = "receive"  # hand in a case, create packets, upload, supplement, deliver, conclude
    DECIDE = "decide"  # accept, reject, request correction or survey, decide
    VIEW_SURVEYS = "view-surveys"  # survey status and reports
    SURVEY = "survey"  # schedule a survey, send its report
    LICENCE = "licence"  # issue, suspend, reinstate, revoke a licence
    AUDIT = "audit"  # sign a checkpoint now, resume witnessing a partner
    ACCOUNTS = "accounts"  # manage staff accounts
    PERSONAL_DATA = "personal-data"  # the personal-data access log, an applicant's export
    INTEGRATION = "integration"  # retry the parked webhook deliveries of a target


_A = StaffAction
PERMISSIONS: Mapping[StaffRole, frozenset[StaffAction]] = MappingProxyType(
    {
        StaffRole.CLERK: frozenset({_A.READ, _A.RECEIVE}),
        StaffRole.APPROVER: frozenset({_A.READ, _A.DECIDE}),
        StaffRole.INSPECTOR: frozenset({_A.VIEW_SURVEYS, _A.SURVEY}),
        StaffRole.LICENCE_OFFICER: frozenset({_A.READ, _A.LICENCE}),
        StaffRole.ADMINISTRATOR: frozenset(
            {_A.READ, _A.VIEW_SURVEYS, _A.AUDIT, _A.ACCOUNTS, _A.PERSONAL_DATA, _A.INTEGRATION}
        ),
        StaffRole.READER: frozenset({_A.READ, _A.VIEW_SURVEYS}),
    }
)
"""Role -> the actions it grants, for a person signed in to the console."""

TOKEN_PERMISSIONS: Mapping[StaffRole, frozenset[StaffAction]] = MappingProxyType(
    {**PERMISSIONS, StaffRole.CLERK: frozenset(StaffAction) - {_A.ACCOUNTS}}
)
"""Role -> actions for a bearer token (the office's systems)."""

EVENT_ACTIONS: Mapping[EventKind, StaffAction] = MappingProxyType(
    {
        EventKind.SUBMIT: _A.RECEIVE,
        EventKind.SUPPLEMENT: _A.RECEIVE,
        EventKind.DELIVER: _A.RECEIVE,
        EventKind.WITHDRAW: _A.RECEIVE,
        EventKind.RATE: _A.RECEIVE,
        EventKind.COMPLAIN: _A.RECEIVE,
        EventKind.ACCEPT: _A.DECIDE,
        EventKind.REJECT: _A.DECIDE,
        EventKind.REQUEST_CORRECTION: _A.DECIDE,
        EventKind.REQUEST_SURVEY: _A.DECIDE,
        EventKind.DECIDE: _A.DECIDE,
        # the receiving office's step (after the hand-over): its counter concludes, and an
        # office with no approver could otherwise never conclude, nor the applicant rate
        EventKind.CONCLUDE: _A.RECEIVE,
        EventKind.ANSWER_COMPLAINT: _A.DECIDE,
        EventKind.SURVEY_REPORT: _A.SURVEY,
        EventKind.ISSUE_LICENCE: _A.LICENCE,
    }
)
"""A case step (``POST /staff/v1/cases/{case}/events``) -> the action it needs."""

APPLICANT_STEPS = frozenset({EventKind.RATE, EventKind.COMPLAIN})
"""Steps that are the applicant's (on the tracking page): refused to a person signed in
to the console, whose roles would grant them."""

READ_POLICY: tuple[tuple[str, StaffAction], ...] = (
    ("/staff/v1/surveys", _A.VIEW_SURVEYS),
    ("/staff/v1/", _A.READ),
)
"""Path prefix -> the action a read (GET, HEAD) needs; the first match wins; a path
matching none needs only a signed-in person (console pages, ``/console/v1/me``)."""

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def actions_of(roles: Iterable[StaffRole], credential: str) -> frozenset[StaffAction]:
    """Every action granted by ``roles`` held through ``credential``."""
    table = TOKEN_PERMISSIONS if credential == "token" else PERMISSIONS
    granted: set[StaffAction] = set()
    for role in roles:
        granted |= table.get(role, frozenset())
    return frozenset(granted)


def allowed(claims: StaffClaims, action: StaffAction) -> bool:
    return action in actions_of(claims.roles, claims.credential)


def read_action(method: str, path: str) -> StaffAction | None:
    """The action a read of ``path`` needs (``None``: any signed-in person; also for
    unsafe methods, which their handlers check)."""
    if method not in _SAFE:
        return None
    for prefix, action in READ_POLICY:
        if path.startswith(prefix):
            return action
    return None


def _forbidden(action: StaffAction) -> Problem:
    return Problem(
        403,
        ProblemCode.FORBIDDEN,
        f"your roles do not allow this (it needs the permission {action.value!r})",
        extra={"action": action.value},
    )


def require(request: web.Request, action: StaffAction) -> StaffClaims:
    """The caller's claims if their roles grant ``action``; else a 403 problem."""
    claims = request[STAFF_KEY]
    if not allowed(claims, action):
        raise _forbidden(action)
    return claims


@web.middleware
async def permission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check :data:`READ_POLICY` for an authenticated request (after the auth middleware)."""
    claims = request.get(STAFF_KEY)
    if claims is not None:
        action = read_action(request.method, request.path)
        if action is not None and not allowed(claims, action):
            raise _forbidden(action)
    return await handler(request)
