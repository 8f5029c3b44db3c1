"""A person who follows a link to nothing on the public listener gets a page, not JSON.

The public listener answers every error with an RFC 9457 problem document, which is what
a program wants. A person opening a link in a browser (a licence's QR code whose licence
was purged, a mistyped tracking link, the bare host) got that JSON in English. For a
browser navigation (``GET`` accepting ``text/html``) outside the APIs, the problem is
answered instead with a short page in Chinese with an English switch (``?lang=en``) that
says why and what to do next; the status code stays the problem's.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.problem import PROBLEM_MEDIA_TYPE

__all__ = ["dead_end_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_API_PREFIXES = (
    "/public/v1/", "/.well-known/", "/healthz", "/readyz", "/openapi.yaml", "/survey/v1/ws",
    "/federation/", "/static/",
)  # fmt: skip

_TEXT = {
    "zh": {
        "title": "找不到您要打开的页面",
        "licence": "这个证照链接已经失效：证照可能已被注销，或已超过保存期限。"
        "请向发证机关核实证照状态，或打开“证照核验”页面扫描证照上的二维码。",
        "gone": "这个链接不完整或已经失效。请从短信、回执或证照上重新打开完整的链接。",
        "busy": "服务暂时无法处理您的请求，请稍后再试。如多次出现，请联系办理机关。",
        "track": "办件查询（输入回执上的查询码）",
        "verify": "证照核验（扫描证照二维码）",
        "switch": "English",
    },
    "en": {
        "title": "The page you opened cannot be found",
        "licence": "This licence link no longer works: the licence may have been cancelled, "
        "or is past the period it is kept. Ask the issuing office about the licence, or "
        "open the licence check page and scan the QR code on the licence.",
        "gone": "This link is incomplete or no longer valid. Open the whole link again from "
        "the text message, the receipt or the licence.",
        "busy": "The service cannot answer right now; please try again later. If it keeps "
        "happening, contact the office handling your case.",
        "track": "Track a case (with the access code on your receipt)",
        "verify": "Check a licence (scan its QR code)",
        "switch": "中文",
    },
}


def _wants_page(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("Accept", "")
        and not request.path.startswith(_API_PREFIXES)
    )


def _page(request: web.Request, status: int) -> web.Response:
    lang = "en" if request.query.get("lang") == "en" else "zh"
    text, tag = _TEXT[lang], "zh-CN" if lang == "zh" else "en"
    if status >= 500:
        why = text["busy"]
    elif request.path.startswith("/l/"):
        why = text["licence"]
    else:
        why = text["gone"]
    other = "zh" if lang == "en" else "en"
    switch = f"{html.escape(request.path)}?lang={other}"
    body = f"""<!doctype html>
<html lang="{tag}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{text["title"]}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;
line-height:1.6}}a{{color:#0b57d0}}</style></head>
<body>
<p><a id="lang-switch" href="{switch}">{text["switch"]}</a></p>
<h1>{text["title"]}</h1>
<p id="why">{why}</p>
<ul>
<li><a id="to-track" href="/track?lang={lang}">{text["track"]}</a></li>
<li><a id="to-verify" href="/v?lang={lang}">{text["verify"]}</a></li>
</ul>
</body></html>
"""
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Content-Language": tag},
    )


@web.middleware
async def dead_end_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the problem middleware: a problem answering a browser navigation becomes
    a page (see the module docstring)."""
    response = await handler(request)
    if (
        response.status >= 400
        and response.content_type == PROBLEM_MEDIA_TYPE
        and _wants_page(request)
    ):
        return _page(request, response.status)
    return response
