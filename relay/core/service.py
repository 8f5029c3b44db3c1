"""``RelayNode``: the relay core composed — packets, outbox, inbox, receipts, attachments.

The HTTP shell (``relay.http``) only decodes requests, calls these methods and encodes
results; nothing here knows about HTTP. Every method that returns an acknowledgement
returns it only after the store committed what it acknowledges.

Federation side (called with the mTLS-authenticated peer id):
    ``receive_batch``, ``blob_offset``, ``write_blob``.
Staff side:
    ``create_packet``, ``list_outbox``, ``list_inbox``, ``read_packet``,
    ``attachment_offset``, ``write_attachment``, ``open_attachment``.
Background:
    ``run_outbox`` (or ``deliver_once`` step by step in tests).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketContent,
    PacketSummary,
)
from relay.core.ports import Authorizer, Clock, PeerLink

if TYPE_CHECKING:
    from signing.nodedir import NodeKeys

    from relay.core.directory import Directory
    from relay.core.outbox import OutboxPolicy
    from relay.core.store import RelayStore
    from signing.certificates import TrustBundle

__all__ = ["RelayNode"]


class RelayNode:
    """One node's relay: create, send, receive, receipt and store case packets."""

    def __init__(
        self,
        *,
        node_id: str,
        keys: NodeKeys,
        bundle: TrustBundle,
        directory: Directory,
        authorizer: Authorizer,
        store: RelayStore,
        link: PeerLink,
        clock: Clock,
        rng: random.Random,
        policy: OutboxPolicy | None = None,
    ) -> None:
        """``keys`` gives the seal signer and HPKE private keys (current first, then
        previous ones still inside the rotation overlap); ``policy`` the outbox's retry,
        batch and expiry settings (defaults when None)."""
        raise NotImplementedError

    # -- federation side -------------------------------------------------------------

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        """Run every packet through the acceptance pipeline; return one signed receipt
        (compact JWS, typ ``tongban-receipt+jws``) per packet, in order.

        ``peer_id`` is the node id from the peer's path-validated TLS client
        certificate. Accepted packets are committed (with their receipts) before this
        returns; a duplicate packet id gets the original receipt back.
        """
        raise NotImplementedError

    def blob_offset(self, digest: str) -> int:
        """How many bytes of the sealed blob ``digest`` this node holds (its size when
        complete, 0 when unknown). Used by a peer's resumable upload."""
        raise NotImplementedError

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """Append a peer's upload of sealed blob ``digest`` at ``offset``; return the new
        offset. On reaching ``size`` the SHA-256 is checked and the blob published in
        the content-addressed directory (raises :class:`AttachmentError` on mismatch)."""
        raise NotImplementedError

    def open_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a complete sealed blob from ``offset`` (what an upload sends)."""
        raise NotImplementedError

    # -- staff side ------------------------------------------------------------------

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
    ) -> PacketSummary:
        """Check the agreement, seal and sign a packet and queue it for ``to``.

        ``attachments`` are plaintext SHA-256 digests (hex) of attachments staged with
        :meth:`write_attachment`. Raises :class:`NotAuthorized` (the agreement does not
        grant it), :class:`UnknownNode`, :class:`NotFound` (attachment not staged).
        """
        raise NotImplementedError

    def list_outbox(
        self, *, state: OutboxState | None = None, peer: str | None = None
    ) -> list[OutboxItem]:
        """Outgoing packets in creation order, optionally filtered (``dead`` = dead letters)."""
        raise NotImplementedError

    def list_inbox(self, *, case_id: str | None = None) -> list[InboxItem]:
        """Accepted incoming packets in arrival order."""
        raise NotImplementedError

    def read_packet(self, packet_id: str) -> PacketContent:
        """Open an incoming or outgoing packet: content, inner JWS, outer JWS, receipt."""
        raise NotImplementedError

    def attachment_offset(self, digest: str) -> int:
        """How many plaintext bytes of a staff upload of ``digest`` are held (its size
        once complete)."""
        raise NotImplementedError

    async def write_attachment(
        self,
        digest: str,
        size: int,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str = "application/octet-stream",
        name: str = "",
    ) -> AttachmentInfo | None:
        """Stage a plaintext attachment (streamed, constant memory, resumable by
        ``offset``). On completion the SHA-256 is checked and the content sealed at
        rest (``signing.stream``); returns its info then, None while incomplete."""
        raise NotImplementedError

    def open_attachment(self, digest: str) -> AsyncIterator[bytes]:
        """Stream the plaintext of a staged or received attachment (plaintext digest
        or blob digest); decrypted segment by segment, authenticated."""
        raise NotImplementedError

    # -- background ------------------------------------------------------------------

    async def deliver_once(self) -> int:
        """One outbox pass: expire, upload attachments, send due batches, apply receipts.

        Returns how many packets got settled (delivered, rejected or dead) in this pass.
        """
        raise NotImplementedError

    async def run_outbox(self, stop: asyncio.Event) -> None:
        """Run outbox passes until ``stop`` is set, sleeping until the next due attempt."""
        raise NotImplementedError
