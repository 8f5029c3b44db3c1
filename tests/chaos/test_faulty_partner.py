"""A partner that misbehaves: A's outbox keeps its packets, shows staff that they are
being retried, and once the real partner is back delivers everything exactly once in
per-case order, by itself.

The misbehaving partner is a tiny server on B's federation port presenting B's own node
certificate and requiring A's (real mutual TLS), answering 500, 503 with Retry-After,
slowly (past A's request timeout), garbage, or closing the connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from chaoskit import (
    Federation,
    Proc,
    assert_exactly_once,
    make_federation,
    send_backlog,
    staff,
    wait_drained,
    wait_for,
)
from relay_http_support import Pki

from relay.tls import server_context

MODES = ["500", "503-retry-after", "slow", "garbage", "close"]


def _tls(pki: Pki) -> ssl.SSLContext:
    return server_context(pki.b / "tls.pem", pki.b / "tls.key", pki.bundle,
                          require_client_cert=True)  # fmt: skip


@asynccontextmanager
async def bad_partner(mode: str, pki: Pki, port: int) -> AsyncIterator[list[str]]:
    """Serve the fault ``mode`` on 127.0.0.1:``port``; yield the request log."""
    seen: list[str] = []
    release = asyncio.Event()
    if mode == "close":

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append((await reader.read(4096)).split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", port, ssl=_tls(pki))
        try:
            yield seen
        finally:
            server.close()
            await server.wait_closed()
        return

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        await request.read()
        if mode == "500":
            return web.Response(status=500, text="internal error")
        if mode == "503-retry-after":
            return web.Response(status=503, text="busy", headers={"Retry-After": "1"})
        if mode == "slow":
            await release.wait()  # far past A's request timeout
            return web.Response(status=503)
        return web.Response(status=200, body=b"\x00\xffnot json{", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=_tls(pki)).start()
    try:
        yield seen
    finally:
        release.set()
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
async def test_misbehaving_partner_then_recovery(mode: str, chaos_pki: Pki, tmp_path: Path):
    fed: Federation = make_federation(
        chaos_pki, tmp_path, extra='[limits]\nrequest_timeout = "2s"\n'
    )
    node_a, node_b = Proc(fed.config_a), Proc(fed.config_b)
    await node_a.start()
    try:
        sent = await send_backlog(fed.config_a, 4, 5)
        async with bad_partner(mode, chaos_pki, fed.federation_port_b) as seen:

            async def retried() -> bool:
                return len(seen) >= 3

            await wait_for(retried, f"A to try the {mode} partner three times", 120)
            outbox = (await staff(fed.config_a).get("/staff/v1/outbox"))["items"]
            assert {item["state"] for item in outbox} <= {"queued", "in_flight"}, outbox[0]
            assert any(item["attempts"] > 0 for item in outbox), (
                f"staff cannot see that delivery is failing: {outbox[0]}"
            )
            assert all(item["state"] != "delivered" for item in outbox)
        fault_gone = time.monotonic()
        await node_b.start()
        await wait_drained(fed.config_a, len(sent))
        print(f"{mode}: {len(sent)} packets drained {time.monotonic() - fault_gone:.1f}s "
              "after the partner recovered")  # fmt: skip
        await assert_exactly_once(fed, sent)
    finally:
        await node_a.stop()
        await node_b.stop()
