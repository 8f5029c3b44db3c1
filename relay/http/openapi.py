"""Serving the OpenAPI 3.1 description of the federation and staff APIs."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from aiohttp import web

__all__ = ["openapi_bytes", "openapi_handler"]


@cache
def openapi_bytes() -> bytes:
    """``openapi.yaml`` shipped with the package (``docs/openapi.yaml`` links to it)."""
    return files("relay.http").joinpath("openapi.yaml").read_bytes()


async def openapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=openapi_bytes(), content_type="application/yaml")
