"""HttpsPeerLink: the core's PeerLink over real mutual TLS, server identity checked."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, serve

from relay.config import Limits
from relay.core.errors import PeerRefused, PeerUnavailable, StoreError
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
        with pytest.raises(PeerUnavailable, match="wrong-node"):
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
        with pytest.raises(PeerUnavailable):
            await link.deliver("320982", ["p1"])
        with pytest.raises(PeerUnavailable):
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
