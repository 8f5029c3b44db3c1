"""Helpers for the survey tests: a plan, a dev PKI in tmp dirs, and a finished survey.

Times are fixed relative to one base instant (three hours before the test run, so the
development certificates, issued at the base, are valid throughout).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from certs.pki import init_federation, issue_node
from remote_survey.entries import (
    Body,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    Note,
    Segment,
    Snapshot,
    epoch_ms,
    geofix,
)
from remote_survey.evidence import EVIDENCE_FILE, EvidenceChain
from remote_survey.geo import GeoPoint
from remote_survey.report import (
    Answer,
    ChecklistAnswer,
    SurveyReport,
    Verdict,
    build_report,
    sign_report,
)
from remote_survey.session import (
    ChecklistItem,
    Event,
    Participant,
    Site,
    SurveyPlan,
    SurveySession,
    TimeWindow,
    schedule,
    transition,
)
from signing.certificates import TrustBundle
from signing.keys import Signer

SURVEYOR = "420106"
REQUESTER = "320982"
SITE = GeoPoint.from_degrees(30.5428, 114.3162)


def make_plan(base: datetime, session_id: str = "sv-2026-0001") -> SurveyPlan:
    return SurveyPlan(
        session_id=session_id,
        case_id="case-320982-0042",
        matter="food-business-licence",
        surveying_office=SURVEYOR,
        requesting_office=REQUESTER,
        window=TimeWindow(base + timedelta(minutes=50), base + timedelta(hours=2)),
        inspectors=(Participant("insp-1", "李勘查"), Participant("insp-2", "王勘查")),
        site_party=Participant("site-1", "张店主"),
        observers=(Participant("obs-1", "大丰区审批局 观察员"),),
        checklist=(
            ChecklistItem("kitchen-layout", "后厨布局符合生熟分开"),
            ChecklistItem("fire-exit", "消防通道畅通"),
        ),
        site=Site("武汉市武昌区中北路 1 号", SITE),
    )


@dataclass(frozen=True)
class Pki:
    federation: Path
    nodes: dict[str, Path]
    bundle_path: Path

    @property
    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(self.bundle_path.read_bytes())

    def seal(self, node: str) -> Signer:
        d = self.nodes[node]
        return Signer.from_pem((d / "seal.key").read_bytes(), (d / "seal.pem").read_bytes())


def make_pki(root: Path, base: datetime) -> Pki:
    """A federation root and the two offices' node directories under ``root``."""
    init_federation(root / "fed", "Hubei", now=base)
    nodes = {}
    for code, name in ((SURVEYOR, "武昌区政务服务中心"), (REQUESTER, "大丰区行政审批局")):
        issue_node(root / "fed", code, name, "127.0.0.1", root / code, now=base)
        nodes[code] = root / code
    bundle_path = root / "bundle.pem"
    bundle_path.write_bytes(
        (root / "fed" / "root.pem").read_bytes() + (root / "fed" / "crl.pem").read_bytes()
    )
    return Pki(root / "fed", nodes, bundle_path)


@dataclass(frozen=True)
class FinishedSurvey:
    plan: SurveyPlan
    session: SurveySession
    chain: EvidenceChain
    report: SurveyReport
    token: str
    media: Path
    verify_at: datetime


def _write(media: Path, name: str, data: bytes) -> tuple[int, str]:
    (media / name).write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


def run_survey(
    base: datetime, media: Path, pki: Pki, *, seal_node: str = SURVEYOR
) -> FinishedSurvey:
    """A complete survey: 6 recorded segments, one snapshot, a challenge, one dropped
    connection with rejoin, geolocation fixes every 5 s; media written to ``media``."""
    plan = make_plan(base)
    t0 = base + timedelta(hours=1)
    ms0 = epoch_ms(t0)
    session, _ = transition(schedule(plan), Event.START, t0)
    media.mkdir(parents=True, exist_ok=True)
    events: list[tuple[int, Body]] = []  # (seconds after start, body), sorted below

    def fix(t_s: int, metres_north: float, accuracy_mm: int) -> None:
        point = GeoPoint.from_degrees(SITE.lat + metres_north / 111_195, SITE.lon)
        events.append((t_s, geofix(SITE, point, accuracy_mm)))

    def segment(i: int, start_s: int) -> None:
        size, sha = _write(media, f"seg-{i:04d}.webm", os.urandom(3000 + i))
        body = Segment(
            f"seg-{i:04d}.webm", size, sha, ms0 + start_s * 1000, ms0 + start_s * 1000 + 10_000
        )
        events.append((start_s + 10, body))

    # live 0-30 s: three segments, fixes 3 m north (accuracy 5 m), a snapshot, a challenge
    for t in range(0, 30, 5):
        fix(t, 3.0, 5_000)
    for i in range(3):
        segment(i, i * 10)
    size, sha = _write(media, "snap-0001.jpg", os.urandom(5000))
    events.append((12, Snapshot("snap-0001.jpg", size, sha, "insp-1")))
    events.append((20, ChallengeIssued("ch-1", "请举起三根手指", "insp-1")))
    events.append((21, ChallengeShown("ch-1", "site-1")))
    events.append((25, ChallengeConfirmed("ch-1", "insp-1", "confirmed")))
    # the connection drops at 30 s and the site rejoins with the same link at 40 s
    session, _ = transition(session, Event.DROP, t0 + timedelta(seconds=30))
    session, gaps = transition(session, Event.REJOIN, t0 + timedelta(seconds=40))
    events.extend((40, gap) for gap in gaps)
    # live 40-70 s: fixes 4 m north (accuracy 8 m), then 30 m away from 60 s
    for t in range(40, 70, 5):
        fix(t, 30.0 if t >= 60 else 4.0, 8_000)
    for i in range(3, 6):
        segment(i, 40 + (i - 3) * 10)
    events.append((70, Note("店主说明油烟净化器已更换", "insp-1")))
    events.sort(key=lambda e: e[0])
    chain = EvidenceChain(plan.session_id).extend((b, ms0 + t * 1000) for t, b in events)
    t_end = t0 + timedelta(seconds=70)
    session, _ = transition(session, Event.COMPLETE, t_end)
    (media / EVIDENCE_FILE).write_bytes(chain.to_jsonl())
    snap_sha = next(e.body.sha256 for e in chain.entries if isinstance(e.body, Snapshot))
    answers = (
        ChecklistAnswer("kitchen-layout", Answer.PASS, "", (snap_sha,), ms0 + 10_000, ms0 + 30_000),
        ChecklistAnswer("fire-exit", Answer.NOTE, "通道有杂物, 已当场清理"),
    )
    report = build_report(
        session,
        chain,
        answers,
        Verdict.PASS_WITH_CORRECTIONS,
        radius_mm=20_000,
        at=t_end + timedelta(minutes=1),
    )
    token = sign_report(report, pki.seal(seal_node), at=t_end + timedelta(minutes=1))
    return FinishedSurvey(plan, session, chain, report, token, media, t_end + timedelta(minutes=5))
