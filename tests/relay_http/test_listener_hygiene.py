"""Listener hygiene of a whole node (issue 11, finding 4 and 5): a silent TCP client on a
TLS listener is closed once the handshake deadline passes, a request the HTTP parser
refuses is answered without an ERROR traceback, and a declared oversize body is answered
413 before any of it is read."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from relay_http_support import Pki, client_ssl, free_ports, write_config
from test_node import Built, _factory

from relay.config import load_config
from relay.node import Node, _TlsSite
from relay.tls import server_context


@pytest.fixture
async def short_node(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Node, tuple[int, ...]]]:
    """A node whose request timeout (and so TLS handshake deadline) is 500 ms; the JSON
    body limit is 4 KiB."""
    ports = free_ports(3)
    config_path = write_config(
        tmp_path / "n",
        pki,
        pki.a,
        "420106",
        ports=ports,  # type: ignore[arg-type]
        extra='[limits]\nrequest_timeout = "500ms"\nmax_body_bytes = 4096\n',
    )
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, Built()))
    await node.start()
    try:
        yield node, ports
    finally:
        await node.stop()


async def test_silent_tcp_client_on_the_federation_port_is_closed(
    short_node: tuple[Node, tuple[int, ...]],
) -> None:
    _, ports = short_node
    reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
    try:
        # asyncio's default TLS handshake timeout is 60 s; the node's is request_timeout
        async with asyncio.timeout(30):
            rest = await reader.read()  # EOF once the node gives up on us
        assert rest == b""
    finally:
        writer.close()


async def test_a_request_the_parser_refuses_logs_no_error(
    short_node: tuple[Node, tuple[int, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    _, ports = short_node
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", ports[1])
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(30):
        answer = await reader.read()
    writer.close()
    assert answer.split(b" ")[1] in (b"400", b"431")
    refusals = [r for r in caplog.records if "Error handling request" in r.getMessage()]
    assert refusals, "the refusal is still logged"
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in refusals)


async def test_declared_oversize_body_is_answered_413_before_reading(
    short_node: tuple[Node, tuple[int, ...]], pki: Pki
) -> None:
    _, ports = short_node
    context: ssl.SSLContext = client_ssl(pki, None)
    context.check_hostname = False
    reader, writer = await asyncio.open_connection("127.0.0.1", ports[2], ssl=context)
    writer.write(
        b"POST /staff/v1/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    await writer.drain()
    # nothing of the body is sent: the answer can only come from the declared length
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in head


async def test_a_stopping_node_closes_connections_still_in_their_tls_handshake(
    pki: Pki, tmp_path: Path
) -> None:
    """aiohttp knows a TLS connection only once its handshake is done; a stop must not
    leave the half-open ones to the handshake deadline (30 s here)."""
    ports = free_ports(3)
    config_path = write_config(tmp_path / "n", pki, pki.a, "420106", ports=ports)  # type: ignore[arg-type]
    node = Node(
        load_config(config_path), core_factory=_factory(tmp_path, Built()), shutdown_timeout=5
    )
    await node.start()
    silent = [await asyncio.open_connection("127.0.0.1", port) for port in (ports[0], ports[2])]
    try:
        async with asyncio.timeout(10):  # both accepted, their handshakes awaited
            while sum(len(site._accepting) for site in node._sites) < 2:
                await asyncio.sleep(0.01)
        await node.stop()
        for reader, _ in silent:
            async with asyncio.timeout(2):
                assert await reader.read() == b""
    finally:
        for _, writer in silent:
            writer.close()


async def test_a_stop_aborts_a_connection_whose_tls_close_cannot_finish(pki: Pki) -> None:
    """A client's EOF that arrives while aiohttp has paused reading (a body it has not
    read yet) leaves Python's TLS transport flushing without its shutdown timer, and
    aiohttp's close() is then a no-op: the site must abort that connection, not leave
    the socket to the garbage collector (the CI failure of the federation tests)."""
    entered = asyncio.Event()

    async def unread_body(request: web.Request) -> web.Response:
        entered.set()
        await asyncio.Event().wait()  # never reads the body; cancelled by the stop
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/slow", unread_body)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    tls = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    site = _TlsSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=tls,
        handshake_timeout=5,
    )
    await site.start()
    port = site._bound_port
    client = client_ssl(pki, None)
    client.check_hostname = False
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    # past aiohttp's pause (512 KiB buffered), then less than the TLS layer's own
    # 256 KiB, so that the TLS layer still reads from the socket and sees the EOF
    body = b"x" * 600_000
    writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + body)
    await writer.drain()
    async with asyncio.timeout(10):
        await entered.wait()
        while not any(not t.is_reading() for t in site._open):  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)  # aiohttp paused reading: the body is not consumed
    writer.transport.abort()  # EOF, no close_notify
    await asyncio.sleep(0.2)  # the node sees the EOF while reading is paused

    started = asyncio.get_running_loop().time()
    await runner.cleanup()  # cancels the handler; aiohttp closes its transport
    aborted = await site.closed(grace=0.5)
    assert aborted == 1
    assert not site._open
    assert asyncio.get_running_loop().time() - started < 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
