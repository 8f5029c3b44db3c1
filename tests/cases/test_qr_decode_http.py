"""``POST /public/v1/qr-decode`` on the real public listener: the verify page's QR
reader for browsers without BarcodeDetector (relay.http.qr_decode).

A PNG or JPEG of a licence QR gives the verify URL (read by zxing-cpp), a still without
a code gives null, a non-image 400, an oversized body or bitmap 413, a flood from one
address 429; neither the image nor the text reaches the logs.
"""

from __future__ import annotations

import io
import logging
import random

import aiohttp
import pytest
from casekit_offices import serve
from PIL import Image

from relay.cases.tracking import TokenBucketLimiter
from relay.http.licences import add_licence_routes
from relay.http.public import public_app
from relay.http.qr_decode import MAX_IMAGE_BYTES, QR_DECODE_PATH, add_qr_decode_route
from signing.qr import render_url_qr

URL = "https://zwfw.dafeng.example/v#" + "6BF" * 120  # the length of a compact licence URL


def _app(limiter: TokenBucketLimiter | None = None):
    app = public_app(descriptor=lambda: b"{}", readiness={})
    if limiter is None:
        add_licence_routes(app, None)  # type: ignore[arg-type]  # the route as a node mounts it
    else:
        add_qr_decode_route(app, limiter)
    return app


def _still(fmt: str, *, noise: bool = False) -> bytes:
    """A camera-like still: the QR code on a grey desk, JPEG or PNG."""
    qr = Image.open(io.BytesIO(render_url_qr(URL, scale=4).png)).convert("L")
    still = Image.new("L", (960, 720), 170)
    if noise:  # texture that compresses badly: the body outgrows the 64 KiB JSON limit
        rng = random.Random(7)
        still.putdata([rng.randrange(120, 220) for _ in range(960 * 720)])
    still.paste(qr, (40, 40))
    out = io.BytesIO()
    still.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


async def _post(session: aiohttp.ClientSession, base: str, body: object) -> tuple[int, dict]:
    async with session.post(base + QR_DECODE_PATH, data=body) as response:
        return response.status, {**(await response.json(content_type=None)), **response.headers}


async def test_a_still_of_the_licence_qr_gives_its_url_and_nothing_is_logged(caplog):
    caplog.set_level(logging.DEBUG)
    large = _still("PNG", noise=True)
    assert 64 * 1024 < len(large) <= MAX_IMAGE_BYTES
    blank = io.BytesIO()
    Image.new("L", (640, 480), 200).save(blank, format="PNG")
    async with serve(_app()) as base, aiohttp.ClientSession() as session:
        for body in (_still("PNG"), _still("JPEG"), large):
            status, answer = await _post(session, base, body)
            assert (status, answer["text"]) == (200, URL)
            assert answer["Cache-Control"] == "no-store"
        status, answer = await _post(session, base, blank.getvalue())
        assert (status, answer["text"]) == (200, None)
    assert URL.split("#")[1] not in caplog.text


async def test_bad_and_oversized_images_are_refused_with_problems():
    huge = io.BytesIO()
    Image.new("L", (2500, 2000), 255).save(huge, format="PNG")  # small file, 5 Mpixel
    assert len(huge.getvalue()) < 64 * 1024

    async def endless():
        for _ in range(MAX_IMAGE_BYTES // 65536 + 2):
            yield b"\x00" * 65536

    async with serve(_app()) as base, aiohttp.ClientSession() as session:
        cases = [
            (b"GIF89a not a picture", 400, "invalid-request"),
            (_still("PNG")[:300], 400, "invalid-request"),  # truncated
            (b"", 400, "invalid-request"),
            (io.BytesIO(b"\xff" * (MAX_IMAGE_BYTES + 1)), 413, "body-too-large"),  # declared
            (endless(), 413, "body-too-large"),  # chunked, no length declared
            (huge.getvalue(), 413, "body-too-large"),
        ]
        for body, status, code in cases:
            got, problem = await _post(session, base, body)
            assert (got, problem["type"]) == (status, f"urn:tongban:problem:{code}"), code
            assert problem["Content-Type"] == "application/problem+json"
            assert problem["detail"]


@pytest.mark.parametrize("burst", [3])
async def test_a_flood_from_one_address_is_throttled(burst):
    limiter = TokenBucketLimiter(capacity=burst, rate=1 / 3600)
    async with serve(_app(limiter)) as base, aiohttp.ClientSession() as session:
        for _ in range(burst):
            assert (await _post(session, base, _still("JPEG")))[0] == 200
        status, problem = await _post(session, base, _still("JPEG"))
        assert (status, problem["type"]) == (429, "urn:tongban:problem:too-many-requests")
        assert int(problem["Retry-After"]) >= 1


async def test_a_third_still_while_two_are_decoded_is_told_to_retry_and_a_slow_one_times_out(
    monkeypatch,
):
    import asyncio
    import threading

    import relay.http.qr_decode as qr_decode

    entered = threading.Semaphore(0)
    release = threading.Event()

    def held_read(data: bytes) -> str:
        entered.release()
        assert release.wait(60)
        return "held"

    monkeypatch.setattr(qr_decode, "read_qr", held_read)
    monkeypatch.setattr(qr_decode, "READ_SECONDS", 0.5)
    stalled = asyncio.Event()

    async def slow():
        yield b"\x89PNG"
        await stalled.wait()  # never set: the sender stops mid-image
        yield b""

    async with serve(_app()) as base, aiohttp.ClientSession() as session:
        held = [asyncio.create_task(_post(session, base, b"still")) for _ in range(2)]
        for _ in held:
            assert await asyncio.to_thread(entered.acquire, timeout=60)
        status, problem = await _post(session, base, b"still")
        assert (status, problem["type"]) == (503, "urn:tongban:problem:service-unavailable")
        assert problem["Retry-After"] == "1"
        status, problem = await _post(session, base, slow())
        assert (status, problem["type"]) == (408, "urn:tongban:problem:request-timeout")
        release.set()
        assert [(s, a["text"]) for s, a in await asyncio.gather(*held)] == [(200, "held")] * 2
