"""A body that arrives in several pieces is read to its end: a partner's status list
or directory that a server (or a proxy) sends in two writes was cut at the first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

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


async def _serve() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/list", _in_two_writes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/list"


async def test_a_body_in_two_writes_is_read_whole_and_a_long_one_refused() -> None:
    runner, url = await _serve()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert await read_at_most(response.content, len(BODY)) == BODY
            async with session.get(url) as response:
                assert await read_at_most(response.content, len(BODY) - 1) is None
    finally:
        await runner.cleanup()


async def test_a_status_list_sent_in_two_writes_is_fetched_whole(tmp_path: Path) -> None:
    runner, url = await _serve()
    verifier = LicenceVerifier(
        node_id="320982",
        bundle=lambda: TrustBundle((), ()),
        clock=lambda: datetime.now(UTC),
        public_endpoints={},
        status_dir=tmp_path,
    )
    try:
        assert await verifier._fetch(url) == BODY.decode()
    finally:
        await runner.cleanup()
