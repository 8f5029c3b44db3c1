"""The survey report: checklist answers, verdict and evidence manifest, under seal.

:func:`build_report` turns a finished :class:`~remote_survey.session.SurveySession`,
its :class:`~remote_survey.evidence.EvidenceChain` and the inspector's answers into a
:class:`SurveyReport`; :func:`sign_report` seals its canonical JSON as a compact JWS
(``typ`` ``tongban-survey-report+jws``) with the surveying office's seal through
:func:`signing.jws.sign_compact`. :func:`verify_report` checks, and lists every failure
of: the seal signature and its certificate path; that the seal belongs to the surveying
office; the evidence file in the media directory (chain integrity, head and length as
the report pins them); the report's manifest against the manifest recomputed from the
chain; and every segment and snapshot file, re-hashed in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from remote_survey.entries import EVIDENCE_FILE, GeoFix
from remote_survey.errors import MalformedEvidence, MalformedReport, SurveyError
from remote_survey.evidence import EvidenceChain, epoch_ms, parse_evidence, verify_chain
from remote_survey.geo import distance_mm
from remote_survey.manifest import EvidenceManifest, manifest_from_chain
from remote_survey.media import verify_media
from remote_survey.reportjson import plan_from_json, plan_to_json
from remote_survey.session import SurveyPlan, SurveySession, SurveyState
from signing.certificates import Identity, TrustBundle
from signing.encoding import b64url_decode, canonical_json
from signing.errors import SigningError
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "REPORT_TYP",
    "Answer",
    "ChecklistAnswer",
    "Failure",
    "ReportVerification",
    "SurveyReport",
    "Verdict",
    "build_report",
    "sign_report",
    "verify_report",
]

REPORT_TYP = "tongban-survey-report+jws"
REPORT_TYPE = "tongban-survey-report"
REPORT_VERSION = 1


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    PASS_WITH_CORRECTIONS = "pass_with_corrections"  # noqa: S105
    FAIL = "fail"
    CONVERT_TO_ONSITE = "convert_to_onsite"


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


_OUTCOMES = (SurveyState.COMPLETED, SurveyState.CONVERTED_TO_ONSITE)


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
        if self.outcome not in _OUTCOMES:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "type": REPORT_TYPE,
            "v": REPORT_VERSION,
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
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedReport(f"a report is an object with exactly {sorted(keys)}")
    if obj["type"] != REPORT_TYPE or obj["v"] != REPORT_VERSION:
        raise MalformedReport("not a version 1 tongban survey report")
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
    )


def build_report(
    session: SurveySession,
    chain: EvidenceChain,
    answers: Sequence[ChecklistAnswer],
    verdict: Verdict,
    *,
    radius_mm: int,
    at: datetime,
    remarks: str = "",
) -> SurveyReport:
    """Assemble the report of a finished session from its chain and the answers."""
    if chain.session_id != session.plan.session_id:
        raise MalformedReport("the evidence chain belongs to another session")
    if session.ended_at is None or session.state not in _OUTCOMES:
        raise MalformedReport(f"no report for a session that is {session.state}")
    end_ms = epoch_ms(session.ended_at)
    start_ms = epoch_ms(session.started_at) if session.started_at else end_ms
    manifest = manifest_from_chain(
        chain.entries, start_ms=start_ms, end_ms=end_ms, radius_mm=radius_mm
    )
    return SurveyReport(
        plan=session.plan,
        outcome=session.state,
        start_ms=start_ms,
        end_ms=end_ms,
        answers=tuple(answers),
        verdict=verdict,
        remarks=remarks,
        evidence=manifest,
        issued_ms=epoch_ms(at),
    )


def sign_report(report: SurveyReport, seal: Signer, *, at: datetime) -> str:
    """Seal the report's canonical JSON as a compact JWS (typ ``tongban-survey-report+jws``)."""
    return sign_compact(report.payload(), seal, typ=REPORT_TYP, at=at)


@dataclass(frozen=True)
class Failure:
    code: str
    message: str


@dataclass(frozen=True)
class ReportVerification:
    report: SurveyReport | None
    signer: Identity | None
    failures: tuple[Failure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures and self.report is not None and self.signer is not None


def _unverified_payload(token: str) -> bytes | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return b64url_decode(parts[1])
    except SigningError:
        return None


def verify_report(
    token: str, bundle: TrustBundle, media_dir: str | Path, at: datetime
) -> ReportVerification:
    """Check signature, chain, manifest and every file; list every failure found.

    When the signature fails the payload is still read (unverified) so that the chain
    and the files are checked too and every problem is reported at once; such a report
    is never valid.
    """
    failures: list[Failure] = []
    signer: Identity | None = None
    token = token.strip()
    try:
        verified = verify_compact(token, bundle, at=at, typ=REPORT_TYP)
        signer, payload = verified.signer, verified.payload
    except SigningError:
        failures.append(Failure("signature", "the seal signature or its certificate is invalid"))
        payload = _unverified_payload(token)  # type: ignore[assignment]
        if payload is None:
            return ReportVerification(None, None, tuple(failures))
    try:
        report = SurveyReport.from_payload(payload)
    except MalformedReport as exc:
        failures.append(Failure("report-malformed", str(exc)))
        return ReportVerification(None, signer, tuple(failures))
    if signer is not None and signer.node_id != report.plan.surveying_office:
        failures.append(
            Failure(
                "wrong-signer",
                f"sealed by node {signer.node_id}, not by the surveying office "
                f"{report.plan.surveying_office}",
            )
        )
    failures.extend(_check_evidence(report, Path(media_dir)))
    return ReportVerification(report, signer, tuple(failures))


def _check_evidence(report: SurveyReport, media_dir: Path) -> list[Failure]:
    path = media_dir / EVIDENCE_FILE
    try:
        entries = parse_evidence(path.read_bytes())
    except FileNotFoundError:
        return [Failure("evidence-missing", f"{path} does not exist")]
    except OSError as exc:
        return [Failure("evidence-missing", f"cannot read {path}: {exc.strerror}")]
    except MalformedEvidence as exc:
        return [Failure("evidence-malformed", f"{path}: {exc}")]
    manifest = report.evidence
    chain = verify_chain(
        entries,
        session_id=report.plan.session_id,
        head=manifest.head,
        length=manifest.length,
    )
    failures = [Failure(f"chain-{p.code}", p.message) for p in chain.problems]
    recomputed = manifest_from_chain(
        entries,
        start_ms=report.start_ms,
        end_ms=report.end_ms,
        radius_mm=manifest.geolocation.radius_mm,
        max_fix_age_ms=manifest.geolocation.max_fix_age_ms,
    )
    failures.extend(
        Failure("manifest-mismatch", f"the report's {section} differ from the evidence chain")
        for section in manifest.differences(recomputed)
    )
    site = report.plan.site.location
    for i, e in enumerate(entries):
        if (
            isinstance(e.body, GeoFix)
            and abs(distance_mm(site, e.body.point) - e.body.distance_mm) > 1
        ):
            failures.append(
                Failure("geofix-distance", f"entry {i}: the distance to the site is misstated")
            )
    failures.extend(Failure(f"media-{p.code}", p.message) for p in verify_media(entries, media_dir))
    return failures
