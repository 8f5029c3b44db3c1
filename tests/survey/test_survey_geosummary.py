"""Geolocation summary on hand-computed fixes; haversine distances."""

from __future__ import annotations

from fractions import Fraction

import pytest

from remote_survey.entries import Gap, GeoFix, Note
from remote_survey.evidence import EvidenceChain, geolocation_summary
from remote_survey.geo import GeoPoint, distance_mm
from remote_survey.geosummary import live_intervals


def _fix(distance_m: float, accuracy_m: float) -> GeoFix:
    return GeoFix(305_428_000, 1_143_162_000, round(accuracy_m * 1000), round(distance_m * 1000))


def _chain() -> EvidenceChain:
    """Span 0-100 s with a gap 40-50 s (live 90 s); radius 20 m.

    t=0   5 m ± 10 m  within (15 m)   holds 0-10 s    -> 10 s
    t=10 12 m ± 10 m  outside (22 m)  holds 10-20 s   -> 0
    t=20  2 m ± 3 m   within          holds 20-40 s (cut at the gap start; next fix 45 s) -> 20 s
    t=45 50 m ± 5 m   inside the gap  holds nothing
    t=55 19 m ± 1 m   within (20 m, boundary counts) holds 55-85 s (30 s max age) -> 30 s
    within = 60 s of 90 s live.
    """
    return EvidenceChain("sv-1").extend(
        [
            (_fix(5, 10), 0),
            (_fix(12, 10), 10_000),
            (_fix(2, 3), 20_000),
            (Note("掉线", "insp-1"), 40_000),
            (_fix(50, 5), 45_000),
            (Gap(40_000, 50_000), 50_000),
            (_fix(19, 1), 55_000),
        ]
    )


def test_hand_computed_summary() -> None:
    summary = geolocation_summary(_chain().entries, start_ms=0, end_ms=100_000, radius_mm=20_000)
    assert summary.live_ms == 90_000
    assert summary.within_ms == 60_000
    assert summary.fraction == Fraction(2, 3)
    assert summary.within_permille == 666  # rounded down
    assert summary.fixes == 5
    assert summary.max_distance_mm == 50_000
    assert summary.describe() == ("within 20 m for 66.6% of the session (60 of 90 s live, 5 fixes)")


def test_accuracy_is_considered() -> None:
    chain = EvidenceChain("sv-1").append(_fix(10, 15), 0)
    summary = geolocation_summary(chain.entries, start_ms=0, end_ms=10_000, radius_mm=20_000)
    assert summary.within_ms == 0  # 10 m away but ±15 m: could be 25 m away
    wide = geolocation_summary(chain.entries, start_ms=0, end_ms=10_000, radius_mm=25_000)
    assert wide.within_ms == 10_000


def test_stale_fix_stops_counting_after_max_age() -> None:
    chain = EvidenceChain("sv-1").append(_fix(1, 1), 0)
    summary = geolocation_summary(
        chain.entries, start_ms=0, end_ms=60_000, radius_mm=20_000, max_fix_age_ms=15_000
    )
    assert (summary.within_ms, summary.live_ms) == (15_000, 60_000)


def test_no_fixes_means_nothing_within() -> None:
    summary = geolocation_summary((), start_ms=0, end_ms=60_000, radius_mm=20_000)
    assert (summary.within_ms, summary.fixes, summary.max_distance_mm) == (0, 0, None)
    assert summary.within_permille == 0


def test_live_intervals_subtract_gaps() -> None:
    gaps = [Gap(10, 20), Gap(30, 35), Gap(90, 200)]
    assert live_intervals(gaps, 0, 100) == [(0, 10), (20, 30), (35, 90)]
    assert live_intervals([], 5, 5) == []


@pytest.mark.parametrize(
    ("a", "b", "expected_m"),
    [
        # one degree of latitude on the 6371.0088 km sphere: 111.19508 km
        ((0.0, 0.0), (1.0, 0.0), 111_195.08),
        # one degree of longitude on the equator: the same arc
        ((0.0, 10.0), (0.0, 11.0), 111_195.08),
        # pole to pole: half the circumference, pi x 6371008.8 m
        ((90.0, 0.0), (-90.0, 0.0), 20_015_114.35),
    ],
)
def test_haversine_distance(
    a: tuple[float, float], b: tuple[float, float], expected_m: float
) -> None:
    d = distance_mm(GeoPoint.from_degrees(*a), GeoPoint.from_degrees(*b)) / 1000
    assert d == pytest.approx(expected_m, rel=1e-6)


def test_short_distance_to_the_millimetre() -> None:
    site = GeoPoint.from_degrees(30.5428, 114.3162)
    # 20 m due north: 20 / 6371008.8 rad = 0.000179864 degrees
    north = GeoPoint(site.lat_e7 + 1_799, site.lon_e7)
    assert abs(distance_mm(site, north) - 20_004) <= 1
    assert distance_mm(site, site) == 0
