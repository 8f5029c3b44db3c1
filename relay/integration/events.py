"""Outbound events for an office's own systems (pure: case copies in, events out).

An :class:`IntegrationEvent` says that something happened a platform may act on. Its
``id`` is derived from what happened, never random, so the same happening always makes
the same id: the event outbox keeps it once (``INSERT OR IGNORE``) however often it is
derived, and a platform that sees an id twice knows it is the same event.

Types, when each is made, and its id (``N`` the node, ``C`` the case):

- ``case-created`` — a case appears here (opened at hand-in, or the partner's
  ``submit`` applied); ``N:case-created:C``
- ``partner-step-received`` — the partner's step is applied to our copy;
  ``N:step:C:<origin>:<seq>:<d>`` (``d``: 8 hex digits of the step's digest, so a step
  taken back and the one taken instead under the same ``seq`` have different ids)
- ``step-refused`` — the partner refused a packet of ours (a ``rejected`` receipt);
  ``N:step-refused:<packet id>``
- ``step-undelivered`` — a packet of ours was set aside before the partner took it
  (expired, parked, or dead behind one of its case that was);
  ``N:step-undelivered:<packet id>``
- ``sla-yellow``, ``sla-red`` — the statutory clock turned yellow (75 %) or red
  (overdue); ``N:sla-<colour>:C``
- ``survey-report-received``, ``licence-issued``, ``complaint-received`` — a survey
  report, the e-licence or an applicant's complaint (办不成事) is on the case, whichever
  office took the step; ``N:step:C:<origin>:<seq>:<d>``
- ``licence-revoked`` — this office revoked a licence it issued;
  ``N:licence-revoked:<number>``
- ``step-taken-back`` — a step of ours whose event a target already had was taken back
  (the relay refused to send it); ``N:step-taken-back:<that event's id>``

A step of the partner that is a survey report, licence or complaint is announced by its
specific type only. Events name the case and the step, never personal data: a platform
reads the content with a purpose (``GET /staff/v1/cases/{case}/application``), which is
logged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from relay.cases.model import Event, EventKind, thaw
from relay.cases.store import CaseRecord

__all__ = ["EventType", "IntegrationEvent", "events_of_change", "refused_event", "sla_event"]


class EventType(StrEnum):
    CASE_CREATED = "case-created"
    PARTNER_STEP_RECEIVED = "partner-step-received"
    STEP_REFUSED = "step-refused"
    SLA_YELLOW = "sla-yellow"
    SLA_RED = "sla-red"
    SURVEY_REPORT_RECEIVED = "survey-report-received"
    LICENCE_ISSUED = "licence-issued"
    LICENCE_REVOKED = "licence-revoked"
    COMPLAINT_RECEIVED = "complaint-received"
    STEP_TAKEN_BACK = "step-taken-back"
    STEP_UNDELIVERED = "step-undelivered"


_SPECIFIC: Mapping[EventKind, EventType] = {
    EventKind.SURVEY_REPORT: EventType.SURVEY_REPORT_RECEIVED,
    EventKind.ISSUE_LICENCE: EventType.LICENCE_ISSUED,
    EventKind.COMPLAIN: EventType.COMPLAINT_RECEIVED,
}


@dataclass(frozen=True)
class IntegrationEvent:
    id: str
    type: EventType
    case_id: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def body(self, node_id: str) -> dict[str, Any]:
        """The JSON a webhook target receives (docs/integration.md)."""
        return {
            "id": self.id,
            "type": self.type.value,
            "node": node_id,
            "at": self.at.isoformat(),
            "case": self.case_id,
            "data": dict(self.data),
        }


def events_of_change(
    node_id: str, old: CaseRecord | None, new: CaseRecord, at: datetime
) -> list[IntegrationEvent]:
    """The events a stored change of a case copy makes (``old`` None: a new case)."""
    case = new.case
    header = case.header
    common = {"matter": header.matter, "state": case.state.value}
    out: list[IntegrationEvent] = []
    if old is None:
        out.append(
            IntegrationEvent(
                f"{node_id}:case-created:{header.case_id}", EventType.CASE_CREATED,
                header.case_id, at,
                MappingProxyType({**common, "receiving": header.receiving,
                                  "handling": header.handling, "mode": header.mode}),
            )
        )  # fmt: skip
    known = set() if old is None else {e.ref for e in old.case.events}
    for event in case.events:
        if event.ref in known or event.kind is EventKind.SUBMIT:
            continue
        kind = _SPECIFIC.get(event.kind)
        if kind is None:
            if event.origin is case.me:
                continue  # our own step: the platform (or staff) took it
            kind = EventType.PARTNER_STEP_RECEIVED
        data: dict[str, Any] = {
            **common, "step": event.kind.value, "origin": event.origin.value, "seq": event.seq,
        }  # fmt: skip
        if event.kind is EventKind.ISSUE_LICENCE:
            data["licence_number"] = event.details["licence_number"]
        if event.kind is EventKind.DECIDE:
            data["decision"] = event.details["decision"]
        out.append(
            IntegrationEvent(
                step_event_id(node_id, header.case_id, event), kind, header.case_id, at,
                MappingProxyType(data),
            )
        )  # fmt: skip
    return out


def step_event_id(node_id: str, case_id: str, event: Event) -> str:
    """``N:step:C:<origin>:<seq>:<d>``: the same step always has the same id, and a step
    taken back and the one taken in its place (same ``seq``) have different ones."""
    facts = {"kind": event.kind.value, "at": event.at.isoformat(), "details": thaw(event.details)}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, ensure_ascii=False).encode())
    return f"{node_id}:step:{case_id}:{event.origin.value}:{event.seq}:{digest.hexdigest()[:8]}"


def taken_back_event(node_id: str, event_id: str, case_id: str, at: datetime) -> IntegrationEvent:
    """A step whose event a target already had was taken back: forget it."""
    return IntegrationEvent(
        f"{node_id}:step-taken-back:{event_id}", EventType.STEP_TAKEN_BACK, case_id, at,
        MappingProxyType({"event": event_id}),
    )  # fmt: skip


def refused_event(
    node_id: str,
    *,
    packet_id: str,
    case_id: str,
    action: str,
    reason: str,
    at: datetime,
    undelivered: bool = False,
) -> IntegrationEvent:
    """``step-refused`` (the partner's receipt rejected it), or with ``undelivered``
    ``step-undelivered`` (set aside before the partner took it: expired, parked, or
    behind a packet of its case that was)."""
    kind, name = (
        (EventType.STEP_UNDELIVERED, "step-undelivered")
        if undelivered
        else (EventType.STEP_REFUSED, "step-refused")
    )
    return IntegrationEvent(
        f"{node_id}:{name}:{packet_id}", kind, case_id, at,
        MappingProxyType({"packet": packet_id, "action": action, "reason": reason}),
    )  # fmt: skip


def sla_event(
    node_id: str, *, case_id: str, colour: str, matter: str, at: datetime
) -> IntegrationEvent:
    kind = EventType.SLA_RED if colour == "red" else EventType.SLA_YELLOW
    return IntegrationEvent(
        f"{node_id}:{kind.value}:{case_id}", kind, case_id, at,
        MappingProxyType({"matter": matter, "colour": colour}),
    )  # fmt: skip


def revoked_event(node_id: str, *, case_id: str, number: str, at: datetime) -> IntegrationEvent:
    return IntegrationEvent(
        f"{node_id}:licence-revoked:{number}", EventType.LICENCE_REVOKED, case_id, at,
        MappingProxyType({"licence_number": number}),
    )  # fmt: skip
