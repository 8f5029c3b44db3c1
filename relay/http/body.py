"""Decoding JSON request bodies into problems when they are not what the API says."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from relay.problem import Problem, ProblemCode

__all__ = ["read_json_object", "require_str"]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, 400 ``bad-json``.

    The body size is bounded by the application's ``client_max_size`` (413).
    """
    if request.content_type != "application/json":
        raise Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
    raw = await request.read()
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, ProblemCode.BAD_JSON, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "the body must be a JSON object")
    return value


def require_str(body: dict[str, Any], key: str) -> str:
    """``body[key]`` as a non-empty string, else 400 ``invalid-request``."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise Problem(400, ProblemCode.INVALID_REQUEST, f"{key!r} must be a non-empty string")
    return value
