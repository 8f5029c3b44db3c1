"""``AuditClient``: a partner's §7.5 audit endpoints over mutual TLS.

Implements :class:`relay.audit.service.AuditPeer`. Each new connection is checked to be
the partner's node (:class:`relay.http.link.VerifyingConnector`). ``audit-range``
answers become :class:`~relay.audit.service.RangeRefused` (a verdict for the witness),
``audit-unknown-leaf`` :class:`~relay.audit.service.LeafNotFound`; everything else that
is not a well-formed 200 — transport errors, timeouts, other problems, malformed
bodies — is :class:`~relay.audit.service.PeerUnavailable` (no verdict, retry later).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from relay.audit.errors import AuditError
from relay.audit.exchange import (
    parse_checkpoint_answer,
    parse_consistency_answer,
    parse_inclusion_answer,
)
from relay.audit.service import LeafNotFound, PeerUnavailable, RangeRefused
from relay.http.link import VerifyingConnector
from relay.tls import BundleSource

__all__ = ["AuditClient"]


class AuditClient:
    """The audit endpoints of the partner ``node_id`` at ``url`` (``https://host:port``)."""

    def __init__(
        self,
        node_id: str,
        url: str,
        *,
        bundle: BundleSource,
        ssl_context: ssl.SSLContext,
        clock: Callable[[], datetime],
        timeout: float = 30.0,
    ) -> None:
        self.node_id = node_id
        self._base = url.rstrip("/") + "/federation/v1/audit"
        self._bundle = bundle
        self._ssl = ssl_context
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = VerifyingConnector(
                expected=self.node_id, bundle=self._bundle, clock=self._clock, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        try:
            async with self._client().request(
                method, self._base + path, params=params, json=body
            ) as resp:
                answer = await resp.json(content_type=None)
                return resp.status, answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PeerUnavailable(f"node {self.node_id}: {exc!r}") from exc

    async def _ok(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> Any:
        status, answer = await self._call(method, path, params=params, body=body)
        if status == 200:
            return answer
        code = answer.get("code") if isinstance(answer, dict) else None
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if code == "audit-range":
            raise RangeRefused(f"node {self.node_id}: {detail}")
        if code == "audit-unknown-leaf":
            raise LeafNotFound(f"node {self.node_id}: {detail}")
        raise PeerUnavailable(f"node {self.node_id} answered {status} {code}: {detail}")

    @staticmethod
    def _shape(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except AuditError as exc:
            raise PeerUnavailable(f"malformed answer: {exc}") from exc

    async def checkpoint(self) -> bytes:
        answer = await self._ok("GET", "/checkpoint")
        result: bytes = self._shape(lambda: parse_checkpoint_answer(answer))
        return result

    async def consistency(self, old: int, new: int) -> list[bytes]:
        answer = await self._ok("GET", "/consistency", params={"from": str(old), "to": str(new)})
        result: list[bytes] = self._shape(lambda: parse_consistency_answer(answer, old, new))
        return result

    async def inclusion_of_packet(
        self, digest: str, size: int
    ) -> tuple[int, list[bytes], bytes | None]:
        answer = await self._ok("GET", "/inclusion", params={"packet": digest, "size": str(size)})
        index = answer.get("index") if isinstance(answer, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            raise PeerUnavailable("inclusion answer without an index")
        proof, leaf = self._shape(lambda: parse_inclusion_answer(answer, index, size))
        return index, proof, leaf

    async def cosigned(self, origin: str) -> bytes | None:
        status, answer = await self._call("GET", "/cosigned", params={"origin": origin})
        if (
            status == 404
            and isinstance(answer, dict)
            and answer.get("code") == ("audit-unknown-origin")
        ):
            return None
        if status != 200:
            raise PeerUnavailable(f"node {self.node_id} answered {status} to cosigned")
        result: bytes = self._shape(lambda: parse_checkpoint_answer(answer))
        return result

    async def cosign(self, note: bytes) -> None:
        await self._ok("POST", "/cosign", body={"checkpoint": note.decode()})
