"""How much of a survey the site device was where it should be.

The live span ``[start_ms, end_ms)`` minus every recorded gap is cut into live
intervals. Each ``geofix`` entry recorded at ``t`` inside a live interval *holds* from
``t`` until the earliest of: the next fix's time, ``t + max_fix_age_ms`` and the end of
that live interval (a fix never carries across an interruption; a fix outside every
live interval holds for nothing). A fix is *within* radius R when its distance to the
site plus its reported accuracy is at most R, i.e. its whole uncertainty circle lies
inside the circle of radius R around the site. The summary is the held time of fixes
within R over the total live time: "within 20 m for 95% of the session" means that
95% of the live time is covered by fixes whose accuracy circle lies within 20 m.
Time not covered by any fix (no fix yet, or the last one too old) counts as not within.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from remote_survey.entries import Gap, GeoFix

if TYPE_CHECKING:
    from remote_survey.evidence import Entry

__all__ = ["DEFAULT_MAX_FIX_AGE_MS", "GeoSummary", "geolocation_summary", "live_intervals"]

DEFAULT_MAX_FIX_AGE_MS = 30_000


@dataclass(frozen=True)
class GeoSummary:
    radius_mm: int
    max_fix_age_ms: int
    live_ms: int
    within_ms: int
    fixes: int
    max_distance_mm: int | None

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.within_ms, self.live_ms) if self.live_ms else Fraction(0)

    @property
    def within_permille(self) -> int:
        """The fraction in thousandths, rounded down (so 94.99% never reads as 95%)."""
        return (1000 * self.within_ms // self.live_ms) if self.live_ms else 0

    def describe(self) -> str:
        pct = self.within_permille / 10
        return (
            f"within {self.radius_mm / 1000:g} m for {pct:g}% of the session "
            f"({self.within_ms / 1000:g} of {self.live_ms / 1000:g} s live, {self.fixes} fixes)"
        )

    def to_json(self) -> dict[str, int | None]:
        return {
            "radius_mm": self.radius_mm,
            "max_fix_age_ms": self.max_fix_age_ms,
            "live_ms": self.live_ms,
            "within_ms": self.within_ms,
            "within_permille": self.within_permille,
            "fixes": self.fixes,
            "max_distance_mm": self.max_distance_mm,
        }


def live_intervals(gaps: Sequence[Gap], start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` minus the gaps, as sorted disjoint half-open intervals."""
    intervals = [(start_ms, end_ms)] if end_ms > start_ms else []
    for gap in gaps:
        cut: list[tuple[int, int]] = []
        for a, b in intervals:
            if gap.end_ms <= a or gap.start_ms >= b:
                cut.append((a, b))
                continue
            if a < gap.start_ms:
                cut.append((a, gap.start_ms))
            if gap.end_ms < b:
                cut.append((gap.end_ms, b))
        intervals = cut
    return intervals


def geolocation_summary(
    entries: Sequence[Entry],
    *,
    start_ms: int,
    end_ms: int,
    radius_mm: int,
    max_fix_age_ms: int = DEFAULT_MAX_FIX_AGE_MS,
) -> GeoSummary:
    """Summarize the ``geofix`` entries against the live span (see module docstring)."""
    if radius_mm <= 0 or max_fix_age_ms <= 0:
        raise ValueError("radius and maximum fix age must be positive")
    gaps = [e.body for e in entries if isinstance(e.body, Gap)]
    live = live_intervals(gaps, start_ms, end_ms)
    fixes = [(e.t_ms, e.body) for e in entries if isinstance(e.body, GeoFix)]
    within = 0
    for i, (t, fix) in enumerate(fixes):
        interval = next(((a, b) for a, b in live if a <= t < b), None)
        if interval is None:
            continue
        until = min(t + max_fix_age_ms, interval[1])
        if i + 1 < len(fixes):
            until = min(until, fixes[i + 1][0])
        if fix.distance_mm + fix.accuracy_mm <= radius_mm:
            within += max(0, until - t)
    return GeoSummary(
        radius_mm=radius_mm,
        max_fix_age_ms=max_fix_age_ms,
        live_ms=sum(b - a for a, b in live),
        within_ms=within,
        fixes=len(fixes),
        max_distance_mm=max((f.distance_mm for _, f in fixes), default=None),
    )
