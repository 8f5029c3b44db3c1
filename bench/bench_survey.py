"""Survey evidence: build, parse and verify a long chain; re-hash media; verify a report.

A one-hour survey with a fix every second and a 10 s recording segment produces about
4 000 chain entries; the chain here has 10 000 (about 2.8 hours). Media: 32 segment
files of 8 MiB (256 MiB of real random bytes) in a temporary directory. Baselines,
measured in the same run: SHA-256 of the same canonical entry bytes (what the chain
hashing costs without the Python model around it) and a plain 1 MiB-read SHA-256 loop
over the same media files (what ``verify_media`` costs without its checks).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENTRIES = 10_000
FILES, FILE_SIZE = 32, 8 << 20
MIB = 1 << 20


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run() -> list[dict[str, object]]:
    from certs.pki import init_federation, issue_node
    from remote_survey.entries import Segment, geofix
    from remote_survey.evidence import EVIDENCE_FILE, EvidenceChain, parse_evidence, verify_chain
    from remote_survey.geo import GeoPoint
    from remote_survey.media import verify_media
    from remote_survey.report import (
        Answer,
        ChecklistAnswer,
        Verdict,
        build_report,
        sign_report,
        verify_report,
    )
    from remote_survey.session import (
        ChecklistItem,
        Event,
        Participant,
        Site,
        SurveyPlan,
        TimeWindow,
        schedule,
        transition,
    )
    from signing.certificates import TrustBundle
    from signing.encoding import canonical_json
    from signing.keys import Signer

    rows: list[dict[str, object]] = []
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    t0 = base + timedelta(minutes=10)
    ms0 = int(t0.timestamp()) * 1000
    with tempfile.TemporaryDirectory(prefix="bench-survey-") as tmp:
        work = Path(tmp)
        media = work / "media"
        media.mkdir()
        names = []
        for i in range(FILES):
            data = os.urandom(FILE_SIZE)
            (media / f"seg-{i:05d}.webm").write_bytes(data)
            names.append((f"seg-{i:05d}.webm", hashlib.sha256(data).hexdigest()))
        segment_every = ENTRIES // FILES
        site = GeoPoint.from_degrees(30.5428, 114.3162)

        def items() -> Iterator[tuple[Any, int]]:
            for k in range(ENTRIES):
                t = ms0 + k * 1000
                if k % segment_every == segment_every - 1 and k // segment_every < FILES:
                    name, sha = names[k // segment_every]
                    start = t - (segment_every - 1) * 1000
                    yield Segment(name, FILE_SIZE, sha, start, t), t
                else:
                    yield geofix(site, GeoPoint(site.lat_e7 + k % 200, site.lon_e7), 5_000), t

        seconds, chain = _timed(lambda: EvidenceChain("sv-bench").extend(items()))
        lines = chain.to_jsonl().splitlines()
        base_s, _ = _timed(lambda: [hashlib.sha256(line).digest() for line in lines])
        rows.append(_row("chain append", ENTRIES, "entries", seconds, base_s))
        data = chain.to_jsonl()
        (media / EVIDENCE_FILE).write_bytes(data)
        seconds, entries = _timed(lambda: parse_evidence(data))
        rows.append(_row("parse evidence file", ENTRIES, "entries", seconds, base_s))
        seconds, result = _timed(lambda: verify_chain(entries, head=chain.head))
        assert result.ok
        rows.append(_row("verify chain", ENTRIES, "entries", seconds, base_s))

        def plain_sha() -> None:
            for name, _ in names:
                digest = hashlib.sha256()
                with (media / name).open("rb") as f:
                    while chunk := f.read(MIB):
                        digest.update(chunk)

        plain_sha()  # warm the page cache for both
        base_s, _ = _timed(plain_sha)
        seconds, problems = _timed(lambda: verify_media(entries, media))
        assert problems == ()
        rows.append(_row("verify media", FILES * FILE_SIZE // MIB, "MiB", seconds, base_s))

        init_federation(work / "fed", "Bench", now=base)
        issue_node(work / "fed", "420106", "武昌区", "127.0.0.1", work / "node", now=base)
        bundle = TrustBundle.from_pem(
            (work / "fed" / "root.pem").read_bytes() + (work / "fed" / "crl.pem").read_bytes()
        )
        seal = Signer.from_pem(
            (work / "node" / "seal.key").read_bytes(), (work / "node" / "seal.pem").read_bytes()
        )
        plan = SurveyPlan(
            session_id="sv-bench",
            case_id="case-1",
            matter="bench",
            surveying_office="420106",
            requesting_office="320982",
            window=TimeWindow(base, base + timedelta(hours=5)),
            inspectors=(Participant("insp-1", "李"),),
            site_party=Participant("site-1", "张"),
            observers=(),
            checklist=(ChecklistItem("item-1", "检查"),),
            site=Site("武昌", site),
        )
        session, _ = transition(schedule(plan), Event.START, t0)
        t_end = t0 + timedelta(seconds=ENTRIES)
        session, _ = transition(session, Event.COMPLETE, t_end)
        report = build_report(
            session,
            chain,
            (ChecklistAnswer("item-1", Answer.PASS),),
            Verdict.PASS,
            radius_mm=20_000,
            at=t_end,
            # the bench's chain holds no challenge proof: a pass needs the written reason
            reason="现场已核实，挑战环节因网络中断未完成",
        )
        token = sign_report(report, seal, at=t_end)
        at = t_end + timedelta(minutes=1)
        seconds, verified = _timed(lambda: verify_report(token, bundle, media, at))
        assert verified.ok, verified.failures[:3]
        rows.append(
            {
                "operation": "verify report (seal + chain + manifest + media)",
                "items": f"{ENTRIES} entries + {FILES * FILE_SIZE // MIB} MiB",
                "seconds": seconds,
                "rate": "",
                "vs baseline": f"report payload {len(report.payload()):,} B",
            }
        )
        payload = canonical_json(report.to_json())
        assert payload == report.payload()
    return rows


def _row(op: str, n: int, unit: str, seconds: float, baseline: float) -> dict[str, object]:
    return {
        "operation": op,
        "items": f"{n} {unit}",
        "seconds": seconds,
        "rate": f"{n / seconds:,.0f} {unit}/s",
        "vs baseline": f"{seconds / baseline:.1f}x",
    }
