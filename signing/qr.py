"""QR codes for printed e-licences (SVG and PNG), through ``segno``.

:func:`render_url_qr` draws a verify URL of the compact form
(:mod:`signing.licence_compact`): the part up to and including ``#`` in byte mode, the
base45 fragment in alphanumeric mode (5.5 bits a character), which keeps a typical
licence at version 12 or less at level M. :func:`render_qr` puts a whole ``vc+jwt``
into one code in byte mode (a JWS is base64url text and dots, which the alphanumeric
mode cannot carry). Error correction level M (15 %
recovery) is used when the token fits; otherwise L. No other content is added, so any
QR reader returns the exact token. The quiet zone is 4 modules, as ISO/IEC 18004
requires.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import segno
from segno import consts

from signing.errors import MalformedInput

__all__ = ["QrImage", "render_qr", "render_url_qr", "url_qr_svg"]

QUIET_ZONE = 4
PNG_DPI = 300
"""The PNG's stated resolution: at the default scale of 4 a module prints 0.34 mm wide."""


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
    return _render(token, token, mode="byte", scale=scale)


_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def _url_content(url: str) -> tuple[Any, str | None]:
    if not isinstance(url, str) or not url.isascii() or "#" not in url:
        raise MalformedInput("a licence URL is ASCII text with a #fragment")
    head, fragment = url.split("#", 1)
    if fragment and set(fragment) <= _ALNUM:
        return [(head + "#", consts.MODE_BYTE), (fragment, consts.MODE_ALPHANUMERIC)], None
    return url, "byte"


def render_url_qr(url: str, *, scale: int = 4) -> QrImage:
    """Render a verify URL ``<base>/v#<fragment>``: the fragment, when it is all QR
    alphanumeric characters, goes into an alphanumeric segment."""
    content, mode = _url_content(url)
    return _render(url, content, mode=mode, scale=scale)


def url_qr_svg(url: str, *, module_mm: float) -> str:
    """The QR code of :func:`render_url_qr` as inline SVG sized in millimetres
    (``module_mm`` a module, quiet zone included), for a print view."""
    content, mode = _url_content(url)
    for level in ("M", "L"):
        try:
            code = segno.make_qr(content, error=level, boost_error=False, mode=mode)
            break
        except segno.DataOverflowError:
            continue
    else:
        raise MalformedInput(f"a {len(url)}-character URL does not fit in one QR code")
    out = io.BytesIO()
    code.save(out, kind="svg", scale=module_mm, unit="mm", border=QUIET_ZONE, xmldecl=False)
    return out.getvalue().decode("ascii")


def _render(text: str, content: Any, *, mode: str | None, scale: int) -> QrImage:
    if scale < 1:
        raise ValueError("scale must be at least 1")
    for level in ("M", "L"):
        try:
            code = segno.make_qr(content, error=level, boost_error=False, mode=mode)
            break
        except segno.DataOverflowError:
            continue
    else:
        raise MalformedInput(f"a {len(text)}-character text does not fit in one QR code")
    svg, png = io.BytesIO(), io.BytesIO()
    code.save(svg, kind="svg", scale=scale, border=QUIET_ZONE, xmldecl=False)
    code.save(png, kind="png", scale=scale, border=QUIET_ZONE, dpi=PNG_DPI)
    version = code.version
    if not isinstance(version, int):  # pragma: no cover - make_qr never yields Micro QR
        raise MalformedInput("unexpected Micro QR symbol")
    return QrImage(
        version=version,
        error=str(code.error),
        modules=int(code.symbol_size(border=0)[0]),
        token_length=len(text),
        svg=svg.getvalue(),
        png=png.getvalue(),
    )
