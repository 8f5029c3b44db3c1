"""WGS-84 points as integers, and the great-circle distance between them.

Coordinates travel as integers so that they can be hashed as canonical JSON (which
has no floating-point numbers): ``lat_e7`` and ``lon_e7`` are degrees times 10^7
(about 1.1 cm at the equator), the convention of OpenStreetMap and many GNSS
protocols. Distances and accuracies are integer millimetres.

:func:`distance_mm` is the haversine formula on a sphere of radius 6 371 008.8 m (the
IUGG mean Earth radius), rounded half-to-even to a millimetre. Its error against the
ellipsoid (up to about 0.5%) is far below a phone's GNSS accuracy at survey distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from remote_survey.errors import InvalidSession

__all__ = ["EARTH_RADIUS_MM", "GeoPoint", "distance_mm"]

EARTH_RADIUS_MM = 6_371_008_800


@dataclass(frozen=True)
class GeoPoint:
    """A WGS-84 latitude/longitude in units of 10^-7 degree."""

    lat_e7: int
    lon_e7: int

    def __post_init__(self) -> None:
        for name in ("lat_e7", "lon_e7"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSession(f"{name} must be an integer (degrees x 10^7)")
        if not -900_000_000 <= self.lat_e7 <= 900_000_000:
            raise InvalidSession(f"latitude {self.lat_e7} x 1e-7 is outside [-90, 90] degrees")
        if not -1_800_000_000 <= self.lon_e7 <= 1_800_000_000:
            raise InvalidSession(f"longitude {self.lon_e7} x 1e-7 is outside [-180, 180] degrees")

    @classmethod
    def from_degrees(cls, lat: float, lon: float) -> GeoPoint:
        return cls(lat_e7=round(lat * 10_000_000), lon_e7=round(lon * 10_000_000))

    @property
    def lat(self) -> float:
        return self.lat_e7 / 10_000_000

    @property
    def lon(self) -> float:
        return self.lon_e7 / 10_000_000


def distance_mm(a: GeoPoint, b: GeoPoint) -> int:
    """Haversine great-circle distance between ``a`` and ``b`` in whole millimetres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlmb = math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return round(2 * EARTH_RADIUS_MM * math.asin(min(1.0, math.sqrt(h))))
