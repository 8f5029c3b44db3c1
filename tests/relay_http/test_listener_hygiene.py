"""Listener hygiene of a whole node (issue 11, finding 4 and 5): a silent TCP client on a
TLS listener is closed once the handshake deadline passes, a request the HTTP parser
refuses is answered without an ERROR traceback, and a declared oversize body is answered
413 before any of it is read. Closing connections: a stop drops the TLS handshakes under
way, and a connection whose TLS close cannot finish is aborted, at a stop and while the
listener serves."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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


@asynccontextmanager
async def _stuck_close(
    pki: Pki, close_deadline: float = 30
) -> AsyncIterator[tuple[web.AppRunner, _TlsSite, asyncio.Transport]]:
    """A site (real TLS) with one connection in the state whose close cannot finish: the
    client's EOF arrived while aiohttp had paused reading a body it has not read, so
    Python's TLS transport is flushing without its shutdown timer, and a close() of the
    connection's transport (what aiohttp does) is a no-op."""

    async def unread_body(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never reads the body; cancelled by the cleanup
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/slow", unread_body)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    tls = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    site = _TlsSite(
        runner, "127.0.0.1", 0, ssl_context=tls, handshake_timeout=5, close_deadline=close_deadline
    )
    await site.start()
    client = client_ssl(pki, None)
    client.check_hostname = False
    _, writer = await asyncio.open_connection("127.0.0.1", site._bound_port, ssl=client)
    # past aiohttp's pause (512 KiB buffered), then less than the TLS layer's own
    # 256 KiB, so that the TLS layer still reads from the socket and sees the EOF
    body = b"x" * 600_000
    writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + body)
    await writer.drain()
    async with asyncio.timeout(10):
        while not [t for t in site._open if not t.is_reading()]:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)  # aiohttp paused reading: the body is not consumed
    (transport,) = site._open
    writer.transport.abort()  # EOF, no close_notify
    async with asyncio.timeout(10):  # the site sees the EOF while reading is paused
        while not transport._ssl_protocol._eof_received:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)  # asyncio's own flag: no public view of this state
    try:
        yield runner, site, transport
    finally:
        await runner.cleanup()


def _resource_warnings_of_a_collection() -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_a_stop_aborts_a_connection_whose_tls_close_cannot_finish(pki: Pki) -> None:
    """The stop closes the connection (aiohttp cancels the handler and closes its
    transport, a no-op here): the site must abort it, not leave the socket to the garbage
    collector (the likely cause of the federation tests' CI failure)."""
    async with _stuck_close(pki) as (runner, site, _):
        started = asyncio.get_running_loop().time()
        await runner.cleanup()
        assert await site.closed(grace=0.5) == 1
        assert not site._open
        assert asyncio.get_running_loop().time() - started < 5
    assert not _resource_warnings_of_a_collection()


async def test_a_serving_site_aborts_a_connection_closing_past_the_deadline(pki: Pki) -> None:
    """While the site serves: the connection's close, a no-op here, must not leave it
    open for good (the site holds it, so not even a collection would close it)."""
    async with _stuck_close(pki, close_deadline=0.2) as (_, site, transport):
        transport.close()  # what aiohttp does once it gives up on the request
        assert transport.is_closing()
        async with asyncio.timeout(5):  # two sweeps 0.2 s apart, then the abort
            while site._open:
                await asyncio.sleep(0.05)
        assert not _resource_warnings_of_a_collection()


def _start_now(coroutine: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
    """Run the coroutine's first step now, inside the current callback, and the rest as a
    task: what a task created here would only do in the loop's next turn."""
    try:
        yielded = coroutine.send(None)
    except StopIteration:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def rest(yielded: Any) -> None:
        while True:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: asyncio.sleep(0)
            else:
                await yielded  # a future the coroutine waits for
            try:
                yielded = coroutine.send(None)
            except StopIteration:
                return

    return asyncio.ensure_future(rest(yielded))


async def test_a_connection_accepted_in_the_turn_the_site_stops_is_closed(pki: Pki) -> None:
    """asyncio accepts a connection in one turn of the loop and creates its transport in
    the next (in a task). A stop between the two used to close the server first: the
    transport's creation then failed on the closed server, silently, and left the socket
    to the garbage collector ("unclosed transport", a rare teardown failure of the
    federation tests)."""
    runner = web.AppRunner(web.Application(), shutdown_timeout=0.2)
    await runner.setup()
    tls = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    site = _TlsSite(runner, "127.0.0.1", 0, ssl_context=tls, handshake_timeout=5)
    await site.start()
    loop = asyncio.get_running_loop()
    stopped: list[asyncio.Future[None]] = []
    try:
        with socket.create_connection(("127.0.0.1", site._bound_port)) as client:
            # the kernel has completed the connection: the next turn's select sees the
            # listener readable and runs asyncio's accept, then this due timer, then (a
            # turn later) the task that makes the connection's transport
            loop.call_at(loop.time(), lambda: stopped.append(_start_now(site.stop())))
            async with asyncio.timeout(10):
                while not stopped:
                    await asyncio.sleep(0)
                await stopped[0]
                assert await site.closed(grace=2) == 0
            client.setblocking(False)
            try:
                async with asyncio.timeout(5):
                    assert await loop.sock_recv(client, 1) == b"", "the connection is closed"
            except ConnectionResetError:
                pass  # aborted: closed too
    finally:
        await runner.cleanup()
    assert not _resource_warnings_of_a_collection()
