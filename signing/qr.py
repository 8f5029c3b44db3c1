"""QR codes for printed e-licences (SVG and PNG), through ``segno``.

:func:`render_url_qr` draws a verify URL of the compact form
(:mod:`signing.licence_compact`): the part up to and including ``#`` in byte mode, the
fragment of decimal digits in numeric mode (10 bits for 3 digits), which keeps a typical
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

__all__ = ["QrImage", "render_qr", "render_url_qr", "url_qr_svg", "url_symbol"]

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
    if fragment and fragment.isascii() and fragment.isdigit():
        return [(head + "#", consts.MODE_BYTE), (fragment, consts.MODE_NUMERIC)], None
    if fragment and set(fragment) <= _ALNUM:
        return [(head + "#", consts.MODE_BYTE), (fragment, consts.MODE_ALPHANUMERIC)], None
    return url, "byte"


def url_symbol(url: str) -> segno.QRCode:
    """The QR symbol of a verify URL ``<base>/v#<fragment>``: a fragment of digits goes
    into a numeric segment (one of QR alphanumeric characters into an alphanumeric one);
    level M, else L."""
    content, mode = _url_content(url)
    return _symbol(url, content, mode=mode)


def render_url_qr(url: str, *, scale: int = 4) -> QrImage:
    """:func:`url_symbol` rendered as SVG and PNG."""
    return _images(url, url_symbol(url), scale=scale)


def url_qr_svg(url: str, *, module_mm: float) -> str:
    """The QR code of :func:`render_url_qr` as inline SVG sized in millimetres
    (``module_mm`` a module, quiet zone included), for a print view."""
    out = io.BytesIO()
    url_symbol(url).save(
        out, kind="svg", scale=module_mm, unit="mm", border=QUIET_ZONE, xmldecl=False
    )
    return out.getvalue().decode("ascii")


def _symbol(text: str, content: Any, *, mode: str | None) -> segno.QRCode:
    for level in ("M", "L"):
        try:
            return segno.make_qr(content, error=level, boost_error=False, mode=mode)
        except segno.DataOverflowError:
            continue
    raise MalformedInput(f"a {len(text)}-character text does not fit in one QR code")


def _render(text: str, content: Any, *, mode: str | None, scale: int) -> QrImage:
    return _images(text, _symbol(text, content, mode=mode), scale=scale)


def _images(text: str, code: segno.QRCode, *, scale: int) -> QrImage:
    if scale < 1:
        raise ValueError("scale must be at least 1")
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
