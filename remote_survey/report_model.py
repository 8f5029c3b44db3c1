"""The survey report as data: checklist answers, verdict, outcome and evidence manifest.

:class:`SurveyReport` cannot be built inconsistent (every checklist item answered once,
in order; snapshot links that exist; time ranges inside the live span; a verdict that
agrees with the answers and the outcome). Its canonical JSON is the payload the
surveying office seals (``docs/protocol.md`` §10.6); :meth:`SurveyReport.from_payload`
parses and re-checks it, refusing anything that is not byte-identical to its canonical
form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from remote_survey.errors import MalformedReport, SurveyError
from remote_survey.manifest import EvidenceManifest
from remote_survey.reportjson import plan_from_json, plan_to_json
from remote_survey.session import SurveyPlan, SurveyState
from signing.encoding import canonical_json

__all__ = [
    "GUARDS",
    "OUTCOMES",
    "PASSING",
    "REPORT_TYP",
    "REPORT_TYPE",
    "REPORT_VERSION",
    "Answer",
    "ChecklistAnswer",
    "Guard",
    "SurveyReport",
    "Verdict",
]

REPORT_TYP = "tongban-survey-report+jws"
REPORT_TYPE = "tongban-survey-report"
REPORT_VERSION = 1
GUARDED_VERSION = 2  # a report that carries a ``guard`` (a pass signed despite missing proof)
GUARDS = ("location", "challenge")


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    PASS_WITH_CORRECTIONS = "pass_with_corrections"  # noqa: S105
    FAIL = "fail"
    CONVERT_TO_ONSITE = "convert_to_onsite"


PASSING = (Verdict.PASS, Verdict.PASS_WITH_CORRECTIONS)


class Answer(StrEnum):
    PASS = "pass"  # noqa: S105
    FAIL = "fail"
    NOTE = "note"


@dataclass(frozen=True)
class ChecklistAnswer:
    """One checklist item answered, linked to snapshot digests and a time range."""

    item_id: str
    answer: Answer
    note: str = ""
    snapshots: tuple[str, ...] = ()
    from_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "answer", Answer(self.answer))
        except ValueError:
            raise MalformedReport(f"item {self.item_id}: unknown answer {self.answer!r}") from None
        if not isinstance(self.snapshots, tuple) or not all(
            isinstance(h, str) for h in self.snapshots
        ):
            raise MalformedReport(f"item {self.item_id}: snapshots are SHA-256 hex strings")
        if not isinstance(self.note, str) or len(self.note) > 4096:
            raise MalformedReport(f"item {self.item_id}: the note must be text")
        if self.answer is not Answer.PASS and not self.note.strip():
            raise MalformedReport(f"item {self.item_id}: a {self.answer} answer needs a note")
        if (self.from_ms is None) != (self.until_ms is None):
            raise MalformedReport(f"item {self.item_id}: a time range needs both ends")
        if self.from_ms is not None and self.until_ms is not None:
            for v in (self.from_ms, self.until_ms):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise MalformedReport(f"item {self.item_id}: times are non-negative ms")
            if self.until_ms < self.from_ms:
                raise MalformedReport(f"item {self.item_id}: the time range ends before it starts")

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item_id,
            "answer": self.answer.value,
            "note": self.note,
            "snapshots": list(self.snapshots),
            "from_ms": self.from_ms,
            "until_ms": self.until_ms,
        }


OUTCOMES = (SurveyState.COMPLETED, SurveyState.CONVERTED_TO_ONSITE)


@dataclass(frozen=True)
class Guard:
    """What a pass verdict was signed without, and the inspector's written reason.

    ``missing`` lists, in :data:`GUARDS` order, ``location`` (no fix of the site device
    within the configured distance while live) and/or ``challenge`` (no challenge both
    acknowledged by the site party and confirmed by the inspector).
    """

    missing: tuple[str, ...]
    reason: str

    def __post_init__(self) -> None:
        if (
            not isinstance(self.missing, tuple)
            or not self.missing
            or list(self.missing) != [g for g in GUARDS if g in self.missing]
        ):
            raise MalformedReport(f"guard.missing is a non-empty ordered subset of {GUARDS}")
        if not isinstance(self.reason, str) or not self.reason.strip() or len(self.reason) > 4096:
            raise MalformedReport("guard.reason is the inspector's written reason")

    def to_json(self) -> dict[str, Any]:
        return {"missing": list(self.missing), "reason": self.reason}


@dataclass(frozen=True)
class SurveyReport:
    """A complete, self-consistent survey report (invalid combinations cannot be built)."""

    plan: SurveyPlan
    outcome: SurveyState
    start_ms: int
    end_ms: int
    answers: tuple[ChecklistAnswer, ...]
    verdict: Verdict
    remarks: str
    evidence: EvidenceManifest
    issued_ms: int
    guard: Guard | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "outcome", SurveyState(self.outcome))
            object.__setattr__(self, "verdict", Verdict(self.verdict))
        except ValueError as exc:
            raise MalformedReport(str(exc)) from None
        for name in ("start_ms", "end_ms", "issued_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MalformedReport(f"{name} must be a non-negative integer")
        if not isinstance(self.remarks, str) or len(self.remarks) > 4096:
            raise MalformedReport("remarks must be text of at most 4096 characters")
        if self.outcome not in OUTCOMES:
            raise MalformedReport(f"no report for a session that is {self.outcome}")
        if self.outcome is SurveyState.CONVERTED_TO_ONSITE and (
            self.verdict is not Verdict.CONVERT_TO_ONSITE
        ):
            raise MalformedReport("a session converted to on-site has that verdict")
        if self.end_ms < self.start_ms or self.issued_ms < self.end_ms:
            raise MalformedReport("the live span must end after it starts, before issue")
        items = [i.item_id for i in self.plan.checklist]
        answered = [a.item_id for a in self.answers]
        if answered != items:
            raise MalformedReport(
                f"every checklist item is answered once, in order: expected {items}, got {answered}"
            )
        snapshots = {s.sha256 for s in self.evidence.snapshots}
        for a in self.answers:
            unknown = [h for h in a.snapshots if h not in snapshots]
            if unknown:
                raise MalformedReport(f"item {a.item_id} links unknown snapshots {unknown}")
            if (
                a.from_ms is not None
                and a.until_ms is not None
                and not (self.start_ms <= a.from_ms and a.until_ms <= self.end_ms)
            ):
                raise MalformedReport(f"item {a.item_id}: time range outside the session")
        if self.verdict is Verdict.PASS and any(a.answer is Answer.FAIL for a in self.answers):
            raise MalformedReport("a pass verdict cannot have a failed checklist item")
        if self.guard is not None and self.verdict not in PASSING:
            raise MalformedReport("only a pass verdict carries a guard")

    def to_json(self) -> dict[str, Any]:
        guarded = {} if self.guard is None else {"guard": self.guard.to_json()}
        return {
            "type": REPORT_TYPE,
            "v": REPORT_VERSION if self.guard is None else GUARDED_VERSION,
            **guarded,
            "survey": {
                **plan_to_json(self.plan),
                "outcome": self.outcome.value,
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
            },
            "checklist": [a.to_json() for a in self.answers],
            "verdict": self.verdict.value,
            "remarks": self.remarks,
            "evidence": self.evidence.to_json(),
            "issued_ms": self.issued_ms,
        }

    def payload(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_payload(cls, payload: bytes) -> SurveyReport:
        try:
            obj = json.loads(payload)
        except ValueError:
            raise MalformedReport("the report payload is not JSON") from None
        try:
            report = _report_from_json(obj)
        except SurveyError as exc:
            raise MalformedReport(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedReport(f"the report has a missing or malformed member: {exc}") from None
        if report.payload() != payload:
            raise MalformedReport("the report payload is not in canonical form")
        return report


def _report_from_json(obj: Any) -> SurveyReport:
    keys = {"type", "v", "survey", "checklist", "verdict", "remarks", "evidence", "issued_ms"}
    version = obj.get("v") if isinstance(obj, dict) else None
    if version == GUARDED_VERSION:
        keys.add("guard")
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedReport(f"a report is an object with exactly {sorted(keys)}")
    if obj["type"] != REPORT_TYPE or version not in (REPORT_VERSION, GUARDED_VERSION):
        raise MalformedReport("not a version 1 or 2 tongban survey report")
    guard = None
    if version == GUARDED_VERSION:
        g = obj["guard"]
        if not isinstance(g, dict) or set(g) != {"missing", "reason"}:
            raise MalformedReport("guard is an object with exactly ['missing', 'reason']")
        guard = Guard(tuple(g["missing"]), g["reason"])
    survey = dict(obj["survey"])
    outcome, start_ms, end_ms = survey.pop("outcome"), survey.pop("start_ms"), survey.pop("end_ms")
    plan = plan_from_json(survey)
    answers = []
    for a in obj["checklist"]:
        answers.append(
            ChecklistAnswer(
                item_id=a["item"],
                answer=a["answer"],
                note=a["note"],
                snapshots=tuple(a["snapshots"]),
                from_ms=a["from_ms"],
                until_ms=a["until_ms"],
            )
        )
    return SurveyReport(
        plan=plan,
        outcome=outcome,
        start_ms=start_ms,
        end_ms=end_ms,
        answers=tuple(answers),
        verdict=obj["verdict"],
        remarks=obj["remarks"],
        evidence=EvidenceManifest.from_json(obj["evidence"]),
        issued_ms=obj["issued_ms"],
        guard=guard,
    )
