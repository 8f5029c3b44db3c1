"""Public licence verification: any office's e-licence checked by this node.

``POST /public/v1/licences/verify`` ``{"token": "<vc+jwt>"}`` or
``{"credential": "<compact credential or its verify URL>"}`` answers the
:class:`~signing.licence_report.LicenceReport` as JSON (200 whether valid or not; the
report says which check failed), with ``names`` added for people: the licence type's
matter name from the catalog (``{"zh", "en"}``, null when the catalog lacks it) and the
issuing office's names. A compact licence's key id is resolved from the node
descriptors this node verified (its own and its partners'; :class:`IssuerList`).
Status lists are fetched only from the public endpoint of the *issuing* node named in
a verified descriptor (``<public>/.well-known/tongban/status/<purpose>``), never from an
arbitrary URL in the token; this node's own lists are read from its status directory.
Each node serves
its own lists at ``GET /.well-known/tongban/status/{revocation|suspension}`` from
``<data_dir>/status/<purpose>.jwt`` (written with ``tongban licence status set``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agreements.catalog import Catalog, default_catalog
from relay.http.body import read_at_most, read_json_object, require_str
from relay.http.qr_decode import add_qr_decode_route
from relay.problem import Problem, ProblemCode
from relay.tls import client_context
from signing.certificates import TrustBundle
from signing.errors import MalformedInput
from signing.licence import Entitlement, Licence, parse_licence, verify_licence
from signing.licence_compact import (
    STATUS_PATH,
    IssuerList,
    IssuerResolver,
    parse_compact_licence,
    verify_compact_licence,
)
from signing.status_list import StatusPurpose

__all__ = [
    "STATUS_PATH",
    "LicenceVerifier",
    "add_licence_routes",
    "catalog_matter_names",
    "status_url",
]

_log = logging.getLogger("tongban.relay.licences")

_MAX_LIST = 1 << 20
_MAX_TOKEN_CHARS = 64 * 1024


@functools.cache
def _catalog() -> Catalog:
    return default_catalog()


def catalog_matter_names(code: str) -> tuple[str, str] | None:
    """A licence type's matter name (zh, en) from the bundled catalog, None if absent."""
    entry = _catalog().get(code)
    return None if entry is None else (entry.name_zh, entry.name_en)


def status_url(public_base: str, purpose: StatusPurpose) -> str:
    """Where the node at ``public_base`` publishes its ``purpose`` status list."""
    return f"{public_base.rstrip('/')}{STATUS_PATH}{purpose.value}"


class LicenceVerifier:
    """Verify licences with status lists from the issuers' public endpoints."""

    def __init__(
        self,
        *,
        node_id: str,
        bundle: Callable[[], TrustBundle],
        clock: Callable[[], datetime],
        public_endpoints: Mapping[str, str],
        status_dir: Path,
        entitled: Entitlement | None = None,
        fetch_timeout: float = 5.0,
        issuers: IssuerResolver | None = None,
        matter_names: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._bundle = bundle
        self._clock = clock
        self._endpoints = dict(public_endpoints)
        self.status_dir = status_dir
        self._entitled = entitled
        self._timeout = fetch_timeout
        self.issuers: IssuerResolver = issuers or IssuerList()
        self._matter_names = matter_names or catalog_matter_names

    def public_endpoint(self, node_id: str) -> str | None:
        """The public base URL a verified descriptor gives for ``node_id``."""
        return self._endpoints.get(node_id)

    def own_list(self, purpose: StatusPurpose) -> str | None:
        try:
            return (self.status_dir / f"{purpose.value}.jwt").read_text("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None

    async def _fetch(self, url: str) -> str | None:
        context: ssl.SSLContext | None = None
        if url.startswith("https:"):
            context = client_context(self._bundle())
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, ssl=context if context else False) as response,
            ):
                if response.status != 200:
                    return None
                data = await read_at_most(response.content, _MAX_LIST)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            _log.info("status list %s unavailable: %s", url, exc)
            return None
        if data is None:
            _log.info("status list %s is larger than %d bytes", url, _MAX_LIST)
            return None
        return data.decode("ascii", "replace").strip()

    async def status_lists(self, token: str, *, compact: bool = False) -> dict[str, str]:
        """The issuer's status lists the licence names, fetched only where allowed."""
        try:
            licence: Licence = (
                parse_compact_licence(token, self.issuers) if compact else parse_licence(token)
            )
        except MalformedInput:
            return {}
        issuer = licence.issuer_node
        out: dict[str, str] = {}
        for entry in licence.status:
            if issuer == self.node_id:
                own = self.own_list(entry.purpose)
                if own is not None:
                    out[entry.list_url] = own
                continue
            base = self._endpoints.get(issuer)
            if base is None or entry.list_url != status_url(base, entry.purpose):
                continue  # not the issuer's published place: never fetched
            fetched = await self._fetch(entry.list_url)
            if fetched is not None:
                out[entry.list_url] = fetched
        return out

    async def verify(self, token: str, *, compact: bool = False) -> dict[str, Any]:
        lists = await self.status_lists(token, compact=compact)
        if compact:
            report = await asyncio.to_thread(
                verify_compact_licence,
                token,
                self._bundle(),
                self.issuers,
                at=self._clock(),
                status_lists=lists,
                entitled=self._entitled,
            )
        else:
            report = await asyncio.to_thread(
                verify_licence,
                token,
                self._bundle(),
                at=self._clock(),
                status_lists=lists,
                entitled=self._entitled,
            )
        out = report.to_json()
        out["names"] = self._names(report.licence)
        return out

    def _names(self, licence: Licence | None) -> dict[str, Any]:
        if licence is None:
            return {"licence_type": None}
        matter = self._matter_names(licence.licence_type)
        return {
            "licence_type": None if matter is None else {"zh": matter[0], "en": matter[1]},
            "issuer": {"zh": licence.department_zh, "en": licence.department_en},
        }


def add_licence_routes(app: web.Application, verifier: LicenceVerifier) -> None:
    """``POST /public/v1/licences/verify``, the status list routes and the verify page's
    QR reader for cameras without ``BarcodeDetector`` (:mod:`relay.http.qr_decode`)."""

    async def verify(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        if "credential" in body and "token" not in body:
            credential = require_str(body, "credential", max_length=8192).strip()
            report = await verifier.verify(credential, compact=True)
            return web.json_response(report, headers={"Cache-Control": "no-store"})
        token = require_str(body, "token", max_length=_MAX_TOKEN_CHARS).strip()
        if len(token) > 16384:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'token' is too long")
        report = await verifier.verify(token)
        return web.json_response(report, headers={"Cache-Control": "no-store"})

    async def status(request: web.Request) -> web.Response:
        try:
            purpose = StatusPurpose(request.match_info["purpose"])
        except ValueError:
            raise Problem(404, ProblemCode.NOT_FOUND, "no such status list") from None
        token = verifier.own_list(purpose)
        if token is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no {purpose.value} list published")
        return web.Response(
            text=token + "\n",
            content_type="application/vc+jwt",
            headers={"Cache-Control": "max-age=300"},
        )

    app.router.add_post("/public/v1/licences/verify", verify)
    app.router.add_get(STATUS_PATH + "{purpose}", status)
    add_qr_decode_route(app)
