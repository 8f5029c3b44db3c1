"""``HttpsPeerLink``: the relay core's :class:`~relay.core.ports.PeerLink` over mutual TLS.

One :class:`aiohttp.ClientSession` per partner, each with a connector that checks the
partner's identity on every *new* connection, before any request byte is sent: OpenSSL
verifies the chain to the bundle roots and the host name, then
:func:`relay.tls.peer_identity` path-validates the server certificate with the CRLs at
that instant and requires the partner's node id. Any transport failure, refusal or
malformed answer becomes :class:`~relay.core.errors.PeerUnavailable` (the outbox retries
with backoff; the receiver deduplicates).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace
from cryptography.hazmat.primitives.serialization import Encoding

from relay.core.errors import PeerRefused, PeerUnavailable, PeerUnreachable
from relay.core.ports import OpenAt
from relay.tls import BundleSource, client_context, peer_identity
from signing.certificates import TrustBundle
from signing.errors import CertificateRejected, MalformedInput

__all__ = ["HttpsPeerLink", "PeerIdentityError", "VerifyingConnector"]

_log = logging.getLogger("tongban.relay.link")


class PeerIdentityError(aiohttp.ClientConnectionError):
    """The server's certificate does not name the partner we meant to reach."""


class _VerifyingConnector(aiohttp.TCPConnector):
    """A TCP connector that path-validates the server of each new TLS connection."""

    def __init__(
        self,
        *,
        expected: str,
        bundle: BundleSource,
        clock: Callable[[], datetime],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._expected = expected
        self._bundle = bundle
        self._clock = clock

    async def _create_connection(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> ResponseHandler:
        proto = await super()._create_connection(req, traces, timeout)
        transport = proto.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        try:
            trust = self._bundle.current()
        except (OSError, MalformedInput) as exc:
            proto.close()
            raise PeerIdentityError(f"the trust bundle cannot be read: {exc}") from exc
        try:
            peer_identity(ssl_object, trust, at=self._clock(), node_id=self._expected)
        except CertificateRejected as exc:
            proto.close()
            raise PeerIdentityError(
                f"{req.url.host}:{req.url.port} is not node {self._expected} ({exc.reason})"
            ) from exc
        return proto


VerifyingConnector = _VerifyingConnector
"""Public name for other mutual-TLS clients of partners (e.g. the audit witness)."""


class HttpsPeerLink:
    """Deliver packet batches and upload sealed blobs to partners over mutual TLS."""

    def __init__(
        self,
        partners: Mapping[str, str],
        *,
        bundle: BundleSource,
        cert: Path,
        key: Path,
        clock: Callable[[], datetime],
        connections_per_peer: int = 4,
        request_timeout: float = 30.0,
        upload_chunk_timeout: float = 30.0,
    ) -> None:
        """``partners`` maps node id → federation base URL (``https://host:port``)."""
        self._partners = dict(partners)
        self._bundle = bundle
        self._ssl: ssl.SSLContext = client_context(bundle.current(), cert, key)
        self._clock = clock
        self._limit = connections_per_peer
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._chunk_timeout = upload_chunk_timeout
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, connect=request_timeout, sock_read=upload_chunk_timeout
        )
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._retired: list[aiohttp.ClientSession] = []  # replaced by add_trust

    def set_partners(self, partners: Mapping[str, str]) -> None:
        """Replace the partner URLs (directory refresh, reload); open sessions stay."""
        self._partners = dict(partners)

    def add_trust(self, bundle: TrustBundle, cert: Path, key: Path) -> None:
        """Trust the roots of ``bundle`` too and present ``cert`` from now on (reload:
        new roots, a rotated TLS certificate). New connections use them; open ones end
        as they would."""
        self._ssl.load_verify_locations(
            cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in bundle.roots)
        )
        self._ssl.load_cert_chain(cert, key)
        # open connections present the old certificate: new requests take new sessions
        # (new connections); the old sessions finish what they carry, then close
        self._retired.extend(self._sessions.values())
        self._sessions = {}

    def _session(self, peer: str) -> tuple[aiohttp.ClientSession, str]:
        url = self._partners.get(peer)
        if url is None:
            # nothing is sent: queued packets expire as usual (none is taken for held)
            raise PeerUnreachable(f"no federation URL configured for node {peer}")
        session = self._sessions.get(peer)
        if session is None or session.closed:
            connector = _VerifyingConnector(
                expected=peer,
                bundle=self._bundle,
                clock=self._clock,
                ssl=self._ssl,
                limit=self._limit,
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._sessions[peer] = session
        return session, url

    async def close(self) -> None:
        for session in [*self._sessions.values(), *self._retired]:
            await session.close()
        self._sessions.clear()
        self._retired.clear()

    def partners(self) -> list[str]:
        """The node ids this link has a federation URL for."""
        return sorted(self._partners)

    async def hello(self, peer: str) -> bool:
        """Reach ``peer`` once over mutual TLS (``GET /federation/v1/descriptor``, its
        answer unused): a partner waiting out a backoff of us retries at once
        (docs/protocol.md §8.7). Whether it answered 200; never raises."""
        try:
            session, url = self._session(peer)
            async with session.get(f"{url}/federation/v1/descriptor") as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, PeerUnavailable, OSError) as exc:
            _log.debug("hello to node %s failed: %r", peer, exc)
            return False

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        session, url = self._session(peer)
        try:
            async with session.post(
                f"{url}/federation/v1/packets", json={"packets": list(packets)}
            ) as resp:
                if resp.status != 200:
                    raise await _refused(resp, f"node {peer} answered {resp.status} to a batch")
                body = await resp.json()
        except (aiohttp.ClientConnectorError, PeerIdentityError) as exc:
            # no connection, or not to the partner (a revoked or wrong certificate): nothing
            # of the batch was sent
            raise PeerUnreachable(f"cannot connect to node {peer}: {exc!r}") from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PeerUnavailable(f"cannot deliver to node {peer}: {exc!r}") from exc
        receipts = body.get("receipts") if isinstance(body, dict) else None
        if (
            not isinstance(receipts, list)
            or len(receipts) != len(packets)
            or not all(isinstance(r, str) for r in receipts)
        ):
            raise PeerUnavailable(f"node {peer} answered a malformed batch of receipts")
        return receipts

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        session, url = self._session(peer)
        target = f"{url}/federation/v1/attachments/{digest}"
        try:
            for _attempt in range(3):
                offset = await self._remote_offset(session, target)
                if offset == size:
                    return
                if not 0 <= offset < size:
                    raise PeerUnavailable(f"node {peer} holds {offset} bytes of a {size}-byte blob")
                headers = {
                    "Content-Range": f"bytes {offset}-{size - 1}/{size}",
                    "Content-Length": str(size - offset),  # not chunked: less to frame
                    "Content-Type": "application/octet-stream",
                }
                # a partner that stops reading the body holds its write for ever (the
                # socket's timeouts watch reads): each chunk must be taken within the
                # chunk timeout, or the upload ends (resumed later from the offset)
                async with asyncio.timeout(None) as stall:
                    moved = functools.partial(_moved, stall, self._chunk_timeout)
                    async with session.put(
                        target,
                        data=_stream(open_at, offset, moved),
                        headers=headers,
                        timeout=self._upload_timeout,
                    ) as resp:
                        if resp.status == 409:
                            continue  # offset moved (a concurrent or earlier upload): ask again
                        if resp.status not in (200, 201):
                            raise await _refused(
                                resp, f"node {peer} refused blob {digest[:12]}", "blob-upload"
                            )
                        if int(resp.headers.get("Upload-Offset", "-1")) == size:
                            return
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            raise PeerUnavailable(f"cannot upload to node {peer}: {exc!r}") from exc
        raise PeerUnavailable(f"node {peer} did not complete blob {digest[:12]}")

    async def _remote_offset(self, session: aiohttp.ClientSession, target: str) -> int:
        async with session.head(target) as resp:
            if resp.status != 200:
                raise PeerRefused(
                    f"{target} answered {resp.status} to HEAD",
                    status=resp.status,
                    kind="blob-offset",
                )
            return int(resp.headers["Upload-Offset"])


async def _stream(
    open_at: OpenAt, offset: int, moved: Callable[[bool], None]
) -> AsyncIterator[bytes]:
    """The blob from ``offset``, calling ``moved`` as each chunk is asked for (the one
    before it was written) and ``moved(True)`` once all were."""
    moved(False)
    async for chunk in open_at(offset):
        moved(False)
        yield chunk
    moved(True)


def _moved(stall: asyncio.Timeout, seconds: float, done: bool) -> None:
    """The upload's body moved: it has ``seconds`` more to take the next chunk; once it
    is all written, reading the answer is the socket timeout's to watch."""
    stall.reschedule(None if done else asyncio.get_running_loop().time() + seconds)


_LIMIT_MEMBERS = ("max_batch_size", "max_body_bytes")


async def _refused(resp: aiohttp.ClientResponse, what: str, kind: str = "batch") -> PeerRefused:
    """A :class:`PeerRefused` from a refusal: status, problem code and limit members."""
    code: str | None = None
    limits: dict[str, int] = {}
    detail = resp.reason or ""
    try:
        body = await resp.json(content_type=None)
    except (aiohttp.ClientError, ValueError):
        body = None
    if isinstance(body, dict):
        raw = body.get("code")
        code = raw if isinstance(raw, str) and raw.isascii() and len(raw) <= 64 else None
        detail = f"{code}: {body.get('detail')}"
        for name in _LIMIT_MEMBERS:
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                limits[name] = value
    wait = resp.headers.get("Retry-After", "")
    seconds = float(wait[:12]) if wait.isascii() and wait.isdigit() else None  # a date: none
    return PeerRefused(
        f"{what}: {detail}", status=resp.status, kind=kind, code=code, limits=limits,
        retry_after=seconds,
    )  # fmt: skip
