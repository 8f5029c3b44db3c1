"""Print views of an e-licence: an A4 sheet and a card (85.6 × 54 mm, ID-1), as HTML.

Each is one self-contained HTML document (inline CSS and SVG, no scripts, nothing
fetched) that a browser prints at its ``@page`` size. The QR code holds the compact
form's verify URL (docs/protocol.md §9.4), drawn in millimetres so that its modules
print at a size phone cameras read: 0.5 mm on A4, 0.34 mm on the card (about 37 mm and
25 mm wide for a version-12 code with its quiet zone). Text is Chinese (``zh``) or
English (``en``): the matter's name from the catalog, the holder, the scope, the
issuing office and dates in Beijing time, written as each language writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from html import escape

from agreements.catalog import default_catalog
from signing.licence import Licence
from signing.qr import url_qr_svg

__all__ = ["A4_MODULE_MM", "CARD_MODULE_MM", "PrintSize", "print_view"]

BEIJING = timezone(timedelta(hours=8), "CST")
A4_MODULE_MM = 0.5
CARD_MODULE_MM = 0.34


class PrintSize(StrEnum):
    A4 = "a4"
    CARD = "card"


@dataclass(frozen=True)
class _Words:
    title: str
    number: str
    holder: str
    holder_id: str
    scope: str
    valid: str
    issuer: str
    issued: str
    scan: str
    until: str


_WORDS = {
    "zh": _Words(
        "电子证照", "证照编号", "持证人", "统一社会信用代码", "许可范围", "有效期",
        "签发机关", "签发日期", "扫码核验真伪与状态", "至",
    ),
    "en": _Words(
        "E-licence", "Licence number", "Holder", "Unified social credit code", "Scope",
        "Valid", "Issued by", "Issued on", "Scan to verify authenticity and status", "to",
    ),
}  # fmt: skip


def _date(at: datetime, lang: str) -> str:
    local = at.astimezone(BEIJING)
    if lang == "zh":
        return f"{local.year}年{local.month}月{local.day}日"
    return f"{local.day} {local:%B} {local.year}"


def _matter(code: str, lang: str) -> str:
    entry = default_catalog().get(code)
    if entry is None:
        return code
    return entry.name_zh if lang == "zh" else entry.name_en


_CSS = {
    PrintSize.A4: """
@page { size: A4; margin: 18mm; }
body { font: 12pt/1.6 "Noto Serif CJK SC", "Songti SC", serif; color: #000; margin: 0; }
h1 { font-size: 22pt; text-align: center; margin: 0 0 2mm; letter-spacing: 0.2em; }
.sub { text-align: center; margin: 0 0 10mm; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; width: 42mm; vertical-align: top; padding: 2mm 0; font-weight: normal; }
td { padding: 2mm 0; }
.qr { margin-top: 12mm; text-align: center; }
.qr p { font-size: 10pt; margin: 2mm 0 0; }
""",
    PrintSize.CARD: """
@page { size: 85.6mm 54mm; margin: 0; }
html, body { width: 85.6mm; height: 54mm; margin: 0; }
body { font: 6.5pt/1.35 "Noto Sans CJK SC", "PingFang SC", sans-serif; color: #000;
       display: flex; box-sizing: border-box; padding: 3mm; overflow: hidden; }
.text { flex: 1; min-width: 0; padding-right: 2mm; }
h1 { font-size: 9pt; margin: 0 0 1mm; }
.sub { margin: 0 0 1mm; font-size: 6pt; }
table { border-collapse: collapse; }
th { text-align: left; font-weight: normal; padding: 0 1.5mm 0 0; white-space: nowrap;
     vertical-align: top; }
td { padding: 0; }
.qr { flex: none; align-self: center; text-align: center; }
.qr p { font-size: 5pt; margin: 0.5mm 0 0; width: 25mm; }
""",
}


def print_view(licence: Licence, url: str, *, size: PrintSize, lang: str = "zh") -> str:
    """The HTML print view of ``licence`` whose compact form's verify URL is ``url``."""
    words = _WORDS["en" if lang == "en" else "zh"]
    lang = "en" if lang == "en" else "zh"
    issuer = licence.department_zh if lang == "zh" else licence.department_en
    valid = f"{_date(licence.valid_from, lang)} {words.until} {_date(licence.valid_until, lang)}"
    rows = [
        (words.number, licence.number),
        (words.holder, licence.holder_name),
        (words.holder_id, licence.holder_id),
        (words.scope, licence.scope),
        (words.valid, valid),
        (words.issuer, issuer),
        (words.issued, _date(licence.issued_at, lang)),
    ]
    table = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    module = A4_MODULE_MM if size is PrintSize.A4 else CARD_MODULE_MM
    qr = url_qr_svg(url, module_mm=module)
    title = escape(_matter(licence.licence_type, lang))
    body = f"""<h1>{title}</h1>
<p class="sub">{escape(words.title)}</p>
<table>
{table}
</table>"""
    if size is PrintSize.CARD:
        body = f'<div class="text">{body}</div>'
    html_lang = "zh-CN" if lang == "zh" else "en"
    return f"""<!doctype html>
<html lang="{html_lang}">
<head>
<meta charset="utf-8">
<title>{title} {escape(licence.number)}</title>
<style>{_CSS[size]}</style>
</head>
<body>
{body}
<div class="qr" data-module-mm="{module}">{qr}<p>{escape(words.scan)}</p></div>
</body>
</html>
"""
