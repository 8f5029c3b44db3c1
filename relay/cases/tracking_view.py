"""The applicant's view of a case: what the public tracking page shows (zh default, en).

Only facts about the applicant's own case are in it: the steps and their times, which
office took each step (the office, never a person), the current state and what comes
next, the deadline (with ``provisional`` true when it is counted on holidays computed
from the statutory rules rather than the official arrangement), what is missing during a
correction, the licence number, the rating and complaints with their answers. Internal
fields (``note``, ``staff``, survey report references) never appear: each event kind has
an explicit list of public fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agreements.calendar import WorkingCalendar
from relay.cases.model import CaseState, EventKind, Office, thaw
from relay.cases.sla import case_clock, complaint_clock
from relay.cases.workflow import Case

__all__ = ["LANGUAGES", "OfficeNames", "public_view"]

LANGUAGES = ("zh", "en")
OfficeNames = Mapping[str, tuple[str, str]]  # node id -> (name_zh, name_en)

_PUBLIC_FIELDS: Mapping[EventKind, tuple[str, ...]] = {
    EventKind.SUBMIT: ("materials",),
    EventKind.REJECT: ("reason",),
    EventKind.REQUEST_CORRECTION: ("missing", "reason"),
    EventKind.SUPPLEMENT: ("supplied",),
    EventKind.SURVEY_REPORT: ("outcome",),
    EventKind.DECIDE: ("decision", "reason"),
    EventKind.ISSUE_LICENCE: ("licence_number",),
    EventKind.DELIVER: ("method",),
    EventKind.WITHDRAW: ("reason",),
    EventKind.RATE: ("rating", "comment"),
    EventKind.COMPLAIN: ("text",),
    EventKind.ANSWER_COMPLAINT: ("answer",),
}

_EVENT_LABELS: Mapping[EventKind, tuple[str, str]] = {
    EventKind.SUBMIT: ("收件并提交办理地", "Received and sent to the handling office"),
    EventKind.ACCEPT: ("受理", "Accepted"),
    EventKind.REJECT: ("不予受理", "Not accepted"),
    EventKind.REQUEST_CORRECTION: ("需要补正材料", "Correction requested"),
    EventKind.SUPPLEMENT: ("已补正材料", "Materials supplemented"),
    EventKind.REQUEST_SURVEY: ("安排现场勘查", "Site survey requested"),
    EventKind.SURVEY_REPORT: ("现场勘查完成", "Site survey reported"),
    EventKind.DECIDE: ("作出决定", "Decision made"),
    EventKind.ISSUE_LICENCE: ("电子证照已签发", "E-licence issued"),
    EventKind.DELIVER: ("证照已送达", "Licence delivered"),
    EventKind.CONCLUDE: ("办结", "Concluded"),
    EventKind.WITHDRAW: ("申请人撤回", "Withdrawn by the applicant"),
    EventKind.RATE: ("服务评价", "Service rated"),
    EventKind.COMPLAIN: ("办不成事反映", "Complaint raised"),
    EventKind.ANSWER_COMPLAINT: ("反映已答复", "Complaint answered"),
}

_STATE_LABELS: Mapping[CaseState, tuple[str, str]] = {
    CaseState.RECEIVED: ("已收件", "Received"),
    CaseState.SUBMITTED: ("办理地审查中", "Under review by the handling office"),
    CaseState.ACCEPTED: ("已受理，办理中", "Accepted, being handled"),
    CaseState.REJECTED: ("不予受理", "Not accepted"),
    CaseState.CORRECTION_REQUESTED: ("待补正材料", "Waiting for missing materials"),
    CaseState.SURVEY_REQUESTED: ("待现场勘查", "Waiting for the site survey"),
    CaseState.SURVEY_REPORTED: ("勘查完成，待决定", "Surveyed, waiting for the decision"),
    CaseState.APPROVED: ("准予许可，待签发证照", "Approved, licence being issued"),
    CaseState.DENIED: ("不予许可", "Not approved"),
    CaseState.LICENCE_ISSUED: ("证照已签发，待领取", "Licence issued, ready for collection"),
    CaseState.DELIVERED: ("证照已送达", "Licence delivered"),
    CaseState.CONCLUDED: ("已办结", "Concluded"),
    CaseState.WITHDRAWN: ("已撤回", "Withdrawn"),
}

# the coded values of public fields, by field (free text is shown as it was written)
_VALUE_LABELS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "decision": {"approve": ("准予许可", "approved"), "deny": ("不予许可", "not approved")},
    "outcome": {
        "pass": ("符合要求", "meets the requirements"),
        "fail": ("不符合要求", "does not meet the requirements"),
    },
    "rating": {"good": ("好评", "good"), "average": ("中评", "average"), "poor": ("差评", "poor")},
    "method": {
        "window": ("窗口领取", "collected at the window"),
        "post": ("邮寄送达", "by post"),
        "electronic": ("电子送达", "electronically"),
    },
}

_OFFICE_ROLE: Mapping[Office, tuple[str, str]] = {
    Office.RECEIVING: ("收件地", "receiving office"),
    Office.HANDLING: ("办理地", "handling office"),
}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def _details(kind: EventKind, details: Mapping[str, Any], lang: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _PUBLIC_FIELDS.get(kind, ()):
        if name in details:
            value = thaw(details[name])
            labels = _VALUE_LABELS.get(name, {})
            if isinstance(value, str) and value in labels:
                value = _pick(labels[value], lang)
            out[name] = value
    return out


def _office(case: Case, office: Office, names: OfficeNames, lang: str) -> dict[str, str]:
    node = case.header.node(office)
    name = names.get(node)
    return {
        "role": _pick(_OFFICE_ROLE[office], lang),
        "name": _pick(name, lang) if name else node,
    }


def public_view(
    case: Case,
    *,
    lang: str,
    now: datetime,
    calendar: WorkingCalendar,
    office_names: OfficeNames,
) -> dict[str, Any]:
    """The JSON the tracking page renders for the applicant of ``case``."""
    if lang not in LANGUAGES:
        lang = "zh"
    view = case.view
    steps = [
        {
            "n": i + 1,
            "event": entry.event.kind.value,
            "label": _pick(_EVENT_LABELS[entry.event.kind], lang),
            "at": entry.event.at.isoformat(),
            "office": _office(case, entry.event.origin, office_names, lang),
            "details": _details(entry.event.kind, entry.event.details, lang),
            "void": not entry.applied,
        }
        for i, entry in enumerate(view.timeline)
    ]
    sla = case_clock(view, limit=case.header.time_limit_working_days, calendar=calendar, now=now)
    complaint_clocks = [complaint_clock(c, calendar=calendar, now=now) for c in view.complaints]
    complaints = [
        {
            "at": c.at.isoformat(),
            "text": c.text,
            "answered_at": None if c.answered_at is None else c.answered_at.isoformat(),
            "answer": c.answer,
            "respond_by": _deadline(complaint_clocks[i].deadline),
            "provisional": complaint_clocks[i].provisional,
        }
        for i, c in enumerate(view.complaints)
    ]
    return {
        "lang": lang,
        "case": case.header.case_id,
        "matter": case.header.matter,
        "offices": {
            "receiving": _office(case, Office.RECEIVING, office_names, lang),
            "handling": _office(case, Office.HANDLING, office_names, lang),
        },
        "state": view.state.value,
        "state_label": _pick(_STATE_LABELS[view.state], lang),
        "steps": steps,
        "deadline": _deadline(sla.deadline),
        "clock": sla.state.value,
        "provisional": sla.provisional,
        "time_limit_working_days": case.header.time_limit_working_days,
        "missing": list(view.missing) if view.state is CaseState.CORRECTION_REQUESTED else [],
        "licence_number": view.licence_number,
        "licence": view.licence,
        "can_rate": view.state is CaseState.CONCLUDED and view.rating is None,
        "rating": None if view.rating is None else _details(EventKind.RATE, view.rating, lang),
        "can_complain": view.state is not CaseState.RECEIVED,
        "complaints": complaints,
    }


def _deadline(day: Any) -> str | None:
    return None if day is None else str(day.isoformat())
