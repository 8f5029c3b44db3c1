"""Request limits of the HTTP shell: time, per-peer concurrency, streamed upload bodies.

- :func:`timeout_middleware` cuts a request off after ``request_timeout`` (408 problem);
  streaming uploads are exempt as a whole and limited per chunk instead
  (:func:`body_chunks`), so a large attachment may take long but a stalled one may not.
- :func:`declared_size_middleware` answers 413 ``body-too-large`` at once when a
  (non-upload) request declares a ``Content-Length`` over the JSON body limit, before
  reading any of it (aiohttp's own check only fires once that much has arrived, so a
  client declaring 10 GB and sending nothing was held until the request timeout).
- :func:`peer_concurrency_middleware` bounds concurrent federation requests per partner
  node (by certificate node id): beyond the bound, 429 ``too-many-requests``.
- :func:`upload_range` reads ``Content-Range: bytes START-END/TOTAL`` (END inclusive)
  or, without it, a whole body of ``Content-Length`` bytes from offset 0.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.problem import Problem, ProblemCode
from relay.tls import PEER_KEY

__all__ = [
    "CHUNK_SIZE",
    "UploadRange",
    "body_chunks",
    "declared_size_middleware",
    "peer_concurrency_middleware",
    "timeout_middleware",
    "upload_range",
]

CHUNK_SIZE = 256 * 1024
_log = logging.getLogger("tongban.relay.http")
_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})")


def timeout_middleware(seconds: float, exempt: Callable[[web.Request], bool]) -> Middleware:
    """Answer 408 ``request-timeout`` when a (non-exempt) request takes over ``seconds``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if exempt(request):
            return await handler(request)
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            raise Problem(
                408, ProblemCode.REQUEST_TIMEOUT, f"the request took over {seconds:g} s"
            ) from None

    return middleware


def declared_size_middleware(
    max_bytes: int,
    exempt: Callable[[web.Request], bool] = lambda request: False,
    *,
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
) -> Middleware:
    """Answer 413 before reading when ``Content-Length`` exceeds ``max_bytes``; the
    connection is then closed (its unread body cannot be skipped). ``extra`` are
    extension members of the problem (the federation listener's limits, which a
    sender cuts its batches by; a callable is asked on each refusal)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes and not exempt(request):
            raise Problem(
                413,
                ProblemCode.BODY_TOO_LARGE,
                f"request bodies are limited to {max_bytes} bytes",
                headers={"Connection": "close"},
                extra=extra() if callable(extra) else extra,
            )
        return await handler(request)

    return middleware


def peer_concurrency_middleware(limit: int) -> Middleware:
    """Allow at most ``limit`` concurrent requests per authenticated peer node."""
    active: Counter[str] = Counter()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request[PEER_KEY].node_id
        if active[peer] >= limit:
            raise Problem(
                429,
                ProblemCode.TOO_MANY_REQUESTS,
                f"at most {limit} concurrent requests per partner node",
                headers={"Retry-After": "1"},
            )
        active[peer] += 1
        try:
            return await handler(request)
        finally:
            active[peer] -= 1
            if not active[peer]:
                del active[peer]

    return middleware


@dataclass(frozen=True)
class UploadRange:
    """Where an upload body goes: bytes ``offset .. offset+length-1`` of ``size``."""

    offset: int
    length: int
    size: int


def upload_range(request: web.Request, *, max_size: int) -> UploadRange:
    """The upload range of a PUT, from ``Content-Range`` or ``Content-Length``."""
    header = request.headers.get("Content-Range")
    if header is None:
        length = request.content_length
        if length is None:
            raise Problem(
                400,
                ProblemCode.INVALID_REQUEST,
                "an upload needs Content-Range: bytes START-END/TOTAL or Content-Length",
            )
        result = UploadRange(offset=0, length=length, size=length)
    else:
        match = _RANGE.fullmatch(header.strip())
        if match is None:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, "Content-Range must be bytes START-END/TOTAL"
            )
        start, end, total = (int(g) for g in match.groups())
        if not start <= end < total:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "Content-Range is out of order")
        result = UploadRange(offset=start, length=end - start + 1, size=total)
        if request.content_length is not None and request.content_length != result.length:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, "Content-Length differs from Content-Range"
            )
    if result.size <= 0:
        raise Problem(400, ProblemCode.INVALID_REQUEST, "an attachment cannot be empty")
    if result.size > max_size:
        raise Problem(
            413, ProblemCode.BODY_TOO_LARGE, f"attachments are limited to {max_size} bytes"
        )
    return result


async def body_chunks(
    request: web.Request, length: int, chunk_timeout: float
) -> AsyncIterator[bytes]:
    """Stream the request body in chunks of at most :data:`CHUNK_SIZE` bytes.

    Memory stays constant whatever the body size. Refuses (413) a body longer than
    ``length``; a shorter one, or a connection lost mid-body, simply ends (a resumable
    upload that stopped early: the bytes received so far are kept). A
    client that sends nothing for ``chunk_timeout`` seconds is cut off (408).
    """
    received = 0
    iterator = request.content.iter_chunked(CHUNK_SIZE).__aiter__()
    while True:
        try:
            async with asyncio.timeout(chunk_timeout):
                chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except ConnectionError:
            # the client went away mid-body: what arrived is kept (a resumable upload
            # continues from the held offset); there is nobody left to answer
            _log.info("upload to %s ended by the client after %d bytes", request.path, received)
            return
        except TimeoutError:
            raise Problem(
                408, ProblemCode.REQUEST_TIMEOUT, f"no upload data for {chunk_timeout:g} s"
            ) from None
        received += len(chunk)
        if received > length:
            raise Problem(
                413, ProblemCode.BODY_TOO_LARGE, "the body is longer than its Content-Range"
            )
        yield chunk
