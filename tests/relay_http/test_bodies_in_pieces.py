"""A body that arrives in several pieces is read to its end: a partner's status list
or directory that a server (or a proxy) sends in two writes was cut at the first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web
from relay_http_support import serve

from relay.http.body import read_at_most
from relay.http.licences import LicenceVerifier
from signing.certificates import TrustBundle

BODY = b"x" * 5000 + b"." + b"y" * 5000


async def _in_two_writes(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(BODY[:1000])
    await asyncio.sleep(0.2)  # the second piece comes later, as over a slow line
    await response.write(BODY[1000:])
    await response.write_eof()
    return response


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/list", _in_two_writes)
    return app


async def test_a_body_in_two_writes_is_read_whole_and_a_long_one_refused() -> None:
    async with serve(_app(), None) as base, aiohttp.ClientSession() as session:
        async with session.get(f"{base}/list") as response:
            assert await read_at_most(response.content, len(BODY)) == BODY
        async with session.get(f"{base}/list") as response:
            assert await read_at_most(response.content, len(BODY) - 1) is None


async def test_a_status_list_sent_in_two_writes_is_fetched_whole(tmp_path: Path) -> None:
    verifier = LicenceVerifier(
        node_id="320982",
        bundle=lambda: TrustBundle((), ()),
        clock=lambda: datetime.now(UTC),
        public_endpoints={},
        status_dir=tmp_path,
    )
    async with serve(_app(), None) as base:
        assert await verifier._fetch(f"{base}/list") == BODY.decode()
