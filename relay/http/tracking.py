"""Public routes for applicants: case tracking (API, live WebSocket, pages), rating and
complaint. Added to the public application by the node.

Routes::

    POST /public/v1/track              {case, code, lang?} or {short, code, lang?} → the
                                       applicant's view and a signed tracking link
                                       (throttled: 429 problem; relay.cases.short_links)
    GET  /public/v1/track?link=&lang=  the view for a signed tracking link
    GET  /public/v1/track/ws?link=&lang=  WebSocket: {"type": "view", "view": …} now and
                                       after every change; send {"lang": "en"} to switch
    POST /public/v1/track/rating       {link, rating: good|average|poor, comment?}
    POST /public/v1/track/complaint    {link, text}
    GET  /track, /verify               the pages (plain HTML + JS from package files)
    GET  /t/{short}                    the tracking page of a short link (asks the code)
    GET  /l/{short}                    a licence link: on to /v#token=<the licence>
    GET  /v                            the verify page at the compact licence URL
                                       ``/v#<credential>`` (the fragment stays in the browser)
    GET  /static/cases/{file}          their scripts and style sheet

Every answer about a case is the applicant view of :mod:`relay.cases.tracking_view`
of exactly the case the code or link grants; a wrong code and an unknown case number
get the same ``not-found`` answer.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from relay.cases.desk import CaseDesk
from relay.cases.errors import CaseError
from relay.cases.model import EventKind
from relay.cases.store import CaseRecord
from relay.cases.tracking import TokenBucketLimiter
from relay.http.body import read_json_object, require_str
from relay.http.cases import problem_from_case
from relay.problem import Problem, ProblemCode
from signing.encoding import loads_ijson
from signing.errors import MalformedInput

__all__ = ["add_tracking_routes"]

_STATIC = {
    "track.js": "application/javascript",
    "verify.js": "application/javascript",
    "cases.css": "text/css",
}
_PAGES = {"/track": "track.html", "/verify": "verify.html", "/v": "verify.html"}
_NO_STORE = {"Cache-Control": "no-store"}
_WS_WAIT = 25.0  # seconds between change checks (and the heartbeat)


def _asset(name: str) -> bytes:
    return resources.files("relay.http").joinpath("static", name).read_bytes()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = loads_ijson(text)
    except MalformedInput:
        return {}
    return value if isinstance(value, dict) else {}


def _lang(value: object) -> str:
    return "en" if value == "en" else "zh"


def add_tracking_routes(
    app: web.Application,
    desk: CaseDesk,
    *,
    posts: TokenBucketLimiter | None = None,
    max_sockets: int = 1000,
) -> None:
    """Add the tracking routes and pages to a public application (before it starts).

    ``posts`` throttles ratings and complaints per client address; at most
    ``max_sockets`` live tracking WebSockets are held at once (503 beyond)."""
    post_limit = posts or TokenBucketLimiter(capacity=5, rate=1 / 60)
    sockets = {"open": 0}

    def by_link(token: object) -> CaseRecord:
        if not isinstance(token, str) or not token:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'link' must be a tracking link")
        try:
            return desk.lookup_link(token)
        except CaseError as exc:
            raise problem_from_case(exc) from exc

    async def track_post(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        by_short = "short" in body and "case" not in body
        case_id = require_str(body, "short" if by_short else "case").strip()
        code = require_str(body, "code")
        if len(case_id) > 64 or len(code) > 64:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "case or code too long")
        client = request.remote or "unknown"
        try:
            if by_short:
                record = await desk.lookup_short(case_id, code, client)
            else:
                record = await desk.lookup(case_id, code, client)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        view = desk.view(record, _lang(body.get("lang")))
        view["link"] = desk.tracking_link(record.case.header.case_id, record.access_hash)
        return web.json_response(view, headers=_NO_STORE, dumps=_dumps)

    async def track_get(request: web.Request) -> web.Response:
        record = by_link(request.query.get("link"))
        view = desk.view(record, _lang(request.query.get("lang")))
        return web.json_response(view, headers=_NO_STORE, dumps=_dumps)

    async def track_ws(request: web.Request) -> web.WebSocketResponse:
        record = by_link(request.query.get("link"))
        lang = _lang(request.query.get("lang"))
        if sockets["open"] >= max_sockets:
            raise Problem(503, ProblemCode.SERVICE_UNAVAILABLE, "too many live tracking pages")
        sockets["open"] += 1
        try:
            return await follow(request, record, lang)
        finally:
            sockets["open"] -= 1

    async def follow(request: web.Request, record: CaseRecord, lang: str) -> web.WebSocketResponse:
        case_id = record.case.header.case_id
        ws = web.WebSocketResponse(heartbeat=_WS_WAIT, max_msg_size=4096)
        await ws.prepare(request)
        await ws.send_str(_dumps({"type": "view", "view": desk.view(record, lang)}))
        version = record.version
        receiving = asyncio.ensure_future(ws.receive())
        try:
            while not ws.closed:
                change = asyncio.ensure_future(desk.changed(case_id, version, _WS_WAIT))
                done, _ = await asyncio.wait(
                    {receiving, change}, return_when=asyncio.FIRST_COMPLETED
                )
                if change in done:
                    newer = change.result()
                else:
                    change.cancel()
                    newer = None
                if receiving in done:
                    msg = receiving.result()
                    if msg.type is not WSMsgType.TEXT:
                        break
                    lang = _lang(_json_object(msg.data).get("lang", lang))
                    receiving = asyncio.ensure_future(ws.receive())
                    newer = desk.get(case_id)
                if newer is not None:
                    version = newer.version
                    view = desk.view(newer, lang)
                    await ws.send_str(_dumps({"type": "view", "view": view}))
        finally:
            receiving.cancel()
            await ws.close()
        return ws

    async def applicant_step(request: web.Request, kind: EventKind) -> web.Response:
        if post_limit.take(request.remote or "unknown", asyncio.get_running_loop().time()) > 0:
            raise Problem(429, ProblemCode.TOO_MANY_REQUESTS, "too many submissions; try later")
        body = await read_json_object(request)
        record = by_link(body.get("link"))
        if kind is EventKind.RATE:
            details = {"rating": body.get("rating")}
            if body.get("comment"):
                details["comment"] = body.get("comment")
        else:
            details = {"text": body.get("text")}
        try:
            record = await desk.act(record.case.header.case_id, kind, details)
        except CaseError as exc:
            raise problem_from_case(exc) from exc
        view = desk.view(record, _lang(body.get("lang")))
        return web.json_response(view, headers=_NO_STORE, dumps=_dumps)

    async def rating(request: web.Request) -> web.Response:
        return await applicant_step(request, EventKind.RATE)

    async def complaint(request: web.Request) -> web.Response:
        return await applicant_step(request, EventKind.COMPLAIN)

    async def page(request: web.Request) -> web.Response:
        name = "track.html" if request.path.startswith("/t/") else _PAGES[request.path]
        return web.Response(
            body=_asset(name),
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in _STATIC:
            raise Problem(404, ProblemCode.NOT_FOUND, "no such file")
        return web.Response(body=_asset(name), content_type=_STATIC[name], charset="utf-8")

    app.router.add_post("/public/v1/track", track_post)
    app.router.add_get("/public/v1/track", track_get)
    app.router.add_get("/public/v1/track/ws", track_ws)
    app.router.add_post("/public/v1/track/rating", rating)
    app.router.add_post("/public/v1/track/complaint", complaint)
    for path in _PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/t/{short}", page)  # a short link: the page asks for the access code

    async def licence_link(request: web.Request) -> web.Response:
        """A licence link (a partner's licence handed over here): on to the verify page
        with the whole licence, which it verifies at once."""
        links = desk.short_links
        case_id = None if links is None else links.licence_case(request.match_info["short"])
        try:
            token = None if case_id is None else desk.get(case_id).case.view.licence
        except CaseError:
            token = None
        if token is None:  # no such link, or the licence is gone (the retention purge)
            raise Problem(404, ProblemCode.NOT_FOUND, "no licence has this link")
        raise web.HTTPFound(
            f"/v#token={token}",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    app.router.add_get("/l/{short}", licence_link)
    app.router.add_get("/static/cases/{file}", static)
