"""Decoding JSON request bodies (and listing query parameters) into problems when they
are not what the API says."""

from __future__ import annotations

from typing import Any, overload

import aiohttp
from aiohttp import web

from relay.problem import Problem, ProblemCode
from signing.encoding import loads_ijson
from signing.errors import MalformedInput

__all__ = ["limit_param", "read_at_most", "read_json_object", "require_str"]


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """A response body to its end, or None once it is longer than ``limit`` bytes.
    (``stream.read(n)`` returns what has arrived so far, up to ``n``: a body that comes
    in several pieces would be cut short.)"""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, 400 ``bad-json``.

    The body must be I-JSON (``signing.encoding.loads_ijson``: no NaN, numbers within
    ±(2^53-1), valid Unicode, nested at most 32 deep), else 400 ``bad-json`` naming
    where. The body size is bounded by the application's ``client_max_size`` (413).
    """
    if request.content_type != "application/json":
        raise Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
    raw = await request.read()
    try:
        value = loads_ijson(raw)
    except MalformedInput as exc:
        raise Problem(400, ProblemCode.BAD_JSON, f"the body is not valid I-JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "the body must be a JSON object")
    return value


def require_str(body: dict[str, Any], key: str, *, max_length: int = 128) -> str:
    """``body[key]`` as a string of 1 to ``max_length`` characters, else 400
    ``invalid-request``."""
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise Problem(
            400,
            ProblemCode.INVALID_REQUEST,
            f"{key!r} must be a string of 1 to {max_length} characters",
        )
    return value


@overload
def limit_param(request: web.Request, *, most: int, default: int) -> int: ...
@overload
def limit_param(request: web.Request, *, most: int, default: None) -> int | None: ...


def limit_param(request: web.Request, *, most: int, default: int | None) -> int | None:
    """The ``limit`` query parameter of a listing: 1..``most``, ``default`` when absent;
    400 ``invalid-request`` otherwise."""
    text = request.query.get("limit", "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise Problem(400, ProblemCode.INVALID_REQUEST, f"'limit' must be 1..{most}")
    return int(text)
