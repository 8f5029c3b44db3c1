"""Case data: states, offices, event kinds, the case header and events (all frozen).

An :class:`Event` is one step taken by one office. Its identity is ``(origin, seq)``:
each office numbers its own events 1, 2, 3, … ``seen`` says how many of the *other*
office's events the origin had applied when it acted, so ``(seq, seen)`` is a
two-entry vector clock and ``seq + seen`` a Lamport time that respects causality.

``details`` are checked per kind against :data:`DETAIL_FIELDS` (unknown keys are
refused) and held read-only; ``note`` and ``staff`` are internal fields every kind may
carry and that the public tracking view never shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from relay.cases.errors import MalformedEvent
from signing.certificates import is_node_id
from signing.encoding import canonical_json

__all__ = [
    "CONTENT_FORMAT",
    "DETAIL_FIELDS",
    "INTERNAL_FIELDS",
    "CaseHeader",
    "CaseState",
    "Event",
    "EventKind",
    "Office",
    "check_details",
    "freeze",
    "thaw",
]

CONTENT_FORMAT = "tongban-case-event/1"


class CaseState(StrEnum):
    RECEIVED = "received"  # 收件
    SUBMITTED = "submitted"  # 已提交办理地
    ACCEPTED = "accepted"  # 受理
    REJECTED = "rejected"  # 不予受理
    CORRECTION_REQUESTED = "correction_requested"  # 补正
    SURVEY_REQUESTED = "survey_requested"  # 勘查
    SURVEY_REPORTED = "survey_reported"
    APPROVED = "approved"  # 准予许可
    DENIED = "denied"  # 不予许可
    LICENCE_ISSUED = "licence_issued"  # 电子证照已签发
    DELIVERED = "delivered"  # 已送达
    CONCLUDED = "concluded"  # 办结
    WITHDRAWN = "withdrawn"  # 撤回


class Office(StrEnum):
    """The two offices of a case: the receiving office (收件地) and the handling one (办理地)."""

    RECEIVING = "receiving"
    HANDLING = "handling"

    @property
    def other(self) -> Office:
        return Office.HANDLING if self is Office.RECEIVING else Office.RECEIVING


class EventKind(StrEnum):
    SUBMIT = "submit"
    ACCEPT = "accept"
    REJECT = "reject"
    REQUEST_CORRECTION = "request-correction"
    SUPPLEMENT = "supplement"
    REQUEST_SURVEY = "request-survey"
    SURVEY_REPORT = "survey-report"
    DECIDE = "decide"
    ISSUE_LICENCE = "issue-licence"
    DELIVER = "deliver"
    CONCLUDE = "conclude"
    WITHDRAW = "withdraw"
    RATE = "rate"
    COMPLAIN = "complain"
    ANSWER_COMPLAINT = "answer-complaint"


INTERNAL_FIELDS = frozenset({"note", "staff"})

_STR, _STRS, _INT, _OBJ = "str", "strs", "int", "obj"
# kind -> {field: (type, required)}
DETAIL_FIELDS: Mapping[EventKind, Mapping[str, tuple[str, bool]]] = MappingProxyType(
    {
        EventKind.SUBMIT: {"materials": (_STRS, False), "application": (_OBJ, False)},
        EventKind.ACCEPT: {},
        EventKind.REJECT: {"reason": (_STR, True)},
        EventKind.REQUEST_CORRECTION: {"missing": (_STRS, True), "reason": (_STR, False)},
        EventKind.SUPPLEMENT: {"supplied": (_STRS, False)},
        EventKind.REQUEST_SURVEY: {"surveyor": (_STR, True)},
        EventKind.SURVEY_REPORT: {
            "outcome": (_STR, True),
            "report": (_STR, False),
            "verdict": (_STR, False),
        },
        EventKind.DECIDE: {"decision": (_STR, True), "reason": (_STR, False)},
        EventKind.ISSUE_LICENCE: {"licence": (_STR, True), "licence_number": (_STR, True)},
        EventKind.DELIVER: {"method": (_STR, False)},
        EventKind.CONCLUDE: {},
        EventKind.WITHDRAW: {"reason": (_STR, False)},
        EventKind.RATE: {"rating": (_STR, True), "comment": (_STR, False)},
        EventKind.COMPLAIN: {"text": (_STR, True)},
        EventKind.ANSWER_COMPLAINT: {"complaint": (_INT, True), "answer": (_STR, True)},
    }
)
_ENUMS: Mapping[tuple[EventKind, str], frozenset[str]] = {
    (EventKind.REQUEST_SURVEY, "surveyor"): frozenset(Office),
    (EventKind.SURVEY_REPORT, "outcome"): frozenset({"pass", "fail"}),
    (EventKind.SURVEY_REPORT, "verdict"): frozenset(
        {"pass", "pass_with_corrections", "fail", "convert_to_onsite"}
    ),
    (EventKind.DECIDE, "decision"): frozenset({"approve", "deny"}),
    (EventKind.RATE, "rating"): frozenset({"good", "average", "poor"}),
}
_MAX_TEXT = 2000
_MAX_LICENCE = 16384
_MAX_REPORT = 262144  # a survey-report's ``report``: text, or the sealed report (JWS)
_MAX_ITEMS = 100
_MAX_APPLICATION = 65536  # a submit's ``application`` (relay.cases.application), as JSON


def freeze(value: Any) -> Any:
    """A read-only deep copy of JSON-like data (dicts → mapping proxies, lists → tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-able data back from :func:`freeze`."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _check_field(kind: EventKind, name: str, typ: str, value: Any) -> None:
    limit = _MAX_LICENCE if name == "licence" else _MAX_TEXT
    if kind is EventKind.SURVEY_REPORT and name == "report":
        limit = _MAX_REPORT
    if typ == _STR:
        ok = isinstance(value, str) and 0 < len(value) <= limit
    elif typ == _INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    elif typ == _OBJ:  # its structure is checked against the agreement's schema
        ok = isinstance(value, Mapping) and len(canonical_json(thaw(value))) <= _MAX_APPLICATION
    else:
        ok = (
            isinstance(value, list | tuple)
            and len(value) <= _MAX_ITEMS
            and all(isinstance(v, str) and 0 < len(v) <= _MAX_TEXT for v in value)
        )
    if not ok:
        raise MalformedEvent(f"{kind}: field {name!r} must be {typ}")
    allowed = _ENUMS.get((kind, name))
    if allowed is not None and value not in allowed:
        raise MalformedEvent(f"{kind}: {name} must be one of {sorted(allowed)}")


def check_details(kind: EventKind, details: Mapping[str, Any]) -> Mapping[str, Any]:
    """``details`` validated for ``kind`` and frozen; raises :class:`MalformedEvent`."""
    spec = DETAIL_FIELDS[kind]
    for name, value in details.items():
        if name in INTERNAL_FIELDS:
            _check_field(kind, name, _STR, value)
        elif name in spec:
            _check_field(kind, name, spec[name][0], value)
        else:
            raise MalformedEvent(f"{kind}: unknown field {name!r}")
    for name, (_, required) in spec.items():
        if required and name not in details:
            raise MalformedEvent(f"{kind}: field {name!r} is required")
    if kind is EventKind.REQUEST_CORRECTION and not details["missing"]:
        raise MalformedEvent("request-correction must list what is missing")
    if kind is EventKind.DECIDE and details["decision"] == "deny" and "reason" not in details:
        raise MalformedEvent("a denial must give a reason")
    frozen: Mapping[str, Any] = freeze(dict(details))
    return frozen


@dataclass(frozen=True)
class CaseHeader:
    """What both copies of a case agree on from the start (sent with ``submit``).

    ``survey_required`` and ``time_limit_working_days`` come from the agreement's
    clause for the matter; each office takes them from its own copy of the agreement
    and refuses a ``submit`` whose header disagrees.
    """

    case_id: str
    matter: str
    mode: str
    receiving: str  # node id
    handling: str  # node id
    time_limit_working_days: int
    survey_required: bool

    def __post_init__(self) -> None:
        if not (0 < len(self.case_id) <= 64) or not self.case_id.isprintable():
            raise MalformedEvent("case id must be 1..64 printable characters")
        if not (is_node_id(self.receiving) and is_node_id(self.handling)):
            raise MalformedEvent("offices must be 6-digit node ids")
        if self.receiving == self.handling:
            raise MalformedEvent("the receiving and handling offices must differ")
        if not self.matter or not self.mode:
            raise MalformedEvent("matter and mode are required")
        if not 0 < self.time_limit_working_days <= 366:
            raise MalformedEvent("time limit must be 1..366 working days")

    def node(self, office: Office) -> str:
        return self.receiving if office is Office.RECEIVING else self.handling

    def office_of(self, node_id: str) -> Office:
        if node_id == self.receiving:
            return Office.RECEIVING
        if node_id == self.handling:
            return Office.HANDLING
        raise MalformedEvent(f"node {node_id} is not an office of case {self.case_id}")

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "handling": self.handling,
            "matter": self.matter,
            "mode": self.mode,
            "receiving": self.receiving,
            "survey_required": self.survey_required,
            "time_limit_working_days": self.time_limit_working_days,
        }

    @classmethod
    def from_json(cls, obj: Any) -> CaseHeader:
        try:
            if not isinstance(obj["survey_required"], bool):
                raise TypeError
            limit = obj["time_limit_working_days"]
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError
            texts = [obj[k] for k in ("case", "matter", "mode", "receiving", "handling")]
            if not all(isinstance(t, str) for t in texts):
                raise TypeError
        except (KeyError, TypeError):
            raise MalformedEvent("malformed case header") from None
        case_id, matter, mode, receiving, handling = texts
        return cls(case_id, matter, mode, receiving, handling, limit, obj["survey_required"])


@dataclass(frozen=True)
class Event:
    """One step of a case taken by ``origin`` at ``at`` (aware datetime, whole seconds)."""

    kind: EventKind
    origin: Office
    seq: int
    seen: int
    at: datetime
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.seq < 1 or self.seen < 0:
            raise MalformedEvent("seq must be >= 1 and seen >= 0")
        if self.at.tzinfo is None:
            raise MalformedEvent("event time must be timezone-aware")
        object.__setattr__(self, "at", self.at.astimezone(UTC).replace(microsecond=0))
        object.__setattr__(self, "details", check_details(self.kind, self.details))

    @property
    def ref(self) -> tuple[Office, int]:
        return (self.origin, self.seq)

    @property
    def lamport(self) -> int:
        return self.seq + self.seen

    def sort_key(self) -> tuple[int, int, int]:
        """Canonical order: Lamport time, then the handling office first, then seq."""
        return (self.lamport, 0 if self.origin is Office.HANDLING else 1, self.seq)

    def to_content(self, header: CaseHeader) -> dict[str, Any]:
        """The packet content carrying this event (docs/protocol.md §11)."""
        content: dict[str, Any] = {
            "format": CONTENT_FORMAT,
            "case": header.case_id,
            "event": self.kind.value,
            "origin": self.origin.value,
            "seq": self.seq,
            "seen": self.seen,
            "at": int(self.at.timestamp()),
            "details": thaw(self.details),
        }
        if self.kind is EventKind.SUBMIT:
            content["header"] = header.to_json()
        return content

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> Event:
        if content.get("format") != CONTENT_FORMAT:
            raise MalformedEvent(f"content format must be {CONTENT_FORMAT!r}")
        try:
            kind = EventKind(content["event"])
            origin = Office(content["origin"])
            seq, seen, at = content["seq"], content["seen"], content["at"]
            details = content.get("details", {})
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, seen, at)):
                raise TypeError
            if not isinstance(details, Mapping):
                raise TypeError
            when = datetime.fromtimestamp(at, UTC)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            raise MalformedEvent("malformed case event content") from None
        return cls(kind, origin, seq, seen, when, details)

    def same_as(self, other: Event) -> bool:
        return canonical_json(self._json()) == canonical_json(other._json())

    def _json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "origin": self.origin.value,
            "seq": self.seq,
            "seen": self.seen,
            "at": int(self.at.timestamp()),
            "details": thaw(self.details),
        }
