"""The federation API through real mutual TLS on 127.0.0.1, over a fake relay core."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, client_ssl, serve

from relay.config import Limits
from relay.http.federation import federation_app
from relay.tls import BundleSource, server_context

LIMITS = Limits(max_body_bytes=4096, max_batch_size=3, request_timeout=5.0)
DESCRIPTOR = b'{"node_id": "320982"}'


def _now() -> datetime:
    return datetime.now(UTC)


class Harness:
    def __init__(self, core: FakeCore, url: str, session: aiohttp.ClientSession) -> None:
        self.core, self.url, self.session = core, url, session


@pytest.fixture
async def fed(pki: Pki, tmp_path: Path) -> AsyncIterator[Harness]:
    core = FakeCore(tmp_path)
    app = federation_app(
        core,
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=LIMITS,
        descriptor=lambda: DESCRIPTOR,
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, pki.a))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        yield Harness(core, url, session)


async def _problem(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, object]:
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["code"] == code
    assert body["type"] == f"urn:tongban:problem:{code}"
    assert body["status"] == status
    return dict(body)


async def test_batch_gets_one_receipt_per_packet_for_the_certificate_peer(fed: Harness) -> None:
    resp = await fed.session.post(fed.url + "/federation/v1/packets", json={"packets": ["a", "b"]})
    assert resp.status == 200
    assert await resp.json() == {"receipts": ["receipt-of-a", "receipt-of-b"]}
    assert fed.core.batches == [("420106", ["a", "b"])]


async def test_bad_json_is_a_problem_and_nothing_is_stored(fed: Harness) -> None:
    resp = await fed.session.post(
        fed.url + "/federation/v1/packets",
        data=b'{"packets": [',
        headers={"Content-Type": "application/json"},
    )
    await _problem(resp, 400, "bad-json")
    assert fed.core.batches == []


async def test_wrong_shape_is_invalid_request(fed: Harness) -> None:
    for body in ({"packets": "a"}, {"packets": [1]}, {"packets": []}, ["a"]):
        resp = await fed.session.post(fed.url + "/federation/v1/packets", json=body)
        await _problem(resp, 400, "invalid-request")
    assert fed.core.batches == []


async def test_non_json_media_type_is_415(fed: Harness) -> None:
    resp = await fed.session.post(fed.url + "/federation/v1/packets", data=b"packets=a")
    await _problem(resp, 415, "unsupported-media-type")


async def test_oversize_batch_is_413_batch_too_large(fed: Harness) -> None:
    resp = await fed.session.post(
        fed.url + "/federation/v1/packets", json={"packets": ["a", "b", "c", "d"]}
    )
    body = await _problem(resp, 413, "batch-too-large")
    assert body["max_batch_size"] == 3
    assert fed.core.batches == []


async def test_oversize_body_is_413_body_too_large(fed: Harness) -> None:
    resp = await fed.session.post(
        fed.url + "/federation/v1/packets", json={"packets": ["x" * 5000]}
    )
    body = await _problem(resp, 413, "body-too-large")
    assert body["max_body_bytes"] == LIMITS.max_body_bytes
    assert body["max_batch_size"] == LIMITS.max_batch_size
    assert fed.core.batches == []


async def test_unknown_route_and_wrong_method_are_problems(fed: Harness) -> None:
    await _problem(await fed.session.get(fed.url + "/federation/v1/nothing"), 404, "not-found")
    await _problem(
        await fed.session.get(fed.url + "/federation/v1/packets"), 405, "method-not-allowed"
    )
    await _problem(
        await fed.session.put(fed.url + "/federation/v1/attachments/not-hex", data=b"x"),
        404,
        "not-found",
    )


async def test_descriptor_is_served(fed: Harness) -> None:
    resp = await fed.session.get(fed.url + "/federation/v1/descriptor")
    assert resp.status == 200
    assert await resp.read() == DESCRIPTOR


async def test_revoked_peer_stores_nothing(pki: Pki, fed: Harness) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            fed.url + "/federation/v1/packets",
            json={"packets": ["a"]},
            ssl=client_ssl(pki, pki.revoked),
        )
        await _problem(resp, 403, "peer-revoked")
        with pytest.raises(aiohttp.ClientError):
            await session.post(
                fed.url + "/federation/v1/packets",
                json={"packets": ["a"]},
                ssl=client_ssl(pki, pki.foreign),
            )
    assert fed.core.batches == []


async def test_concurrent_requests_per_peer_are_bounded(pki: Pki, tmp_path: Path) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Slow(FakeCore):
        async def receive_batch(self, peer_id: str, packets: list[str]) -> list[str]:  # type: ignore[override]
            entered.set()
            await gate.wait()
            return await super().receive_batch(peer_id, packets)

    limits = Limits(max_connections_per_peer=1)
    app = federation_app(
        Slow(tmp_path),
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=limits,
        descriptor=lambda: DESCRIPTOR,
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, pki.a))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        first = asyncio.ensure_future(
            session.post(url + "/federation/v1/packets", json={"packets": ["a"]})
        )
        await entered.wait()
        second = await session.post(url + "/federation/v1/packets", json={"packets": ["b"]})
        await _problem(second, 429, "too-many-requests")
        gate.set()
        assert (await first).status == 200


async def test_slow_request_is_cut_off_with_408(pki: Pki, tmp_path: Path) -> None:
    class Stuck(FakeCore):
        async def receive_batch(self, peer_id: str, packets: list[str]) -> list[str]:  # type: ignore[override]
            await asyncio.Event().wait()
            return []

    app = federation_app(
        Stuck(tmp_path),
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=Limits(request_timeout=0.2),
        descriptor=lambda: DESCRIPTOR,
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, pki.a))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        resp = await session.post(url + "/federation/v1/packets", json={"packets": ["a"]})
        await _problem(resp, 408, "request-timeout")


MIB = 1024 * 1024


def _block(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * (MIB // 32)


def _digest(total_mib: int) -> str:
    sha = hashlib.sha256()
    for i in range(total_mib):
        sha.update(_block(i))
    return sha.hexdigest()


async def _blocks(start_mib: int, end_mib: int) -> AsyncIterator[bytes]:
    for i in range(start_mib, end_mib):
        yield _block(i)


async def test_64_mib_attachment_streams_in_bounded_memory_and_resumes(fed: Harness) -> None:
    total = 64
    size = total * MIB
    digest = _digest(total)
    target = f"{fed.url}/federation/v1/attachments/{digest}"

    head = await fed.session.head(target)
    assert head.headers["Upload-Offset"] == "0"

    tracemalloc.start()
    try:
        half = 40 * MIB
        first = await fed.session.put(
            target,
            data=_blocks(0, 40),
            headers={"Content-Range": f"bytes 0-{half - 1}/{size}"},
        )
        assert first.status == 200
        assert (await first.json())["offset"] == half
        head = await fed.session.head(target)
        assert head.headers["Upload-Offset"] == str(half)

        wrong = await fed.session.put(
            target, data=b"x" * 10, headers={"Content-Range": f"bytes 0-9/{size}"}
        )
        await _problem(wrong, 409, "offset-mismatch")

        rest = await fed.session.put(
            target,
            data=_blocks(40, total),
            headers={"Content-Range": f"bytes {half}-{size - 1}/{size}"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rest.status == 200
    assert rest.headers["Upload-Offset"] == str(size)
    assert digest in fed.core.complete
    print(f"64 MiB upload: peak traced memory {peak / MIB:.2f} MiB")
    assert peak < 16 * MIB, f"peak traced memory {peak / MIB:.1f} MiB for a 64 MiB upload"


async def test_upload_longer_than_its_range_is_refused(fed: Harness) -> None:
    data = b"y" * 100
    digest = hashlib.sha256(data).hexdigest()
    resp = await fed.session.put(
        f"{fed.url}/federation/v1/attachments/{digest}",
        data=_chunks(data + b"extra"),
        headers={"Content-Range": "bytes 0-99/100"},
    )
    await _problem(resp, 413, "body-too-large")
    assert digest not in fed.core.complete


async def test_wrong_digest_is_422_digest_mismatch(fed: Harness) -> None:
    digest = "0" * 64
    resp = await fed.session.put(f"{fed.url}/federation/v1/attachments/{digest}", data=b"z" * 10)
    body = await _problem(resp, 422, "digest-mismatch")
    assert json.dumps(body)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_extra_routes_sit_behind_the_same_peer_checks(pki: Pki, tmp_path: Path) -> None:
    from aiohttp import web

    from relay.tls import PEER_KEY

    calls: list[str] = []

    async def checkpoint(request: web.Request) -> web.Response:
        calls.append(request[PEER_KEY].node_id)
        return web.json_response({"checkpoint": "note"})

    app = federation_app(
        FakeCore(tmp_path),
        bundle=BundleSource(pki.bundle_path),
        clock=_now,
        limits=LIMITS,
        descriptor=lambda: DESCRIPTOR,
        partners={"420106"},
        routes=[web.get("/federation/v1/audit/checkpoint", checkpoint)],
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    async with serve(app, context) as url, aiohttp.ClientSession() as session:
        ok = await session.get(url + "/federation/v1/audit/checkpoint", ssl=client_ssl(pki, pki.a))
        assert ok.status == 200
        stranger = await session.get(
            url + "/federation/v1/audit/checkpoint", ssl=client_ssl(pki, pki.stranger)
        )
        assert stranger.status == 403
        assert (await stranger.json(content_type=None))["code"] == "peer-not-partner"
    assert calls == ["420106"]
