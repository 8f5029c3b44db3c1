"""HttpsPeerLink: the core's PeerLink over real mutual TLS, server identity checked."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, serve

from relay.config import Limits
from relay.core.errors import PeerRefused, PeerUnavailable, PeerUnreachable, StoreError
from relay.http.federation import federation_app
from relay.http.link import HttpsPeerLink
from relay.problem import STORAGE_RETRY_AFTER
from relay.tls import BundleSource, server_context


def _now() -> datetime:
    return datetime.now(UTC)


def _link(pki: Pki, partners: dict[str, str]) -> HttpsPeerLink:
    return HttpsPeerLink(
        partners,
        bundle=BundleSource(pki.bundle_path),
        cert=pki.a / "tls.pem",
        key=pki.a / "tls.key",
        clock=_now,
    )


@pytest.fixture
async def node_b(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[FakeCore, str]]:
    core = FakeCore(tmp_path)
    app = federation_app(
        core,
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=Limits(),
        descriptor=lambda: b"{}",
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    async with serve(app, context) as url:
        yield core, url


async def test_deliver_returns_receipts(pki: Pki, node_b: tuple[FakeCore, str]) -> None:
    core, url = node_b
    link = _link(pki, {"320982": url})
    try:
        assert await link.deliver("320982", ["p1", "p2"]) == ["receipt-of-p1", "receipt-of-p2"]
        assert await link.deliver("320982", ["p3"]) == ["receipt-of-p3"]
    finally:
        await link.close()
    assert core.batches == [("420106", ["p1", "p2"]), ("420106", ["p3"])]


async def test_server_that_is_not_the_expected_node_gets_nothing(
    pki: Pki, node_b: tuple[FakeCore, str]
) -> None:
    core, url = node_b
    link = _link(pki, {"420981": url})  # node_b is 320982
    try:
        # nothing was sent (the packets stay queued and expire as usual, never taken
        # for held by a partner they never reached)
        with pytest.raises(PeerUnreachable, match="wrong-node"):
            await link.deliver("420981", ["p1"])
    finally:
        await link.close()
    assert core.batches == []


async def test_unreachable_or_unknown_peer_is_unavailable(pki: Pki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    link = _link(pki, {"320982": f"https://127.0.0.1:{port}"})
    try:
        with pytest.raises(PeerUnreachable):
            await link.deliver("320982", ["p1"])
        with pytest.raises(PeerUnreachable, match="no federation URL"):  # left the directory
            await link.deliver("371422", ["p1"])
    finally:
        await link.close()


async def test_upload_resumes_from_the_peer_offset(pki: Pki, node_b: tuple[FakeCore, str]) -> None:
    core, url = node_b
    blob = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256(blob).hexdigest()
    await core.write_blob("420106", digest, len(blob), 0, _once(blob[:300_000]))
    offsets: list[int] = []

    def open_at(offset: int) -> AsyncIterator[bytes]:
        offsets.append(offset)
        return _chunked(blob[offset:])

    link = _link(pki, {"320982": url})
    try:
        await link.upload_attachment("320982", digest, len(blob), open_at)
        await link.upload_attachment("320982", digest, len(blob), open_at)  # already complete
    finally:
        await link.close()
    assert offsets == [300_000]
    assert digest in core.complete


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def test_server_with_a_revoked_certificate_gets_nothing(pki: Pki, tmp_path: Path) -> None:
    core = FakeCore(tmp_path)
    app = federation_app(
        core,
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=Limits(),
        descriptor=lambda: b"{}",
    )
    context = server_context(
        pki.revoked / "tls.pem", pki.revoked / "tls.key", pki.bundle, require_client_cert=True
    )
    async with serve(app, context) as url:
        link = _link(pki, {"420981": url})
        try:
            with pytest.raises(PeerUnavailable, match="revoked"):
                await link.deliver("420981", ["p1"])
        finally:
            await link.close()
    assert core.batches == []


async def test_a_partner_out_of_storage_says_when_to_come_back(
    pki: Pki, node_b: tuple[FakeCore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real mutual TLS: the partner's ``503 storage-unavailable`` and its
    ``Retry-After`` reach the sender, which waits at least that long."""
    core, url = node_b

    async def full(peer_id: str, packets: object) -> list[str]:
        raise StoreError("disk full")

    monkeypatch.setattr(core, "receive_batch", full)
    link = _link(pki, {"320982": url})
    try:
        with pytest.raises(PeerRefused) as refused:
            await link.deliver("320982", ["p1"])
    finally:
        await link.close()
    assert (refused.value.status, refused.value.code) == (503, "storage-unavailable")
    assert refused.value.retry_after == STORAGE_RETRY_AFTER


async def test_an_upload_the_partner_stops_reading_ends_within_the_chunk_timeout(
    pki: Pki,
) -> None:
    """The socket's timeouts watch reads only: a partner that took the PUT and never read
    its body held the upload (and with it every packet to that partner) for ever, with
    no failure counted and no alert."""
    from aiohttp import web

    stalled, release = asyncio.Event(), asyncio.Event()
    app = web.Application(client_max_size=1 << 40)

    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Upload-Offset": "0"})

    async def put(request: web.Request) -> web.Response:
        stalled.set()
        await release.wait()  # alive, never reading the body
        assert request.transport is not None
        request.transport.abort()  # the unread body would hold the server's stop
        return web.Response()

    app.router.add_route("HEAD", "/federation/v1/attachments/{d}", head)
    app.router.add_put("/federation/v1/attachments/{d}", put)
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    size = 256 << 20  # far more than every buffer between the two holds

    async def zeros(offset: int) -> AsyncIterator[bytes]:
        chunk = bytes(1 << 20)
        for _ in range((size - offset) >> 20):
            yield chunk

    async with serve(app, context) as url:
        link = HttpsPeerLink(
            {"320982": url},
            bundle=BundleSource(pki.bundle_path),
            cert=pki.a / "tls.pem",
            key=pki.a / "tls.key",
            clock=_now,
            request_timeout=1.0,
            upload_chunk_timeout=1.0,
        )
        try:
            began = time.monotonic()
            with pytest.raises(PeerUnavailable):
                async with asyncio.timeout(30):  # the old code is still uploading then
                    await link.upload_attachment("320982", "ab" * 32, size, zeros)
            assert stalled.is_set()
            assert time.monotonic() - began < 20
        finally:
            await link.close()
            release.set()
