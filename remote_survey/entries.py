"""The kinds of evidence a survey records, one frozen dataclass per kind.

Every field is a non-empty string (at most 4096 characters) or an integer; integers
are non-negative except the ``_e7`` coordinates. Times are server milliseconds since
the Unix epoch (``*_ms``), lengths bytes, distances and accuracies millimetres, digests
lowercase hex SHA-256, file names plain names (``[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}``,
never ``evidence.jsonl``). See :mod:`remote_survey.evidence` for the chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from remote_survey.errors import MalformedEvidence
from remote_survey.geo import GeoPoint, distance_mm

__all__ = [
    "BODY_TYPES",
    "EVIDENCE_FILE",
    "Body",
    "ChallengeConfirmed",
    "ChallengeIssued",
    "ChallengeShown",
    "EntryKind",
    "Gap",
    "GeoFix",
    "Note",
    "Segment",
    "Snapshot",
    "epoch_ms",
    "geofix",
]

EVIDENCE_FILE = "evidence.jsonl"
HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_TEXT_MAX = 4096


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the Unix epoch of a timezone-aware ``at`` (floored)."""
    if at.tzinfo is None:
        raise ValueError("epoch_ms needs a timezone-aware time")
    seconds = int(at.timestamp() // 1)
    return seconds * 1000 + at.microsecond // 1000


class EntryKind(StrEnum):
    SEGMENT = "segment"
    SNAPSHOT = "snapshot"
    GEOFIX = "geofix"
    CHALLENGE_ISSUED = "challenge_issued"
    CHALLENGE_SHOWN = "challenge_shown"
    CHALLENGE_CONFIRMED = "challenge_confirmed"
    GAP = "gap"
    NOTE = "note"


def _bad(message: str) -> MalformedEvidence:
    return MalformedEvidence(message)


class _Body:
    """Shared validation: every field is a str or a non-negative int, as annotated."""

    KIND: ClassVar[EntryKind]
    # fields a kind added later: absent from the JSON of older entries (then all 0)
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise _bad(f"{self.KIND}.{f.name} must be an integer")
                if not (f.name.endswith("_e7") or 0 <= value <= 2**53 - 1):
                    raise _bad(f"{self.KIND}.{f.name} must be a non-negative integer")
            elif not isinstance(value, str) or not value or len(value) > _TEXT_MAX:
                raise _bad(f"{self.KIND}.{f.name} must be a non-empty string")
        self._check()

    def _check(self) -> None:
        """Kind-specific checks."""

    def to_data(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        if self.OPTIONAL and not any(data[k] for k in self.OPTIONAL):
            for k in self.OPTIONAL:
                del data[k]
        return data


def _check_file(name: str, sha256: str, kind: str) -> None:
    if not _FILE_NAME.fullmatch(name) or name == EVIDENCE_FILE:
        raise _bad(f"{kind} file name {name!r} is not a plain file name")
    if not HEX64.fullmatch(sha256):
        raise _bad(f"{kind} sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class Segment(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.SEGMENT
    OPTIONAL: ClassVar[tuple[str, ...]] = ("width", "height", "frames")
    name: str
    size: int
    sha256: str
    start_ms: int
    end_ms: int
    # the video the file holds: one picture size per segment, and how many frames (its
    # true frame rate is frames over the file's duration); 0, 0, 0 in older chains
    width: int = 0
    height: int = 0
    frames: int = 0

    def _check(self) -> None:
        _check_file(self.name, self.sha256, "segment")
        if self.end_ms < self.start_ms:
            raise _bad(f"segment {self.name} ends before it starts")
        video = (self.width, self.height, self.frames)
        if any(video) and not all(video):
            raise _bad(f"segment {self.name}: width, height and frames are all positive")


@dataclass(frozen=True)
class Snapshot(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.SNAPSHOT
    name: str
    size: int
    sha256: str
    by: str

    def _check(self) -> None:
        _check_file(self.name, self.sha256, "snapshot")


@dataclass(frozen=True)
class GeoFix(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.GEOFIX
    lat_e7: int
    lon_e7: int
    accuracy_mm: int
    distance_mm: int

    def _check(self) -> None:
        try:
            GeoPoint(self.lat_e7, self.lon_e7)
        except Exception as exc:
            raise _bad(f"geofix: {exc}") from None

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat_e7, self.lon_e7)


@dataclass(frozen=True)
class ChallengeIssued(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.CHALLENGE_ISSUED
    challenge_id: str
    challenge: str
    by: str


@dataclass(frozen=True)
class ChallengeShown(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.CHALLENGE_SHOWN
    challenge_id: str
    by: str


@dataclass(frozen=True)
class ChallengeConfirmed(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.CHALLENGE_CONFIRMED
    challenge_id: str
    by: str
    result: str

    def _check(self) -> None:
        if self.result not in ("confirmed", "failed"):
            raise _bad("challenge_confirmed.result must be 'confirmed' or 'failed'")


@dataclass(frozen=True)
class Gap(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.GAP
    start_ms: int
    end_ms: int

    def _check(self) -> None:
        if self.end_ms < self.start_ms:
            raise _bad("gap ends before it starts")


@dataclass(frozen=True)
class Note(_Body):
    KIND: ClassVar[EntryKind] = EntryKind.NOTE
    text: str
    by: str


Body = (
    Segment | Snapshot | GeoFix | ChallengeIssued | ChallengeShown | ChallengeConfirmed | Gap | Note
)
BODY_TYPES: dict[str, type[_Body]] = {
    cls.KIND.value: cls
    for cls in (
        *(Segment, Snapshot, GeoFix, ChallengeIssued),
        *(ChallengeShown, ChallengeConfirmed, Gap, Note),
    )
}


def geofix(site: GeoPoint, fix: GeoPoint, accuracy_mm: int) -> GeoFix:
    """A fix of the site device, with its distance to ``site`` computed by the server."""
    return GeoFix(fix.lat_e7, fix.lon_e7, accuracy_mm, distance_mm(site, fix))
