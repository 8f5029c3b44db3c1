"""Staff routes for cases, added to the staff application by the node.

Routes (bearer token; writing needs the ``clerk`` role)::

    POST /staff/v1/cases                     open a case at hand-in (we receive):
                                             {matter, handling, mode?, case_id?,
                                             materials?, submit?} → 201 with the
                                             access code (shown once) and tracking link
    GET  /staff/v1/cases[?overdue=1]         our cases; overdue=1: cases in progress with a
                                             yellow, red or grey clock only
    GET  /staff/v1/cases/{case}              one case: timeline with internal fields,
                                             clock, complaints, incoming packet outcomes
    POST /staff/v1/cases/{case}/events       take a step: {event, details?}

:func:`problem_from_case` is the one place case errors become problem documents.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from relay.cases.application import ContentRefused
from relay.cases.desk import CaseDesk, Overdue
from relay.cases.errors import CaseError, IllegalTransition, MalformedEvent, TrackingDenied
from relay.cases.model import EventKind, thaw
from relay.cases.sla import complaint_clock
from relay.cases.store import CaseRecord
from relay.cases.terms import NoTerms
from relay.http.body import limit_param, read_json_object, require_str
from relay.permissions import APPLICANT_STEPS, EVENT_ACTIONS, StaffAction, require
from relay.problem import Problem, ProblemCode
from signing.certificates import is_node_id

__all__ = ["add_case_routes", "case_json", "problem_from_case"]


CASE_CONFLICTS = frozenset({"conflict", "case-exists", "earlier-step-unsent", "status-list-full"})
"""Case error codes answered ``409 conflict`` (besides an illegal transition's)."""


def problem_from_case(exc: CaseError) -> Problem:
    """The problem document answering a case error (``code`` is kept as ``reason``)."""
    extra = {"reason": exc.code}
    if isinstance(exc, TrackingDenied):
        if exc.code == "throttled":
            retry = max(1, int(exc.retry_after + 0.999))
            return Problem(
                429,
                ProblemCode.TOO_MANY_REQUESTS,
                str(exc),
                headers={"Retry-After": str(retry)},
                extra={**extra, "retry_after": retry},
            )
        return Problem(404, ProblemCode.NOT_FOUND, str(exc), extra=extra)
    if exc.code == "step-in-flight":  # the case's step before is being queued: a moment
        return Problem(
            409, ProblemCode.CONFLICT, str(exc), headers={"Retry-After": "5"}, extra=extra
        )
    if isinstance(exc, IllegalTransition) or exc.code in CASE_CONFLICTS:
        return Problem(409, ProblemCode.CONFLICT, str(exc), extra=extra)
    if isinstance(exc, MalformedEvent):
        return Problem(400, ProblemCode.INVALID_REQUEST, str(exc), extra=extra)
    if isinstance(exc, ContentRefused):
        if exc.code == "data-category-not-agreed":
            return Problem(403, ProblemCode.NOT_AUTHORIZED, str(exc), extra=extra)
        return Problem(422, ProblemCode.INVALID_REQUEST, str(exc), extra=extra)
    if isinstance(exc, NoTerms):
        return Problem(403, ProblemCode.NOT_AUTHORIZED, str(exc), extra=extra)
    if exc.code == "unknown-case":
        return Problem(404, ProblemCode.NOT_FOUND, str(exc), extra=extra)
    return Problem(400, ProblemCode.INVALID_REQUEST, str(exc), extra=extra)


def case_json(desk: CaseDesk, record: CaseRecord, overdue: Overdue | None = None) -> dict[str, Any]:
    """The staff view of a case (everything, including internal fields)."""
    case, now = record.case, desk.now()
    view = case.view
    return {
        **case.header.to_json(),
        "me": case.me.value,
        "state": view.state.value,
        "version": record.version,
        "opened_at": record.opened_at.isoformat(),
        "clock": desk.clock_of(case, now).to_json(),
        "missing": list(view.missing),
        "licence_number": view.licence_number,
        "rating": None if view.rating is None else thaw(view.rating),
        "complaints": [
            {
                "seq": c.seq,
                "at": c.at.isoformat(),
                "text": c.text,
                "answered_at": None if c.answered_at is None else c.answered_at.isoformat(),
                "answer": c.answer,
                "clock": complaint_clock(c, calendar=desk.calendar, now=now).to_json(),
            }
            for c in view.complaints
        ],
        "timeline": [
            {
                "event": e.event.kind.value,
                "origin": e.event.origin.value,
                "seq": e.event.seq,
                "seen": e.event.seen,
                "at": e.event.at.isoformat(),
                "details": _without_personal_data(e.event.details),
                "applied": e.applied,
                "state": e.state.value,
            }
            for e in view.timeline
        ],
    }


def _without_personal_data(details: Mapping[str, Any]) -> dict[str, Any]:
    """Event details for the staff case view: a submit's application (personal data)
    is replaced by its categories; it is read, with a purpose that is logged, from
    ``GET /staff/v1/cases/{case}/application`` (relay.integration.http)."""
    plain: dict[str, Any] = thaw(details)
    application = plain.pop("application", None)
    if isinstance(application, dict):
        plain["application_categories"] = sorted(application)
    return plain


def _event_request(body: dict[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    try:
        kind = EventKind(require_str(body, "event"))
    except ValueError:
        raise Problem(
            400,
            ProblemCode.INVALID_REQUEST,
            f"'event' must be one of {[k.value for k in EventKind]}",
        ) from None
    details = body.get("details", {})
    if not isinstance(details, dict):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "'details' must be a JSON object")
    return kind, details


def add_case_routes(app: web.Application, desk: CaseDesk) -> None:
    """Add the case routes to a staff application (before it starts)."""

    async def open_case(request: web.Request) -> web.Response:
        require(request, StaffAction.RECEIVE)
        body = await read_json_object(request)
        handling = require_str(body, "handling")
        if not is_node_id(handling):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'handling' must be a node id")
        materials = body.get("materials", [])
        if not isinstance(materials, list) or not all(isinstance(m, str) for m in materials):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'materials' must list strings")
        case_id = body.get("case_id")
        if case_id is not None and not isinstance(case_id, str):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'case_id' must be a string")
        try:
            opened = await desk.open_case(
                matter=require_str(body, "matter"),
                mode=body.get("mode") or "proxy_receipt",
                handling=handling,
                case_id=case_id,
                materials=materials,
                submit=body.get("submit", True) is not False,
            )
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        case_id = opened.record.case.header.case_id
        return web.json_response(
            {
                "case": case_json(desk, opened.record),
                "access_code": opened.access_code,
                "tracking_link": opened.tracking_link,
                "tracking_path": f"/track#link={opened.tracking_link}",
                **({} if opened.short_code is None else {"short_path": f"/t/{opened.short_code}"}),
            },
            status=201,
            headers={"Location": f"/staff/v1/cases/{case_id}", "Cache-Control": "no-store"},
            dumps=_dumps,
        )

    async def list_cases(request: web.Request) -> web.Response:
        if request.query.get("overdue") in ("1", "true", "yes"):
            items = [case_json(desk, o.record, o) for o in desk.overdue()]
            return web.json_response({"cases": items, "next": None}, dumps=_dumps)
        limit = limit_param(request, most=_PAGE_MAX, default=PAGE_SIZE)
        after = _cursor(request.query.get("after", ""))
        records = desk.list_cases(after=after, limit=limit + 1)  # one more: is there a next?
        page = records[:limit]
        more = len(records) > limit
        body = {
            "cases": [case_json(desk, r) for r in page],
            "next": _cursor_of(page[-1]) if more else None,
        }
        return web.json_response(body, dumps=_dumps)

    async def get_case(request: web.Request) -> web.Response:
        case_id = request.match_info["case"]
        try:
            record = desk.get(case_id)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        body = case_json(desk, record)
        body["packets"] = [
            {"packet_id": p.packet_id, "outcome": p.outcome, "detail": p.detail}
            for p in desk.packets(case_id)
        ]
        return web.json_response(body, dumps=_dumps)

    async def post_event(request: web.Request) -> web.Response:
        kind, details = _event_request(await read_json_object(request))
        claims = require(request, EVENT_ACTIONS[kind])
        if kind in APPLICANT_STEPS and claims.credential == "session":
            # a person signed in may not rate or complain for the applicant (it locks the
            # applicant out); the office's systems (tokens) may pass on one made elsewhere
            raise Problem(
                403,
                ProblemCode.FORBIDDEN,
                f"{kind.value!r} is the applicant's own step, taken on the tracking page",
            )
        try:
            record = await desk.act(request.match_info["case"], kind, details)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        return web.json_response(case_json(desk, record), dumps=_dumps)

    app.router.add_post("/staff/v1/cases", open_case)
    app.router.add_get("/staff/v1/cases", list_cases)
    app.router.add_get("/staff/v1/cases/{case}", get_case)
    app.router.add_post("/staff/v1/cases/{case}/events", post_event)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


PAGE_SIZE = 100  # cases per page of GET /staff/v1/cases unless ``limit`` says otherwise
_PAGE_MAX = 1000


def _cursor_of(record: CaseRecord) -> str:
    """Where the next page starts: after this case (opaque to clients)."""
    position = [record.opened_at.timestamp(), record.case.header.case_id]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _cursor(text: str) -> tuple[float, str] | None:
    """The position a ``next`` cursor names (None for the first page)."""
    if not text:
        return None
    try:
        opened_at, case_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if isinstance(opened_at, int | float) and isinstance(case_id, str):
            return float(opened_at), case_id
    except (ValueError, TypeError):
        pass
    raise Problem(
        400, ProblemCode.INVALID_REQUEST, "'after' must be the 'next' of an earlier page, as given"
    )
