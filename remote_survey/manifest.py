"""The evidence manifest: what a survey report states about its evidence chain.

The manifest is derived from the chain alone (:func:`manifest_from_chain`), so a
verifier recomputes it from the evidence file and compares it, section by section,
with the manifest the signed report carries. Sections: the chain (file name, head,
length), the recording segments and snapshots (name, size, SHA-256, times), the
geolocation summary (:mod:`remote_survey.geosummary`), the liveness challenges
(issued, shown, confirmed) and the interruptions (gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remote_survey.entries import (
    EVIDENCE_FILE,
    HEX64,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    Gap,
    Segment,
    Snapshot,
)
from remote_survey.errors import MalformedEvidence, MalformedReport
from remote_survey.evidence import GENESIS, Entry
from remote_survey.geosummary import DEFAULT_MAX_FIX_AGE_MS, GeoSummary, geolocation_summary

__all__ = [
    "ChallengeRecord",
    "EvidenceManifest",
    "SnapshotRecord",
    "manifest_from_chain",
]


@dataclass(frozen=True)
class SnapshotRecord:
    name: str
    size: int
    sha256: str
    t_ms: int
    by: str


@dataclass(frozen=True)
class ChallengeRecord:
    challenge_id: str
    challenge: str
    by: str
    issued_ms: int
    shown_ms: int | None
    confirmed_ms: int | None
    result: str | None  # "confirmed" | "failed" | None (never judged)


@dataclass(frozen=True)
class EvidenceManifest:
    head: str
    length: int
    segments: tuple[Segment, ...]
    snapshots: tuple[SnapshotRecord, ...]
    geolocation: GeoSummary
    challenges: tuple[ChallengeRecord, ...]
    interruptions: tuple[Gap, ...]

    SECTIONS = ("chain", "segments", "snapshots", "geolocation", "challenges", "interruptions")

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": {"file": EVIDENCE_FILE, "head": self.head, "length": self.length},
            "segments": [s.to_data() for s in self.segments],
            "snapshots": [vars(s).copy() for s in self.snapshots],
            "geolocation": self.geolocation.to_json(),
            "challenges": [
                {
                    "challenge_id": c.challenge_id,
                    "challenge": c.challenge,
                    "by": c.by,
                    "issued_ms": c.issued_ms,
                    "shown_ms": c.shown_ms,
                    "confirmed_ms": c.confirmed_ms,
                    "result": c.result,
                }
                for c in self.challenges
            ],
            "interruptions": [g.to_data() for g in self.interruptions],
        }

    def differences(self, other: EvidenceManifest) -> tuple[str, ...]:
        """Names of the sections in which ``other`` says something else."""
        mine, theirs = self.to_json(), other.to_json()
        return tuple(s for s in self.SECTIONS if mine[s] != theirs[s])

    @classmethod
    def from_json(cls, obj: object) -> EvidenceManifest:
        try:
            return _manifest_from_json(obj)
        except (MalformedEvidence, KeyError, TypeError, ValueError) as exc:
            raise MalformedReport(f"evidence manifest: {exc}") from None


def _obj(value: object, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise MalformedReport(f"{what} must be an object with exactly {sorted(keys)}")
    return value


def _int(value: object, what: str, *, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedReport(f"{what} must be a non-negative integer")
    return value


def _str(value: object, what: str, *, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedReport(f"{what} must be a non-empty string")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedReport(f"{what} must be an array")
    return value


def _manifest_from_json(obj: object) -> EvidenceManifest:
    top = _obj(obj, set(EvidenceManifest.SECTIONS), "evidence")
    chain = _obj(top["chain"], {"file", "head", "length"}, "evidence.chain")
    if chain["file"] != EVIDENCE_FILE:
        raise MalformedReport(f"evidence.chain.file must be {EVIDENCE_FILE!r}")
    head = _str(chain["head"], "evidence.chain.head")
    if not HEX64.fullmatch(head):
        raise MalformedReport("evidence.chain.head must be 64 lowercase hex digits")
    segments = tuple(
        Segment(**_obj(s, _SEG | _VIDEO if isinstance(s, dict) and "width" in s else _SEG, "seg"))
        for s in _list(top["segments"], "seg")
    )
    snapshots = []
    for s in _list(top["snapshots"], "evidence.snapshots"):
        s = _obj(s, {"name", "size", "sha256", "t_ms", "by"}, "snapshot")
        Snapshot(s["name"], s["size"], s["sha256"], s["by"])  # validates the shared fields
        snapshots.append(SnapshotRecord(**{**s, "t_ms": _int(s["t_ms"], "snapshot.t_ms")}))
    g = _obj(top["geolocation"], _GEO, "evidence.geolocation")
    geo = GeoSummary(
        radius_mm=_int(g["radius_mm"], "radius_mm"),
        max_fix_age_ms=_int(g["max_fix_age_ms"], "max_fix_age_ms"),
        live_ms=_int(g["live_ms"], "live_ms"),
        within_ms=_int(g["within_ms"], "within_ms"),
        fixes=_int(g["fixes"], "fixes"),
        max_distance_mm=_int(g["max_distance_mm"], "max_distance_mm", optional=True),
    )
    if geo.to_json() != g:
        raise MalformedReport("evidence.geolocation.within_permille does not match")
    challenges = []
    for c in _list(top["challenges"], "evidence.challenges"):
        c = _obj(c, _CHAL, "challenge")
        challenges.append(
            ChallengeRecord(
                challenge_id=_str(c["challenge_id"], "challenge_id"),
                challenge=_str(c["challenge"], "challenge"),
                by=_str(c["by"], "by"),
                issued_ms=_int(c["issued_ms"], "issued_ms"),
                shown_ms=_int(c["shown_ms"], "shown_ms", optional=True),
                confirmed_ms=_int(c["confirmed_ms"], "confirmed_ms", optional=True),
                result=_str(c["result"], "result", optional=True),
            )
        )
    gaps = tuple(
        Gap(**_obj(x, {"start_ms", "end_ms"}, "gap")) for x in _list(top["interruptions"], "gaps")
    )
    return EvidenceManifest(
        head=head,
        length=_int(chain["length"], "evidence.chain.length"),
        segments=segments,
        snapshots=tuple(snapshots),
        geolocation=geo,
        challenges=tuple(challenges),
        interruptions=gaps,
    )


_SEG = {"name", "size", "sha256", "start_ms", "end_ms"}
_VIDEO = {"width", "height", "frames"}
_GEO = {
    "radius_mm",
    "max_fix_age_ms",
    "live_ms",
    "within_ms",
    "within_permille",
    "fixes",
    "max_distance_mm",
}
_CHAL = {"challenge_id", "challenge", "by", "issued_ms", "shown_ms", "confirmed_ms", "result"}


def manifest_from_chain(
    entries: Sequence[Entry],
    *,
    start_ms: int,
    end_ms: int,
    radius_mm: int,
    max_fix_age_ms: int = DEFAULT_MAX_FIX_AGE_MS,
) -> EvidenceManifest:
    """Derive the manifest from a chain (assumed verified) and the session's live span."""
    challenges: dict[str, ChallengeRecord] = {}
    for e in entries:
        b = e.body
        if isinstance(b, ChallengeIssued):
            challenges[b.challenge_id] = ChallengeRecord(
                b.challenge_id, b.challenge, b.by, e.t_ms, None, None, None
            )
        elif isinstance(b, ChallengeShown) and b.challenge_id in challenges:
            c = challenges[b.challenge_id]
            challenges[b.challenge_id] = ChallengeRecord(
                c.challenge_id, c.challenge, c.by, c.issued_ms, e.t_ms, c.confirmed_ms, c.result
            )
        elif isinstance(b, ChallengeConfirmed) and b.challenge_id in challenges:
            c = challenges[b.challenge_id]
            challenges[b.challenge_id] = ChallengeRecord(
                c.challenge_id, c.challenge, c.by, c.issued_ms, c.shown_ms, e.t_ms, b.result
            )
    return EvidenceManifest(
        head=entries[-1].hash if entries else GENESIS,
        length=len(entries),
        segments=tuple(e.body for e in entries if isinstance(e.body, Segment)),
        snapshots=tuple(
            SnapshotRecord(e.body.name, e.body.size, e.body.sha256, e.t_ms, e.body.by)
            for e in entries
            if isinstance(e.body, Snapshot)
        ),
        geolocation=geolocation_summary(
            entries,
            start_ms=start_ms,
            end_ms=end_ms,
            radius_mm=radius_mm,
            max_fix_age_ms=max_fix_age_ms,
        ),
        challenges=tuple(challenges.values()),
        interruptions=tuple(e.body for e in entries if isinstance(e.body, Gap)),
    )
