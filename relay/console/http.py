"""The console's routes on the staff listener: the page, its JSON, live updates.

Routes (all behind the staff listener's sign-in: a console session or a bearer token;
a browser without a session is sent to ``/login``; reads need ``read``, each step the
permission of its kind, :mod:`relay.permissions`)::

    GET  /                                      the console (single page, zh/en)
    GET  /console/{file}                        its scripts and style (no build step)
    GET  /staff/v1/console/me                   this office and the signed-in person
    GET  /staff/v1/console/queue                the work queue (?matter=&partner=&mine=1
                                                &turn=1&overdue=1): counts per state,
                                                cases sorted by deadline
    GET  /staff/v1/console/events               Server-Sent Events: ``changed`` whenever
                                                a case changes (a step of ours or a
                                                partner's packet applied)
    GET  /staff/v1/console/matters              what we may hand in: matter, handling
                                                offices, the agreed materials
    GET  /staff/v1/console/agreements           agreements in force: parties, matters,
                                                standards
    POST /staff/v1/console/cases                hand-in: {matter, handling, application,
                                                materials, attachments} → 201
    GET  /staff/v1/console/cases/{case}         the case page's data (with its sealed
                                                survey reports in readable form; their
                                                snapshots are GET /staff/v1/surveys/cases/
                                                {case}/snapshots/{sha256}, view-surveys)
    POST /staff/v1/console/cases/{case}/steps   take a step {event, details} (the
                                                person's name goes in ``staff``)
    POST /staff/v1/console/cases/{case}/licence seal and issue the licence {holder_id,
                                                holder_name, scope, valid_days, number}
    GET  /staff/v1/console/cases/{case}/licence.svg   the licence as a QR code
    GET  /staff/v1/console/attachments/{digest} an attachment's plaintext (?name=)
    POST /staff/v1/console/outbox/{packet}/resend     send a refused/parked step again
    POST /staff/v1/console/licences/{number}/status   suspend, reinstate or revoke with a
                                                reason {purpose, value, reason}: the
                                                status list changes (and is logged) as
                                                by POST /staff/v1/licences/{number}/status;
                                                the person and reason are kept in
                                                <data dir>/console/licence-status.jsonl
    POST /staff/v1/console/qr                   a link drawn as a QR code (SVG): {text}
    GET  /staff/v1/console/alerts               the alert board with who acknowledged what
    POST /staff/v1/console/alerts/{alert}/ack   a person takes an alert on ({note?}; kept
                                                in <data dir>/console/alert-acks.jsonl)

Nothing here decides: the queue, the checklist and the allowed steps come from
:mod:`relay.console.views`, every step goes through the case desk (the state machine
and the agreement), and case errors become problem documents in one place
(:func:`relay.http.cases.problem_from_case`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from agreements.actions import Action
from agreements.catalog import Catalog
from relay.alerts import ALERTS
from relay.cases.desk import CaseDesk, Opened
from relay.cases.errors import CaseError
from relay.cases.model import CaseHeader, CaseState, EventKind, thaw
from relay.cases.queue import SettledQueue
from relay.cases.sla import complaint_clock
from relay.cases.terms import AgreementTerms
from relay.console.acks import AlertAcks
from relay.console.licensing import LicenceDesk
from relay.console.records import append_record
from relay.console.views import (
    CONSOLE_ACTIONS,
    QueueFilter,
    available_actions,
    checklist,
    queue_view,
    refusals,
    timeline,
)
from relay.http.body import limit_param, read_json_object, require_str
from relay.http.cases import problem_from_case
from relay.http.encode import attachment_json
from relay.http.federation import DIGEST_PATTERN
from relay.http.licence_status import LicenceStatus
from relay.http.survey_view import readable_reports, snapshot_path
from relay.permissions import EVENT_ACTIONS, StaffAction, allowed, require
from relay.problem import Problem, ProblemCode
from relay.staff_auth import STAFF_KEY
from signing.certificates import is_node_id
from signing.errors import MalformedInput
from signing.status_list import StatusPurpose

__all__ = ["PAGE_PATHS", "add_console_routes"]

PAGE_PATHS = ("/",)
STATIC_PREFIX = "/console/"
_FILES = {
    "console.js": "text/javascript",
    "i18n.js": "text/javascript",
    "console.css": "text/css",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-src blob:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_KEEPALIVE_SECONDS = 15.0
CHANGED_EVERY_SECONDS = 1.0  # at most one `changed` event per stream in this time
QUEUE_FRESH_SECONDS = 5  # a work queue computed is shared for at most this long
_QUEUES_KEPT = 32
_log = logging.getLogger("tongban.relay.console")

_CLOSING = web.AppKey("console-closing", asyncio.Event)


def _static(name: str) -> bytes:
    return resources.files("relay.http.static").joinpath("console").joinpath(name).read_bytes()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.json_response(
        obj, status=status, dumps=_dumps, headers={"Cache-Control": "no-store"}
    )


PERSONAL_READ_EVERY = timedelta(hours=1)
"""How often a person's reads of one case's personal data in the console are logged."""
PERSONAL_READ_PURPOSE = "办理本案件（工作台案件页） handling the case (console case page)"
_READS_KEPT = 10_000  # (person, case) pairs whose last logged read is remembered


class Console:
    """What the console's handlers need, composed once per staff application."""

    def __init__(
        self,
        *,
        desk: CaseDesk,
        core: Any,
        terms: AgreementTerms,
        catalog: Catalog,
        licences: LicenceDesk,
        acks: AlertAcks | None = None,
        licence_status: LicenceStatus | None = None,
        records: Path | None = None,
        personal_reads: Callable[..., None] | None = None,
    ) -> None:
        self.desk = desk
        self.core = core
        self.terms = terms
        self.catalog = catalog
        self.licences = licences
        self.acks = acks or AlertAcks(None)
        self.licence_status = licence_status
        self.records = records  # folder of the console's own records (None: not kept)
        # the personal-data access log (who, case, purpose), and when each person's read
        # of a case was last written to it
        self.personal_reads = personal_reads
        self._read_logged: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        # work queues computed lately, by what they were computed from (see queue)
        self._queues: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()

    def queue(self, keep: QueueFilter, state: str, limit: int) -> dict[str, Any]:
        """The work queue for these filters. Every open console asks again after each
        change it is told of: consoles asking with the same filters, for the same cases
        (the desk's change generation) within the same few seconds, share one
        computation instead of each reading every case's row again. Changes made
        elsewhere (another worker) show within :data:`QUEUE_FRESH_SECONDS`."""
        desk = self.desk
        now = desk.now()
        key = (desk.generation, int(now.timestamp() // QUEUE_FRESH_SECONDS), keep, state, limit)
        body = self._queues.get(key)
        if body is None:
            calendar = desk.calendar

            # the cases in progress are read and judged one by one; the settled ones
            # (most of a node's cases after a few years) are counted on their index,
            # and only those the page can show are read
            def settled(room: Callable[[int, str], int | None]) -> SettledQueue:
                if keep.turn:  # a settled case waits for nobody
                    return SettledQueue({}, ())
                return desk.settled_queue(
                    matter=keep.matter, partner=keep.partner, mine=keep.mine,
                    overdue=keep.overdue, state=state, room=room,
                )  # fmt: skip

            body = queue_view(
                desk.queue_entries(settled=False),
                clock_of=lambda entry: entry.clock.case_clock(calendar, now),
                names=self.names,
                keep=keep,
                state=state,
                limit=limit,
                settled=settled,
            )
            self._queues[key] = body
            while len(self._queues) > _QUEUES_KEPT:
                self._queues.popitem(last=False)
        return body

    # -- names: never a code alone -----------------------------------------------------

    def matter_names(self, code: str) -> dict[str, str]:
        entry = self.catalog.get(code)
        if entry is None:
            return {"name_zh": code, "name_en": code}
        return {"name_zh": entry.name_zh, "name_en": entry.name_en}

    def office(self, node_id: str) -> dict[str, str]:
        zh, en = self.desk.office_names.get(node_id, (node_id, node_id))
        return {"id": node_id, "name_zh": zh, "name_en": en}

    def names(self, h: CaseHeader) -> dict[str, Any]:
        return {
            "matter_names": self.matter_names(h.matter),
            "receiving_office": self.office(h.receiving),
            "handling_office": self.office(h.handling),
        }

    # -- the case page -------------------------------------------------------------------

    def page_for(
        self, who: str, case_id: str, may: Callable[[EventKind], bool] = lambda kind: True
    ) -> dict[str, Any]:
        """The case page as ``who`` sees it; a page holding the applicant's personal data
        is a read of it, written to the personal-data access log (purpose: handling the
        case) once per person and case in :data:`PERSONAL_READ_EVERY` (the page asks
        again after every change, and the log would hold each refresh)."""
        page = self.case_page(case_id, may)
        if page["application"] and self.personal_reads is not None:
            now = self.desk.now()
            key = (who, case_id)
            last = self._read_logged.get(key)
            if last is None or now - last >= PERSONAL_READ_EVERY:
                try:
                    self.personal_reads(who, case_id, PERSONAL_READ_PURPOSE)
                except Exception:  # the page may answer a step already taken: never a 5xx
                    _log.exception("the console's read of case %s was not logged", case_id)
                    return page
                self._read_logged[key] = now
                self._read_logged.move_to_end(key)
                while len(self._read_logged) > _READS_KEPT:
                    self._read_logged.popitem(last=False)
        return page

    def case_page(
        self, case_id: str, may: Callable[[EventKind], bool] = lambda kind: True
    ) -> dict[str, Any]:
        """The case page's data; ``actions`` only lists steps the person ``may`` take."""
        desk, now = self.desk, self.desk.now()
        record = desk.get(case_id)
        case = record.case
        h = case.header
        clause = self.terms.clause(h.receiving, h.handling, h.matter, now)
        partner = h.node(case.me.other)

        def granted(action: Action) -> bool:
            return self.terms.permits(desk.node_id, partner, h.matter, action, h.mode, now)

        submit = next((e for e in case.events if e.kind is EventKind.SUBMIT), None)
        application = thaw(submit.details.get("application", {})) if submit is not None else {}
        return {
            **h.to_json(),
            **self.names(h),
            "me": case.me.value,
            "partner": partner,
            "state": case.state.value,
            "surveyor": None if case.view.surveyor is None else case.view.surveyor.value,
            "public_base": self.licences.public_base,
            "version": record.version,
            "opened_at": record.opened_at.isoformat(),
            "clock": desk.clock_of(case, now).to_json(),
            "application": application,
            "applicant": _applicant(application),
            "checklist": checklist(case, clause.materials if clause else ()),
            "survey_checklist": list(clause.survey_checklist) if clause else [],
            "missing": list(case.view.missing),
            "timeline": timeline(case),
            "actions": [
                a for a in available_actions(case, now, granted) if may(EventKind(a["event"]))
            ],
            "refused": refusals(case, self.core.list_outbox(case_id=case_id)),
            "incoming_refused": [
                {"packet_id": p.packet_id, "reason": p.outcome, "detail": p.detail}
                for p in desk.packets(case_id)
                if p.outcome not in ("applied", "duplicate", "not-a-case-event")
            ],
            "attachments": self._attachments(case_id),
            "licence_number": case.view.licence_number,
            "licence": case.view.licence,
            "complaints": [
                {
                    "seq": c.seq,
                    "at": c.at.isoformat(),
                    "text": c.text,
                    "answer": c.answer,
                    "answered_at": None if c.answered_at is None else c.answered_at.isoformat(),
                    "clock": complaint_clock(c, calendar=desk.calendar, now=now).to_json(),
                }
                for c in case.view.complaints
            ],
            "rating": None if case.view.rating is None else thaw(case.view.rating),
            "survey_reports": readable_reports(case, snapshot_path(case.header.case_id)),
        }

    def _attachments(self, case_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        packets = [(i.summary, "outgoing") for i in self.core.list_outbox(case_id=case_id)]
        packets += [(i.summary, "incoming") for i in self.core.list_inbox(case_id=case_id)]
        for summary, direction in packets:
            if summary.case_id != case_id:
                continue
            for info in summary.attachments:
                key = info.plain_digest or info.digest
                if key in seen:
                    continue
                seen.add(key)
                out.append({**attachment_json(info), "direction": direction})
        return out

    def handin_options(self) -> list[dict[str, Any]]:
        """Each matter we may receive for a handling office, with its agreed standard."""
        now, me = self.desk.now(), self.desk.node_id
        out = []
        for agreement in self.terms.active(now):
            for code, clause in sorted(agreement.clauses.items()):
                handlers = sorted(clause.roles.receive_for.get(me, frozenset()))
                if not handlers:
                    continue
                out.append(
                    {
                        "matter": code,
                        **self.matter_names(code),
                        "agreement": agreement.id,
                        "categories": sorted(agreement.data_categories),
                        "modes": sorted(m.value for m in clause.modes),
                        "handling": [self.office(n) for n in handlers],
                        "materials": [m.to_json() for m in clause.materials],
                        "time_limit_working_days": clause.time_limit_working_days,
                        "survey_required": clause.survey_required,
                    }
                )
        return out

    def agreements(self) -> list[dict[str, Any]]:
        out = []
        for a in self.terms.active(self.desk.now()):
            out.append(
                {
                    "id": a.id,
                    "version": a.version,
                    "title_zh": a.title_zh,
                    "title_en": a.title_en,
                    "valid_from": a.valid_from.isoformat(),
                    "valid_until": a.valid_until.isoformat(),
                    "parties": [p.to_json() for p in a.parties],
                    "matters": [
                        {**c.to_json(), **self.matter_names(code)}
                        for code, c in sorted(a.clauses.items())
                    ],
                }
            )
        return out


def _may(request: web.Request) -> Callable[[EventKind], bool]:
    """Whether the caller's roles let them take a step of that kind."""
    claims = request[STAFF_KEY]
    return lambda kind: allowed(claims, EVENT_ACTIONS[kind])


def _staff_name(request: web.Request) -> str:
    return request[STAFF_KEY].subject


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "yes")


_STATES = tuple(s.value for s in CaseState)
QUEUE_LIMIT = 200  # rows of the work queue sent at once unless asked for more
_QUEUE_MAX = 2000


def _applicant(application: Mapping[str, Any]) -> dict[str, Any]:
    """The applicant's identity and premises from an application, for the page."""
    out: dict[str, Any] = {}
    for category in ("applicant-identity", "business-premises"):
        part = application.get(category)
        if isinstance(part, dict):
            out.update(part)
    return out


def _application(body: Mapping[str, Any]) -> dict[str, Any] | None:
    application = body.get("application")
    if application is not None and not isinstance(application, dict):
        raise Problem(
            400,
            ProblemCode.INVALID_REQUEST,
            "'application' must be an object of data categories (docs/protocol.md 11.3)",
        )
    return application


def _digests(body: Mapping[str, Any]) -> list[str]:
    digests = body.get("attachments", [])
    if not isinstance(digests, list) or not all(
        isinstance(d, str) and re.fullmatch(DIGEST_PATTERN, d) for d in digests
    ):
        raise Problem(
            400, ProblemCode.INVALID_REQUEST, "'attachments' must list SHA-256 hex digests"
        )
    return digests


def add_console_routes(app: web.Application, console: Console) -> None:
    """Add the console page and its API to a staff application (before it starts)."""
    app[_CLOSING] = asyncio.Event()

    def applicant_access(opened: Opened) -> dict[str, Any]:
        """What the applicant takes away (a hand-in, a new access code): the case, its
        access code (shown this once) and the tracking link."""
        link = f"/track#link={opened.tracking_link}"
        return {
            "case": opened.record.case.header.case_id,
            "access_code": opened.access_code,
            "tracking_path": link,
            "tracking_url": f"{console.licences.public_base}{link}",
        }

    def seen(request: web.Request, case_id: str) -> dict[str, Any]:
        """The case page as the person asking sees it (their reads of personal data
        logged)."""
        return console.page_for(_staff_name(request), case_id, _may(request))

    async def closing(app: web.Application) -> None:
        app[_CLOSING].set()

    app.on_shutdown.append(closing)

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=_static("index.html"),
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
        )

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in _FILES:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no console file {name}")
        return web.Response(
            body=_static(name),
            content_type=_FILES[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def me(request: web.Request) -> web.Response:
        claims = request[STAFF_KEY]
        return _json(
            {
                "office": console.office(console.desk.node_id),
                "name": claims.subject,
                "roles": [r.value for r in claims.roles],
            }
        )

    async def queue(request: web.Request) -> web.Response:
        partner = request.query.get("partner", "")
        if partner and not is_node_id(partner):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'partner' must be a 6-digit node id")
        keep = QueueFilter(
            matter=request.query.get("matter", ""),
            partner=partner,
            mine=_staff_name(request) if _flag(request, "mine") else "",
            turn=_flag(request, "turn"),
            overdue=_flag(request, "overdue"),
        )
        state = request.query.get("state", "")
        if state and state not in _STATES:
            raise Problem(400, ProblemCode.INVALID_REQUEST, f"'state' must be one of {_STATES}")
        limit = limit_param(request, most=_QUEUE_MAX, default=QUEUE_LIMIT)
        return _json({**console.queue(keep, state, limit), "limit": limit})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        stop = request.app[_CLOSING]
        stopping = asyncio.ensure_future(stop.wait())
        desk = console.desk
        seen = desk.generation
        try:
            while not stop.is_set():
                change = asyncio.ensure_future(desk.wait_changed(_KEEPALIVE_SECONDS, seen))
                done, _ = await asyncio.wait(
                    {change, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    change.cancel()
                    break
                if not change.result():
                    await response.write(b": keep-alive\n\n")
                    continue
                seen = desk.generation
                stamp = json.dumps({"at": desk.now().isoformat(), "generation": seen})
                await response.write(f"event: changed\ndata: {stamp}\n\n".encode())
                # the changes of the next moment go out as one event after it: a backlog
                # applied packet by packet does not make every console read its queue
                # again per packet
                await asyncio.wait({stopping}, timeout=CHANGED_EVERY_SECONDS)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stopping.cancel()
        return response

    async def matters(request: web.Request) -> web.Response:
        return _json({"matters": console.handin_options()})

    async def agreements(request: web.Request) -> web.Response:
        return _json({"agreements": console.agreements()})

    async def hand_in(request: web.Request) -> web.Response:
        require(request, StaffAction.RECEIVE)
        body = await read_json_object(request)
        handling = require_str(body, "handling")
        if not is_node_id(handling):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'handling' must be a node id")
        materials = body.get("materials", [])
        if not isinstance(materials, list) or not all(isinstance(m, str) for m in materials):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'materials' must list strings")
        try:
            opened = await console.desk.open_case(
                matter=require_str(body, "matter"),
                mode=body.get("mode") or "proxy_receipt",
                handling=handling,
                materials=materials,
                application=_application(body),
                attachments=_digests(body),
            )
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        return _json(applicant_access(opened), status=201)

    async def case_page(request: web.Request) -> web.Response:
        try:
            return _json(seen(request, request.match_info["case"]))
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def step(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        try:
            kind = EventKind(require_str(body, "event"))
        except ValueError:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "unknown 'event'") from None
        require(request, EVENT_ACTIONS[kind])
        if kind not in CONSOLE_ACTIONS:  # a rating or a complaint: the applicant's own
            raise Problem(
                403,
                ProblemCode.FORBIDDEN,
                f"{kind.value!r} is the applicant's own step, taken on the tracking page",
            )
        if kind is EventKind.ISSUE_LICENCE:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "a licence is issued through …/licence")
        details = body.get("details", {})
        if not isinstance(details, dict):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'details' must be an object")
        details = {**details, "staff": _staff_name(request)}
        try:
            await console.desk.act(request.match_info["case"], kind, details, _digests(body))
            return _json(seen(request, request.match_info["case"]))
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def access_code(request: web.Request) -> web.Response:
        """A new access code for an applicant who lost theirs (the old one stops working)."""
        require(request, StaffAction.RECEIVE)
        case_id = request.match_info["case"]
        try:
            opened = await console.desk.reissue_access_code(case_id)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        return _json(applicant_access(opened), status=201)

    async def licence(request: web.Request) -> web.Response:
        require(request, StaffAction.LICENCE)
        body = await read_json_object(request)
        case_id = request.match_info["case"]
        try:
            await console.licences.issue(case_id, body, staff=_staff_name(request))
            return _json(seen(request, case_id), status=201)
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def licence_svg(request: web.Request) -> web.Response:
        try:
            record = console.desk.get(request.match_info["case"])
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        token = record.case.view.licence
        if token is None:
            raise Problem(404, ProblemCode.NOT_FOUND, "this case has no licence yet")
        svg = await asyncio.to_thread(console.licences.qr_svg, token, request.match_info["case"])
        return web.Response(body=svg, content_type="image/svg+xml")

    async def qr(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        text = require_str(body, "text", max_length=4000)
        if not text.isascii():
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'text' must be ASCII (a link)")
        try:
            svg = await asyncio.to_thread(console.licences.text_qr_svg, text)
        except MalformedInput as exc:  # longer than one QR code holds
            raise Problem(413, ProblemCode.BODY_TOO_LARGE, str(exc)) from None
        return web.Response(body=svg, content_type="image/svg+xml")

    async def attachment(request: web.Request) -> web.StreamResponse:
        """An attachment of the case named by ``?case=`` (an applicant's scan: a read of
        their personal data, logged as the case page's are, each time)."""
        digest = request.match_info["digest"]
        name = request.query.get("name", "") or digest[:12]
        case_id = request.query.get("case", "")
        held = {
            k for a in console._attachments(case_id) for k in (a["digest"], a.get("plain_digest"))
        }
        if not case_id or digest not in held:
            raise Problem(404, ProblemCode.NOT_FOUND, "no such attachment in ?case=")
        if console.personal_reads is not None:
            console.personal_reads(
                _staff_name(request), case_id, PERSONAL_READ_PURPOSE, "attachment"
            )
        chunks = console.core.open_attachment(digest)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": _disposition(name),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        first = await anext(chunks, b"")  # not-found errors before the headers go out
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def alerts(request: web.Request) -> web.Response:
        board = request.app[ALERTS].current(console.desk.now())
        out = []
        for alert in board:
            ack = console.acks.of(alert.id)
            out.append({**alert.to_json(), "acknowledged": None if ack is None else ack.to_json()})
        return _json({"alerts": out})

    async def acknowledge(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > 500:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'note' must be a text of 0..500")
        alert_id = request.match_info["alert"]
        standing = {a.id for a in request.app[ALERTS].current(console.desk.now())}
        if alert_id not in standing:
            raise Problem(404, ProblemCode.NOT_FOUND, "no such standing alert")
        ack = console.acks.acknowledge(alert_id, _staff_name(request), console.desk.now(), note)
        return _json(ack.to_json(), status=201)

    async def licence_status(request: web.Request) -> web.Response:
        require(request, StaffAction.LICENCE)
        if console.licence_status is None:
            raise Problem(404, ProblemCode.NOT_FOUND, "this node publishes no status lists")
        body = await read_json_object(request)
        try:
            purpose = StatusPurpose(require_str(body, "purpose"))
        except ValueError:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, "'purpose' is revocation or suspension"
            ) from None
        value = body.get("value")
        if not isinstance(value, bool):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'value' must be true or false")
        reason = require_str(body, "reason", max_length=500)
        number = request.match_info["number"]
        records = console.records

        def record(log_index: int) -> None:  # in the change's transaction: both or neither
            if records is not None:
                append_record(
                    records / "licence-status.jsonl",
                    {
                        "number": number, "purpose": purpose.value, "value": value,
                        "reason": reason, "person": _staff_name(request),
                        "at": console.desk.now().isoformat(), "log_index": log_index,
                    },
                )  # fmt: skip

        try:
            answer = console.licence_status.change(number, purpose, value, record=record)
        except MalformedInput as exc:
            raise Problem(409, ProblemCode.CONFLICT, str(exc)) from None
        return _json({**answer, "reason": reason})

    async def resend(request: web.Request) -> web.Response:
        claims = request[STAFF_KEY]
        acting = (StaffAction.RECEIVE, StaffAction.DECIDE, StaffAction.LICENCE)
        if not any(allowed(claims, a) for a in acting):
            require(request, StaffAction.RECEIVE)  # the 403 naming what is needed
        summary = await console.core.resend(request.match_info["packet"])
        return _json({"packet_id": summary.packet_id}, status=201)

    base = "/staff/v1/console"
    for path in PAGE_PATHS:
        app.router.add_get(path, page)
    app.router.add_get(STATIC_PREFIX + "{file}", static)
    app.router.add_get(f"{base}/me", me)
    app.router.add_get(f"{base}/queue", queue)
    app.router.add_get(f"{base}/events", events)
    app.router.add_get(f"{base}/matters", matters)
    app.router.add_get(f"{base}/agreements", agreements)
    app.router.add_post(f"{base}/cases", hand_in)
    app.router.add_get(f"{base}/cases/{{case}}", case_page)
    app.router.add_post(f"{base}/cases/{{case}}/steps", step)
    app.router.add_post(f"{base}/cases/{{case}}/access-code", access_code)
    app.router.add_post(f"{base}/cases/{{case}}/licence", licence)
    app.router.add_get(f"{base}/cases/{{case}}/licence.svg", licence_svg)
    app.router.add_get(f"{base}/attachments/{{digest:{DIGEST_PATTERN}}}", attachment)
    app.router.add_post(f"{base}/outbox/{{packet}}/resend", resend)
    app.router.add_get(f"{base}/alerts", alerts)
    app.router.add_post(f"{base}/qr", qr)
    app.router.add_post(f"{base}/licences/{{number}}/status", licence_status)
    app.router.add_post(f"{base}/alerts/{{alert}}/ack", acknowledge)


def _disposition(name: str) -> str:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
