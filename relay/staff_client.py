"""A small client of a node's staff API (what ``tongban send`` and ``tongban inbox`` use).

It talks to the staff listener named in ``node.toml`` (HTTPS verified against the trust
bundle roots, or plain HTTP when the listener is configured so), with a bearer token
given by the caller or minted from the node's staff-token key. Attachments are hashed
and uploaded in constant memory and resume from the offset the node reports.
"""

from __future__ import annotations

import hashlib
import mimetypes
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from relay.config import NodeConfig
from relay.tls import client_context
from signing.certificates import TrustBundle

__all__ = ["StaffApiError", "StaffClient", "file_digest", "staff_base_url"]

_CHUNK = 1 << 20


class StaffApiError(Exception):
    """The staff API answered with a problem document (or could not be reached)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{detail} ({status} {code})" if status else detail)
        self.status = status
        self.code = code
        self.detail = detail


def staff_base_url(config: NodeConfig) -> str:
    listener = config.staff_listener
    host = listener.host
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if listener.tls else 'http'}://{host}:{listener.port}"


def file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file, read in constant memory."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


async def _read_from(path: Path, offset: int) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        while block := fh.read(_CHUNK):
            yield block


@dataclass
class StaffClient:
    base_url: str
    token: str
    ssl_context: ssl.SSLContext | None

    @classmethod
    def for_config(cls, config: NodeConfig, token: str) -> StaffClient:
        context = None
        if config.staff_listener.tls:
            context = client_context(TrustBundle.from_pem(config.trust_bundle.read_bytes()))
        return cls(staff_base_url(config), token, context)

    _shared: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> StaffClient:
        """Keep one connection pool for every call until the ``async with`` ends."""
        self._shared = self._new_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._shared is not None:
            await self._shared.close()
            self._shared = None

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"},
            connector=aiohttp.TCPConnector(ssl=self.ssl_context or False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
        )

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._shared is not None:
            yield self._shared
        else:
            async with self._new_session() as session:
                yield session

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        if resp.status >= 400:
            try:
                problem = await resp.json(content_type=None)
            except (aiohttp.ClientError, ValueError):
                problem = {}
            if not isinstance(problem, dict):
                problem = {}
            raise StaffApiError(
                resp.status,
                str(problem.get("code", "http-error")),
                str(problem.get("detail", resp.reason or "request failed")),
            )
        return await resp.json()

    async def _upload(self, session: aiohttp.ClientSession, path: Path) -> dict[str, Any]:
        size, digest = file_digest(path)
        url = f"{self.base_url}/staff/v1/attachments/{digest}"
        async with session.head(url) as resp:
            offset = int(resp.headers.get("Upload-Offset", "0")) if resp.status == 200 else 0
        result: dict[str, Any] = {"digest": digest, "size": size, "offset_before": offset}
        if offset >= size:
            return result  # already staged: nothing to send
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {
            "Content-Range": f"bytes {offset}-{size - 1}/{size}",
            "Content-Length": str(size - offset),  # not chunked: less to frame
            "Content-Type": media_type,
        }
        async with session.put(
            f"{url}?name={quote(path.name)}", data=_read_from(path, offset), headers=headers
        ) as resp:
            result["reply"] = await self._json(resp)
        return result

    async def upload_file(self, path: Path) -> dict[str, Any]:
        """Stage ``path`` (resuming from what the node holds); its digest and the reply."""
        try:
            async with self._session() as session:
                return await self._upload(session, path)
        except aiohttp.ClientError as exc:
            raise StaffApiError(0, "unreachable", f"cannot reach {self.base_url}: {exc}") from None

    async def send(self, request: Mapping[str, Any], attachments: Sequence[Path]) -> dict[str, Any]:
        try:
            async with self._session() as session:
                digests = []
                for path in attachments:
                    digests.append((await self._upload(session, path))["digest"])
                body = {**request, "attachments": digests}
                async with session.post(f"{self.base_url}/staff/v1/packets", json=body) as resp:
                    result: dict[str, Any] = await self._json(resp)
                    return result
        except aiohttp.ClientError as exc:
            raise StaffApiError(0, "unreachable", f"cannot reach {self.base_url}: {exc}") from None

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            async with (
                self._session() as session,
                session.get(f"{self.base_url}{path}", params=params or {}) as resp,
            ):
                result: dict[str, Any] = await self._json(resp)
                return result
        except aiohttp.ClientError as exc:
            raise StaffApiError(0, "unreachable", f"cannot reach {self.base_url}: {exc}") from None
