"""Reading a QR code from a camera still, for the verify page on a laptop.

The verify page (``/v``) reads licence QR codes with the browser's ``BarcodeDetector``
where it exists (Chrome on macOS, ChromeOS, Android). Chromium on Linux and Chrome on
Windows lack it, so there the page posts a still from the camera every ~400 ms to
``POST /public/v1/qr-decode`` on the same node, which decodes it with zxing-cpp.

- Body: a PNG or JPEG image (any ``Content-Type``; the bytes decide), at most
  :data:`MAX_IMAGE_BYTES` (413 ``body-too-large``, refused before reading when the
  declared length is over) and :data:`MAX_PIXELS` pixels (413 before decoding the
  pixels, so a small file cannot unpack into a huge bitmap). Anything else: 400
  ``invalid-request``.
- Answer: 200 ``{"text": "<what the first QR code holds>"}``, or ``{"text": null}`` when
  the still holds no readable QR code (the page simply sends the next one).
- Per client address a token bucket (:data:`BURST` stills, refilled :data:`PER_SECOND`
  a second: a page sends 2.5 a second) answers 429 ``too-many-requests`` with
  ``Retry-After``; at most :data:`DECODERS` stills are decoded at once (in threads), the
  next one answers 503 ``service-unavailable`` with ``Retry-After: 1``. The body is
  read whole first, within :data:`READ_SECONDS` (408 ``request-timeout``), so a slow
  sender never holds a decoder.
- Neither the image nor the text is logged or kept: the text may be a licence.

:func:`read_qr` is the pure core (bytes in, text out); the handler only limits, reads
the body and encodes the answer.
"""

from __future__ import annotations

import asyncio
import io

import zxingcpp
from aiohttp import web

from relay.cases.tracking import TokenBucketLimiter
from relay.http.limits import body_chunks
from relay.problem import Problem, ProblemCode

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "QR_DECODE_PATH",
    "ImageRefused",
    "add_qr_decode_route",
    "read_qr",
]

QR_DECODE_PATH = "/public/v1/qr-decode"
MAX_IMAGE_BYTES = 1024 * 1024
MAX_PIXELS = 4_000_000  # e.g. 2560 x 1440; the page sends at most 960 x 960
BURST = 25
PER_SECOND = 5.0
DECODERS = 2
READ_SECONDS = 10.0


class ImageRefused(ValueError):
    """The bytes are not a PNG or JPEG image, or it has too many pixels
    (``too_large``)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def read_qr(data: bytes, *, max_pixels: int = MAX_PIXELS) -> str | None:
    """The text of the first QR code in a PNG or JPEG image, None when none is readable.
    (Pillow is loaded by the first image, not with the node: most nodes never get one.)"""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageRefused("the body is not a PNG or JPEG image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRefused(f"images are limited to {max_pixels} pixels", too_large=True)
    try:
        grey = image.convert("L")
    except (OSError, ValueError, SyntaxError):  # truncated or corrupt pixel data
        raise ImageRefused("the image data is damaged") from None
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(grey, formats=qr_only)
    return next((result.text for result in found if result.valid), None)


async def _read_image(request: web.Request) -> bytes:
    """The whole body, at most :data:`MAX_IMAGE_BYTES` (413) within
    :data:`READ_SECONDS` (408): a slow sender holds no decoder."""
    too_large = Problem(
        413,
        ProblemCode.BODY_TOO_LARGE,
        f"images are limited to {MAX_IMAGE_BYTES} bytes",
        headers={"Connection": "close"},
    )
    if request.content_length is not None and request.content_length > MAX_IMAGE_BYTES:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(READ_SECONDS):
            async for chunk in body_chunks(request, MAX_IMAGE_BYTES, READ_SECONDS):
                body += chunk
    except TimeoutError:
        raise Problem(
            408, ProblemCode.REQUEST_TIMEOUT, f"the image took over {READ_SECONDS:g} s"
        ) from None
    except Problem as exc:
        raise too_large if exc.status == 413 else exc from None
    if not body:
        raise Problem(400, ProblemCode.INVALID_REQUEST, "the body must be an image")
    return bytes(body)


def add_qr_decode_route(app: web.Application, limiter: TokenBucketLimiter | None = None) -> None:
    """``POST /public/v1/qr-decode`` (the public listener exempts it from its 64 KiB
    JSON body limit; this handler applies :data:`MAX_IMAGE_BYTES`). ``limiter`` (per
    client address) defaults to :data:`BURST` stills refilled :data:`PER_SECOND`."""
    limiter = limiter or TokenBucketLimiter(capacity=BURST, rate=PER_SECOND)
    decoding = {"now": 0}

    async def qr_decode(request: web.Request) -> web.Response:
        wait = limiter.take(request.remote or "unknown", asyncio.get_running_loop().time())
        if wait > 0:
            seconds = max(1, round(wait + 0.5))
            raise Problem(
                429,
                ProblemCode.TOO_MANY_REQUESTS,
                "too many images from this address; try again shortly",
                headers={"Retry-After": str(seconds)},
                extra={"retry_after": seconds},
            )
        body = await _read_image(request)
        if decoding["now"] >= DECODERS:
            raise Problem(
                503,
                ProblemCode.SERVICE_UNAVAILABLE,
                "the node is busy reading other images; try again in a second",
                headers={"Retry-After": "1"},
            )
        decoding["now"] += 1
        try:
            text = await asyncio.to_thread(read_qr, body)
        except ImageRefused as exc:
            too_large = (413, ProblemCode.BODY_TOO_LARGE)
            status, code = too_large if exc.too_large else (400, ProblemCode.INVALID_REQUEST)
            raise Problem(status, code, str(exc)) from None
        finally:
            decoding["now"] -= 1
        return web.json_response({"text": text}, headers={"Cache-Control": "no-store"})

    app.router.add_post(QR_DECODE_PATH, qr_decode)
