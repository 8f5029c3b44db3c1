"""A case's sealed survey reports in readable form, and their snapshots, for staff.

Routes (staff listener; under ``/staff/v1/surveys`` so they need the ``view-surveys``
permission, :mod:`relay.permissions`)::

    GET /staff/v1/surveys/cases/{case}/reports
            every sealed report the case carries (its ``survey-report`` events), as
            the console shows it: verdict, outcome, live span, inspectors, site, each
            checklist item with its text, answer, note and linked snapshots, remarks,
            the guard, the geolocation summary, challenges and interruptions, and the
            snapshots with their thumbnail paths
    GET /staff/v1/surveys/cases/{case}/snapshots/{sha256}
            one snapshot image a report of the case names (PNG or JPEG), read from the
            case's survey-report packet; served only when its bytes hash to the
            SHA-256 the signed report states

A report is shown as the case event carries it: the surveying office verified it
before sending (:func:`relay.http.survey_cases.send_report`) and the requesting office
admitted it (:mod:`relay.http.survey_admission`). :func:`readable_reports` is pure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from relay.cases.desk import CaseDesk
from relay.cases.errors import CaseError
from relay.cases.model import EventKind
from relay.cases.workflow import Case
from relay.core.errors import NotFound
from relay.http.cases import problem_from_case
from relay.problem import Problem, ProblemCode
from remote_survey.errors import SurveyError
from remote_survey.report_model import ChecklistAnswer, SurveyReport
from signing.encoding import b64url_decode
from signing.errors import SigningError

__all__ = ["add_survey_view_routes", "readable_reports", "snapshot_path", "snapshot_type"]

SNAPSHOT_MAX = 16 << 20  # a snapshot is one still picture
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
BASE = "/staff/v1/surveys/cases"


def snapshot_type(name: str) -> str | None:
    """The image type of a snapshot file name (``None``: not an image we show)."""
    dot = name.rfind(".")
    return _IMAGE_TYPES.get(name[dot:].lower()) if dot >= 0 else None


def snapshot_path(case_id: str) -> Callable[[str], str]:
    """The staff path of a snapshot of ``case_id``, by its SHA-256."""
    return lambda sha: f"{BASE}/{quote(case_id, safe='')}/snapshots/{sha}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _report_of(token: str) -> SurveyReport | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return SurveyReport.from_payload(b64url_decode(parts[1]))
    except (SigningError, SurveyError):
        return None


def _answer(a: ChecklistAnswer, texts: dict[str, str]) -> dict[str, Any]:
    return {
        "item": a.item_id,
        "text": texts.get(a.item_id, a.item_id),
        "answer": a.answer.value,
        "note": a.note,
        "snapshots": list(a.snapshots),
    }


def _readable(report: SurveyReport, at: datetime, thumb: Callable[[str], str]) -> dict[str, Any]:
    plan = report.plan
    people = {p.person_id: p.name for p in (*plan.inspectors, plan.site_party, *plan.observers)}
    texts = {i.item_id: i.text for i in plan.checklist}
    ev = report.evidence
    snapshots = [
        {
            "name": s.name, "sha256": s.sha256, "size": s.size, "at": _iso(s.t_ms),
            "by": people.get(s.by, s.by), "image": snapshot_type(s.name) is not None,
            "thumbnail": thumb(s.sha256) if snapshot_type(s.name) else None,
        }
        for s in ev.snapshots
    ]  # fmt: skip
    challenges = [c.result for c in ev.challenges]
    return {
        "session": plan.session_id,
        "received_at": at.isoformat(),
        "verdict": report.verdict.value,
        "outcome": report.outcome.value,
        "start": _iso(report.start_ms),
        "end": _iso(report.end_ms),
        "issued": _iso(report.issued_ms),
        "surveying_office": plan.surveying_office,
        "requesting_office": plan.requesting_office,
        "inspectors": [p.name for p in plan.inspectors],
        "site_party": plan.site_party.name,
        "site_address": plan.site.address,
        "checklist": [_answer(a, texts) for a in report.answers],
        "remarks": report.remarks,
        "guard": None if report.guard is None else report.guard.to_json(),
        "geolocation": ev.geolocation.to_json(),
        "challenges": {
            "issued": len(challenges),
            "confirmed": challenges.count("confirmed"),
            "failed": challenges.count("failed"),
        },
        "interruptions": len(ev.interruptions),
        "segments": len(ev.segments),
        "snapshots": snapshots,
    }


def readable_reports(case: Case, thumb: Callable[[str], str]) -> list[dict[str, Any]]:
    """The sealed reports of ``case``'s survey-report events, oldest first;
    ``thumb(sha256)`` gives a snapshot's thumbnail path. A survey result typed in by
    staff (no sealed report) is not listed."""
    out = []
    for event in case.events:
        if event.kind is not EventKind.SURVEY_REPORT:
            continue
        token = event.details.get("report")
        report = _report_of(token) if isinstance(token, str) else None
        if report is not None and report.plan.case_id == case.header.case_id:
            out.append(_readable(report, event.at, thumb))
    return out


def add_survey_view_routes(
    app: web.Application, running: Callable[[], tuple[CaseDesk, Any] | None]
) -> None:
    """Add the routes; ``running()`` gives the node's case desk and relay core once
    they run (``None`` before)."""
    base = BASE

    def desk_and_core() -> tuple[CaseDesk, Any]:
        found = running()
        if found is None:
            raise Problem(503, ProblemCode.SERVICE_UNAVAILABLE, "the case layer is not running yet")
        return found

    def case_of(request: web.Request) -> Case:
        try:
            return desk_and_core()[0].get(request.match_info["case"]).case
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def reports(request: web.Request) -> web.Response:
        case = case_of(request)
        body = {"case": case.header.case_id,
                "reports": readable_reports(case, snapshot_path(case.header.case_id))}  # fmt: skip
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def snapshot(request: web.Request) -> web.Response:
        case = case_of(request)
        sha = request.match_info["sha256"]
        named = [
            s
            for r in readable_reports(case, snapshot_path(case.header.case_id))
            for s in r["snapshots"]
            if s["sha256"] == sha and s["image"]
        ]
        if not named:
            raise Problem(404, ProblemCode.NOT_FOUND, "no such snapshot in this case's reports")
        data = await _snapshot_bytes(desk_and_core()[1], case.header.case_id, named[0]["name"], sha)
        media_type = snapshot_type(named[0]["name"])
        assert media_type is not None
        return web.Response(
            body=data,
            content_type=media_type,
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
                     "Content-Security-Policy": "default-src 'none'"},
        )  # fmt: skip

    app.router.add_get(f"{base}/{{case}}/reports", reports)
    app.router.add_get(f"{base}/{{case}}/snapshots/{{sha256:[0-9a-f]{{64}}}}", snapshot)


async def _snapshot_bytes(core: Any, case_id: str, name: str, sha: str) -> bytes:
    """The snapshot ``name`` from the case's packets, checked against ``sha``."""
    infos = [(i.summary, i.summary.attachments) for i in core.list_outbox(case_id=case_id)]
    infos += [(i.summary, i.summary.attachments) for i in core.list_inbox(case_id=case_id)]
    for summary, attachments in infos:
        if summary.case_id != case_id:
            continue
        for info in attachments:
            if info.name != name:
                continue
            for digest in dict.fromkeys(d for d in (info.plain_digest, info.digest) if d):
                data = await _read(core, digest)
                if data is not None and hashlib.sha256(data).hexdigest() == sha:
                    return data
    raise Problem(404, ProblemCode.NOT_FOUND, "the snapshot's file is not held on this node")


async def _read(core: Any, digest: str) -> bytes | None:
    if not _HEX64.fullmatch(digest):
        return None
    data = bytearray()
    try:
        async for chunk in core.open_attachment(digest):
            data += chunk
            if len(data) > SNAPSHOT_MAX:
                return None
    except NotFound:
        return None
    return bytes(data)
