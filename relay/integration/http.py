"""Staff routes of the integration: schemas, import/export, personal data, webhooks.

Routes (a console session or a bearer token; each needs the action of the permission
map, :mod:`relay.permissions`: importing ``receive``, reading an application or a
result ``read`` with a purpose, the access log and an applicant's export
``personal-data``, retrying ``integration``; other reads ``read``)::

    GET  /staff/v1/integration/schemas/{matter}?handling=N[&mode=M]
                                        the JSON Schema of the matter's application
    POST /staff/v1/integration/cases    import a case from the platform: {matter,
                                        handling, mode?, case_id?, application} → 201
    GET  /staff/v1/integration/cases/{case}/result      the handling result (decision,
                                        licence, documents) — a personal-data read
    GET  /staff/v1/cases/{case}/application             the application — a read
    GET  /staff/v1/personal-data/reads?applicant=ID | ?case=C   the access log
    GET  /staff/v1/personal-data/applicants/{id}        everything held on an applicant,
                                                         for them — a read of each case
    GET  /staff/v1/integration/events[?after=N&limit=L] the event outbox, oldest first,
                                        a page at a time (``next``: the ``after`` of
                                        the next page, absent on the last)
    GET  /staff/v1/integration/webhooks                 delivery state per target
    POST /staff/v1/integration/webhooks/retry           {target}: parked ones again

A read of personal data needs a purpose: the ``Tongban-Purpose`` header or the
``purpose`` query parameter (1..200 characters; otherwise 400 with reason
``purpose-required``). Each read is logged — who (the token's subject), when, why, which
case and applicant — before the answer is sent. The staff packet route
(``GET /staff/v1/packets/{id}``) shows a case packet's content too: a middleware logs
those reads, with the purpose if one is given.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay.cases.application import application_schema
from relay.cases.desk import CaseDesk
from relay.cases.errors import CaseError
from relay.cases.model import EventKind, thaw
from relay.cases.store import CaseRecord
from relay.http.body import limit_param, read_json_object, require_str
from relay.http.cases import problem_from_case
from relay.integration.store import IntegrationStore, Read
from relay.permissions import StaffAction, require
from relay.problem import Problem, ProblemCode
from relay.staff_auth import STAFF_KEY
from signing.certificates import is_node_id

__all__ = ["EVENTS_PAGE_MOST", "add_integration_routes", "case_result"]

EVENTS_PAGE_MOST = 1000
"""The most events a page of the event outbox holds (and how many when not asked)."""

PURPOSE_HEADER = "Tongban-Purpose"


def _purpose(request: web.Request, *, required: bool = True) -> str:
    purpose = request.headers.get(PURPOSE_HEADER) or request.query.get("purpose", "")
    purpose = purpose.strip()
    if not 0 < len(purpose) <= 200:
        if not required:
            return "（未说明）not given"
        raise Problem(
            400, ProblemCode.INVALID_REQUEST,
            f"reading personal data needs a purpose: the {PURPOSE_HEADER} header or"
            " ?purpose= (1-200 characters)",
            extra={"reason": "purpose-required"},
        )  # fmt: skip
    return purpose


def application_of(record: CaseRecord) -> dict[str, Any] | None:
    submit = next((e for e in record.case.events if e.kind is EventKind.SUBMIT), None)
    if submit is None or "application" not in submit.details:
        return None
    application: dict[str, Any] = thaw(submit.details["application"])
    return application


def case_result(record: CaseRecord) -> dict[str, Any]:
    """The handling result for the office's platform: decision, licence, documents."""
    case = record.case
    view = case.view
    decision: dict[str, Any] | None = None
    documents = []
    for e in case.events:
        if e.kind in (EventKind.DECIDE, EventKind.REJECT):
            decision = {
                "decision": e.details.get("decision", "reject"),
                "reason": e.details.get("reason"),
                "at": e.at.isoformat(),
            }
        if e.kind is EventKind.SURVEY_REPORT:
            documents.append({"kind": "survey-report", "at": e.at.isoformat(),
                              "outcome": e.details["outcome"]})  # fmt: skip
        if e.kind is EventKind.ISSUE_LICENCE:
            documents.append({"kind": "licence", "at": e.at.isoformat(),
                              "licence_number": e.details["licence_number"]})  # fmt: skip
    return {
        "case": case.header.case_id,
        "matter": case.header.matter,
        "state": view.state.value,
        "decision": decision,
        "licence": None
        if view.licence is None
        else {"number": view.licence_number, "credential": view.licence},
        "documents": documents,
    }


def add_integration_routes(
    app: web.Application, desk: CaseDesk, store: IntegrationStore, retry: Callable[[str], int]
) -> None:
    def log_read(request: web.Request, case_id: str, what: str, purpose: str) -> None:
        who = request[STAFF_KEY].subject
        store.log_read(Read(desk.now(), who, purpose, case_id, store.applicant_of(case_id), what))

    def get_record(case_id: str) -> CaseRecord:
        try:
            return desk.get(case_id)
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def schema(request: web.Request) -> web.Response:
        handling = request.query.get("handling", "")
        if not is_node_id(handling):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "?handling= must be a node id")
        mode = request.query.get("mode", "proxy_receipt")
        matter = request.match_info["matter"]
        try:
            terms = desk.terms(handling, matter, mode)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        body = application_schema(matter, terms.materials, terms.data_categories)
        return _json(body, content_type="application/schema+json")

    async def import_case(request: web.Request) -> web.Response:
        require(request, StaffAction.RECEIVE)
        body = await read_json_object(request)
        handling = require_str(body, "handling")
        if not is_node_id(handling):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'handling' must be a node id")
        application = body.get("application")
        if not isinstance(application, dict):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'application' must be an object")
        case_id = body.get("case_id")
        if case_id is not None and not isinstance(case_id, str):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'case_id' must be a string")
        items = application.get("case-materials", [])
        if not isinstance(items, list):  # the schema check below names it (422)
            items = []
        materials = [m["material"] for m in items if isinstance(m, dict) and "material" in m]
        try:
            opened = await desk.open_case(
                matter=require_str(body, "matter"), mode=body.get("mode") or "proxy_receipt",
                handling=handling, case_id=case_id,
                materials=[m for m in materials if isinstance(m, str)], application=application,
                replay=True,  # a retry of a lost answer under the platform's own case id
            )  # fmt: skip
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        case_id = opened.record.case.header.case_id
        return _json(
            {"case": case_id, "state": opened.record.case.state.value,
             "access_code": opened.access_code, "tracking_link": opened.tracking_link},
            status=201,
            headers={"Location": f"/staff/v1/cases/{case_id}", "Cache-Control": "no-store"},
        )  # fmt: skip

    async def result(request: web.Request) -> web.Response:
        require(request, StaffAction.READ)
        purpose = _purpose(request)
        record = get_record(request.match_info["case"])
        log_read(request, record.case.header.case_id, "result", purpose)
        return _json(case_result(record), headers={"Cache-Control": "no-store"})

    async def application(request: web.Request) -> web.Response:
        require(request, StaffAction.READ)
        purpose = _purpose(request)
        record = get_record(request.match_info["case"])
        content = application_of(record)
        log_read(request, record.case.header.case_id, "application", purpose)
        return _json({"case": record.case.header.case_id, "application": content},
                     headers={"Cache-Control": "no-store"})  # fmt: skip

    async def reads(request: web.Request) -> web.Response:
        require(request, StaffAction.PERSONAL_DATA)
        applicant = request.query.get("applicant")
        case_id = request.query.get("case")
        if not applicant and not case_id:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "give ?applicant= or ?case=")
        found = store.reads(applicant=applicant or None, case_id=None if applicant else case_id)
        return _json({"reads": [r.to_json() for r in found]})

    async def applicant_export(request: web.Request) -> web.Response:
        require(request, StaffAction.PERSONAL_DATA)
        purpose = _purpose(request)
        applicant = request.match_info["applicant"]
        cases = []
        for case_id in store.cases_of(applicant):
            record = get_record(case_id)
            log_read(request, case_id, "applicant-export", purpose)
            cases.append({**case_result(record), "application": application_of(record)})
        return _json(
            {"applicant": applicant, "cases": cases, "reads": [
                r.to_json() for r in store.reads(applicant=applicant)]},
            headers={"Cache-Control": "no-store"},
        )  # fmt: skip

    async def events(request: web.Request) -> web.Response:
        limit = limit_param(request, most=EVENTS_PAGE_MOST, default=EVENTS_PAGE_MOST)
        text = request.query.get("after", "0")
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST,
                "'after' must be the 'next' of the page before (a whole number)",
            )  # fmt: skip
        page = store.events_after(int(text), limit + 1)  # one more: is there a next page?
        body: dict[str, Any] = {"events": [event for _, event in page[:limit]]}
        if len(page) > limit:
            body["next"] = str(page[limit - 1][0])
        return _json(body)

    async def webhooks(request: web.Request) -> web.Response:
        return _json({"targets": store.delivery_status()})

    async def retry_parked(request: web.Request) -> web.Response:
        require(request, StaffAction.INTEGRATION)
        target = require_str(await read_json_object(request), "target", max_length=2048)
        if target not in store.target_urls():
            raise Problem(
                404, ProblemCode.NOT_FOUND,
                "no webhook target with that URL is configured ([[webhooks]] url)",
            )  # fmt: skip
        return _json({"target": target, "retried": retry(target)})

    @web.middleware
    async def packet_reads(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if (
            request.method == "GET"
            and request.path.startswith("/staff/v1/packets/")
            and response.status == 200
            and STAFF_KEY in request
        ):
            shown = json.loads(getattr(response, "text", "{}") or "{}")
            case_id = shown.get("packet", {}).get("case_id")
            if isinstance(case_id, str):
                log_read(request, case_id, "packet", _purpose(request, required=False))
        return response

    app.middlewares.append(packet_reads)
    app.router.add_get("/staff/v1/integration/schemas/{matter}", schema)
    app.router.add_post("/staff/v1/integration/cases", import_case)
    app.router.add_get("/staff/v1/integration/cases/{case}/result", result)
    app.router.add_get("/staff/v1/cases/{case}/application", application)
    app.router.add_get("/staff/v1/personal-data/reads", reads)
    app.router.add_get("/staff/v1/personal-data/applicants/{applicant}", applicant_export)
    app.router.add_get("/staff/v1/integration/events", events)
    app.router.add_get("/staff/v1/integration/webhooks", webhooks)
    app.router.add_post("/staff/v1/integration/webhooks/retry", retry_parked)


def _json(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:  # fmt: skip
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, headers=headers,
        content_type=content_type,
    )  # fmt: skip
