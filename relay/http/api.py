"""What the HTTP handlers need from the relay core, and the core's errors mapped to HTTP.

:class:`RelayApi` lists exactly the ``RelayNode`` methods the handlers call, so tests
can run the handlers over a small fake. :func:`core_error_middleware` is the one place
where :mod:`relay.core.errors` become problem documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiohttp import web

from relay.core.errors import (
    AttachmentError,
    MalformedPacket,
    NotAuthorized,
    NotFound,
    PacketTooLarge,
    PeerUnavailable,
    RelayError,
    StoreError,
    UnknownNode,
)
from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketContent,
    PacketSummary,
)
from relay.core.outbox import OutboxRow
from relay.problem import Problem, ProblemCode, storage_problem

__all__ = ["RelayApi", "core_error_middleware", "problem_from_core"]


class RelayApi(Protocol):
    """The subset of ``relay.core.service.RelayNode`` used by the HTTP handlers."""

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]: ...

    def blob_offset(self, digest: str) -> int: ...

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int: ...

    async def create_packet(
        self,
        *,
        to: str,
        case_id: str,
        matter: str,
        action: str,
        mode: str,
        content: Mapping[str, Any],
        attachments: Sequence[str] = (),
        expires_in: timedelta | None = None,
        audit: Sequence[bytes] = (),
        packet_id: str | None = None,
    ) -> PacketSummary: ...

    def list_outbox(
        self,
        *,
        state: OutboxState | None = None,
        peer: str | None = None,
        case_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]: ...

    def unreachable_partners(self) -> dict[str, datetime]: ...

    def partners_lacking_agreements(self) -> dict[str, tuple[int, datetime]]: ...

    def parked_packets(self) -> list[OutboxItem]: ...

    def unconfirmed_packets(self, now: datetime, limit: int = 100) -> list[OutboxRow]: ...

    def standing_rejections(self) -> list[OutboxItem]: ...

    def list_inbox(
        self, *, case_id: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[InboxItem]: ...

    def inbox_after(self, after: int, limit: int) -> list[tuple[int, InboxItem]]: ...

    def read_packet(self, packet_id: str) -> PacketContent: ...

    def attachment_offset(self, digest: str) -> int: ...

    async def write_attachment(
        self,
        digest: str,
        size: int,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str = "application/octet-stream",
        name: str = "",
    ) -> AttachmentInfo | None: ...


_ATTACHMENT_STATUS: Mapping[str, tuple[int, ProblemCode]] = {
    "offset-mismatch": (409, ProblemCode.OFFSET_MISMATCH),
    "size-mismatch": (409, ProblemCode.SIZE_MISMATCH),
    "too-large": (413, ProblemCode.BODY_TOO_LARGE),
    "digest-mismatch": (422, ProblemCode.DIGEST_MISMATCH),
    "bad-digest": (400, ProblemCode.INVALID_REQUEST),
}


def problem_from_core(exc: RelayError) -> Problem:
    """The problem document answering a core error."""
    if isinstance(exc, NotAuthorized):
        return Problem(
            403,
            ProblemCode.NOT_AUTHORIZED,
            f"the agreement does not grant this ({exc.reason})"
            + (f": {exc.detail}" if exc.detail else ""),
            extra={"reason": exc.reason},
        )
    if isinstance(exc, MalformedPacket):
        return Problem(400, ProblemCode.INVALID_REQUEST, str(exc) or "malformed packet")
    if isinstance(exc, UnknownNode):
        return Problem(404, ProblemCode.UNKNOWN_NODE, f"no verified descriptor for {exc.node_id}")
    if isinstance(exc, NotFound):
        return Problem(404, ProblemCode.NOT_FOUND, str(exc) or "not found")
    if isinstance(exc, PacketTooLarge):
        return Problem(
            413,
            ProblemCode.PACKET_TOO_LARGE,
            str(exc),
            extra={"size": exc.size, "max_packet_bytes": exc.limit},
        )
    if isinstance(exc, AttachmentError):
        status, code = _ATTACHMENT_STATUS.get(exc.reason, (400, ProblemCode.INVALID_REQUEST))
        return Problem(status, code, str(exc), extra={"reason": exc.reason})
    if isinstance(exc, PeerUnavailable):
        return Problem(503, ProblemCode.SERVICE_UNAVAILABLE, "a partner node is unavailable")
    if isinstance(exc, StoreError):
        return storage_problem()
    return Problem(500, ProblemCode.INTERNAL_ERROR, "the node could not answer")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def core_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map :class:`relay.core.errors.RelayError` to problem documents."""
    try:
        return await handler(request)
    except RelayError as exc:
        raise problem_from_core(exc) from exc
