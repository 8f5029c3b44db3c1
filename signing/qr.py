"""QR codes for printed e-licences (SVG and PNG), through ``segno``.

The whole compact token goes into one QR code in byte mode (a JWS is base64url text
and dots, which the alphanumeric mode cannot carry). Error correction level M (15 %
recovery) is used when the token fits; otherwise L. No other content is added, so any
QR reader returns the exact token. The quiet zone is 4 modules, as ISO/IEC 18004
requires.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import segno

from signing.errors import MalformedInput

__all__ = ["QrImage", "render_qr"]

QUIET_ZONE = 4


@dataclass(frozen=True)
class QrImage:
    """A rendered QR code and the figures needed to print it."""

    version: int
    error: str
    modules: int
    token_length: int
    svg: bytes
    png: bytes

    def printed_width_mm(self, module_mm: float = 0.5) -> float:
        """Printed width including the quiet zone, for a module of ``module_mm``."""
        return (self.modules + 2 * QUIET_ZONE) * module_mm


def render_qr(token: str, *, scale: int = 4) -> QrImage:
    """Render ``token`` (ASCII) as a QR code; ``scale`` is PNG/SVG pixels per module."""
    if not isinstance(token, str) or not token or not token.isascii():
        raise MalformedInput("a QR token must be non-empty ASCII text")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    for level in ("M", "L"):
        try:
            code = segno.make_qr(token, error=level, boost_error=False, mode="byte")
            break
        except segno.DataOverflowError:
            continue
    else:
        raise MalformedInput(f"a {len(token)}-character token does not fit in one QR code")
    svg, png = io.BytesIO(), io.BytesIO()
    code.save(svg, kind="svg", scale=scale, border=QUIET_ZONE, xmldecl=False)
    code.save(png, kind="png", scale=scale, border=QUIET_ZONE)
    version = code.version
    if not isinstance(version, int):  # pragma: no cover - make_qr never yields Micro QR
        raise MalformedInput("unexpected Micro QR symbol")
    return QrImage(
        version=version,
        error=str(code.error),
        modules=int(code.symbol_size(border=0)[0]),
        token_length=len(token),
        svg=svg.getvalue(),
        png=png.getvalue(),
    )
