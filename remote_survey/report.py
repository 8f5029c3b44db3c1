"""The survey report: checklist answers, verdict and evidence manifest, under seal.

:func:`build_report` turns a finished :class:`~remote_survey.session.SurveySession`,
its :class:`~remote_survey.evidence.EvidenceChain` and the inspector's answers into a
:class:`SurveyReport`; :func:`sign_report` seals its canonical JSON as a compact JWS
(``typ`` ``tongban-survey-report+jws``) with the surveying office's seal through
:func:`signing.jws.sign_compact`. :func:`verify_report` checks, and lists every failure
of: the seal signature and its certificate path; that the seal belongs to the surveying
office; the evidence file in the media directory (chain integrity, head and length as
the report pins them); the report's manifest against the manifest recomputed from the
chain; who did what (snapshots and challenges by inspectors, challenges shown by the
site party); each fix's distance to the site; and every segment and snapshot file,
re-hashed in constant memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from remote_survey.entries import (
    EVIDENCE_FILE,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    GeoFix,
    Note,
    Snapshot,
)
from remote_survey.errors import MalformedEvidence, MalformedReport, ReasonRequired
from remote_survey.evidence import (
    Entry,
    EvidenceChain,
    epoch_ms,
    parse_evidence,
    verify_chain,
)
from remote_survey.geo import distance_mm
from remote_survey.manifest import manifest_from_chain
from remote_survey.media import verify_media
from remote_survey.report_model import (
    GUARDS,
    OUTCOMES,
    PASSING,
    REPORT_TYP,
    Answer,
    ChecklistAnswer,
    Guard,
    SurveyReport,
    Verdict,
)
from remote_survey.session import SurveyPlan, SurveySession
from remote_survey.vault import MediaVault
from signing.certificates import Identity, TrustBundle
from signing.encoding import b64url_decode
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
    "missing_proof",
    "sign_report",
    "verify_report",
]


def build_report(
    session: SurveySession,
    chain: EvidenceChain,
    answers: Sequence[ChecklistAnswer],
    verdict: Verdict,
    *,
    radius_mm: int,
    at: datetime,
    remarks: str = "",
    reason: str = "",
) -> SurveyReport:
    """Assemble the report of a finished session from its chain and the answers.

    A pass verdict (with or without corrections) whose chain lacks proof
    (:func:`missing_proof`) needs ``reason``, the inspector's written explanation; it
    is sealed in the report's ``guard``. Without one :class:`ReasonRequired` is raised.
    """
    if chain.session_id != session.plan.session_id:
        raise MalformedReport("the evidence chain belongs to another session")
    if session.ended_at is None or session.state not in OUTCOMES:
        raise MalformedReport(f"no report for a session that is {session.state}")
    end_ms = epoch_ms(session.ended_at)
    start_ms = epoch_ms(session.started_at) if session.started_at else end_ms
    manifest = manifest_from_chain(
        chain.entries, start_ms=start_ms, end_ms=end_ms, radius_mm=radius_mm
    )
    guard = None
    missing = missing_proof(chain.entries, radius_mm=radius_mm, start_ms=start_ms, end_ms=end_ms)
    if verdict in PASSING and missing:
        if not reason.strip():
            raise ReasonRequired(missing)
        guard = Guard(missing, reason.strip())
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
        guard=guard,
    )


def missing_proof(
    entries: Sequence[Entry], *, radius_mm: int, start_ms: int, end_ms: int
) -> tuple[str, ...]:
    """The proofs (of :data:`~remote_survey.report_model.GUARDS`) a chain does not hold.

    ``location``: no fix of the site device, recorded while live, whose distance to the
    site is within ``radius_mm``. ``challenge``: no challenge that the site party
    acknowledged (``challenge_shown``) and the inspector then confirmed.
    """
    located = any(
        isinstance(e.body, GeoFix)
        and start_ms <= e.t_ms <= end_ms
        and e.body.distance_mm <= radius_mm
        for e in entries
    )
    shown: set[str] = set()
    confirmed = False
    for e in entries:
        if isinstance(e.body, ChallengeShown):
            shown.add(e.body.challenge_id)
        elif (
            isinstance(e.body, ChallengeConfirmed)
            and e.body.result == "confirmed"
            and e.body.challenge_id in shown
        ):
            confirmed = True
    have = {"location": located, "challenge": confirmed}
    return tuple(g for g in GUARDS if not have[g])


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
    token: str,
    bundle: TrustBundle,
    media_dir: str | Path,
    at: datetime,
    vault: MediaVault | None = None,
) -> ReportVerification:
    """Check signature, chain, manifest and every file; list every failure found.

    When the signature fails the payload is still read (unverified) so that the chain
    and the files are checked too and every problem is reported at once; such a report
    is never valid. ``vault`` opens media sealed at rest (the surveying node's folder).
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
    failures.extend(_check_evidence(report, Path(media_dir), vault))
    return ReportVerification(report, signer, tuple(failures))


def _check_evidence(
    report: SurveyReport, media_dir: Path, vault: MediaVault | None = None
) -> list[Failure]:
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
    failures.extend(_check_attribution(report.plan, entries))
    site = report.plan.site.location
    for i, e in enumerate(entries):
        if (
            isinstance(e.body, GeoFix)
            and abs(distance_mm(site, e.body.point) - e.body.distance_mm) > 1
        ):
            failures.append(
                Failure("geofix-distance", f"entry {i}: the distance to the site is misstated")
            )
    failures.extend(
        Failure(f"media-{p.code}", p.message) for p in verify_media(entries, media_dir, vault)
    )
    return failures


def _check_attribution(plan: SurveyPlan, entries: Sequence[Entry]) -> list[Failure]:
    """Snapshots and challenges are by inspectors; a challenge is shown by the site party."""
    inspectors = {p.person_id for p in plan.inspectors}
    everyone = {*inspectors, plan.site_party.person_id, *(p.person_id for p in plan.observers)}
    failures = []
    for i, e in enumerate(entries):
        b = e.body
        if isinstance(b, Snapshot | ChallengeIssued | ChallengeConfirmed):
            allowed, who = inspectors, "an inspector"
        elif isinstance(b, ChallengeShown):
            allowed, who = {plan.site_party.person_id}, "the site party"
        elif isinstance(b, Note):
            allowed, who = everyone, "a participant"
        else:
            continue
        if b.by not in allowed:
            failures.append(
                Failure("wrong-participant", f"entry {i} ({b.KIND}) by {b.by}, not {who}")
            )
    return failures
