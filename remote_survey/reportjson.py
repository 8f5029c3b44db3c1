"""JSON form of a :class:`~remote_survey.session.SurveyPlan` inside a survey report.

::

    {"session": ID, "case": ID, "matter": ID,
     "surveying_office": NODE, "requesting_office": NODE,
     "window": {"start_ms": INT, "end_ms": INT},
     "site": {"address": TEXT, "lat_e7": INT, "lon_e7": INT},
     "inspectors": [{"id": ID, "name": TEXT}, ...],
     "site_party": {"id": ID, "name": TEXT},
     "observers": [{"id": ID, "name": TEXT}, ...]}

The checklist item texts travel with the answers (``checklist`` of the report).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from remote_survey.entries import epoch_ms
from remote_survey.errors import MalformedReport
from remote_survey.geo import GeoPoint
from remote_survey.session import ChecklistItem, Participant, Site, SurveyPlan, TimeWindow

__all__ = ["from_epoch_ms", "plan_from_json", "plan_to_json"]

_PLAN_KEYS = {
    "session",
    "case",
    "matter",
    "surveying_office",
    "requesting_office",
    "window",
    "site",
    "inspectors",
    "site_party",
    "observers",
    "checklist",
}


def from_epoch_ms(ms: int) -> datetime:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise MalformedReport("times are integer milliseconds")
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def _person(p: Participant) -> dict[str, str]:
    return {"id": p.person_id, "name": p.name}


def plan_to_json(plan: SurveyPlan) -> dict[str, Any]:
    return {
        "session": plan.session_id,
        "case": plan.case_id,
        "matter": plan.matter,
        "surveying_office": plan.surveying_office,
        "requesting_office": plan.requesting_office,
        "window": {"start_ms": epoch_ms(plan.window.start), "end_ms": epoch_ms(plan.window.end)},
        "site": {
            "address": plan.site.address,
            "lat_e7": plan.site.location.lat_e7,
            "lon_e7": plan.site.location.lon_e7,
        },
        "inspectors": [_person(p) for p in plan.inspectors],
        "site_party": _person(plan.site_party),
        "observers": [_person(p) for p in plan.observers],
        "checklist": [{"item": i.item_id, "text": i.text} for i in plan.checklist],
    }


def _exact(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedReport(f"{what} must be an object with exactly {sorted(keys)}")
    return obj


def _people(items: Any, what: str) -> tuple[Participant, ...]:
    if not isinstance(items, list):
        raise MalformedReport(f"{what} must be an array")
    people = []
    for p in items:
        p = _exact(p, {"id", "name"}, what)
        people.append(Participant(p["id"], p["name"]))
    return tuple(people)


def plan_from_json(obj: Any) -> SurveyPlan:
    obj = _exact(obj, _PLAN_KEYS, "survey")
    window = _exact(obj["window"], {"start_ms", "end_ms"}, "survey.window")
    site = _exact(obj["site"], {"address", "lat_e7", "lon_e7"}, "survey.site")
    checklist = obj["checklist"]
    if not isinstance(checklist, list):
        raise MalformedReport("survey.checklist must be an array")
    return SurveyPlan(
        session_id=obj["session"],
        case_id=obj["case"],
        matter=obj["matter"],
        surveying_office=obj["surveying_office"],
        requesting_office=obj["requesting_office"],
        window=TimeWindow(from_epoch_ms(window["start_ms"]), from_epoch_ms(window["end_ms"])),
        inspectors=_people(obj["inspectors"], "survey.inspectors"),
        site_party=_people([obj["site_party"]], "survey.site_party")[0],
        observers=_people(obj["observers"], "survey.observers"),
        checklist=tuple(
            ChecklistItem(**dict(zip(("item_id", "text"), _pair(i), strict=True)))
            for i in checklist
        ),
        site=Site(site["address"], GeoPoint(site["lat_e7"], site["lon_e7"])),
    )


def _pair(item: Any) -> tuple[Any, Any]:
    item = _exact(item, {"item", "text"}, "survey.checklist item")
    return item["item"], item["text"]
