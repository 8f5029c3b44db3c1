"""In-memory transport between :class:`RelayNode` objects, with faults on demand.

``FakeNetwork`` holds the nodes; ``network.link(sender_id)`` is the :class:`PeerLink`
a node uses (the network passes ``sender_id`` to the receiver as the authenticated
peer, as mutual TLS would). Faults, all drawn from the ``rng`` passed in:

- ``down``: node ids that cannot be reached at all;
- ``loss``: probability that a request is lost before the receiver sees it;
- ``reply_loss``: probability that the receiver processed the request but the answer
  is lost (the sender must retry and the receiver deduplicate);
- ``delay``: seconds each request takes (``asyncio.sleep``, so it composes with
  concurrent passes);
- ``cut_uploads_after``: bytes after which an upload connection breaks (resumption).

An exception inside the receiving node reaches the sender as :class:`PeerUnavailable`,
as a 500 answer would over HTTP.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.core.errors import AttachmentError, PeerRefused, PeerUnavailable, PeerUnreachable
from relay.core.ports import OpenAt

if TYPE_CHECKING:
    from relay.core.service import RelayNode

__all__ = ["FakeNetwork", "FakePeerLink"]


@dataclass
class FakeNetwork:
    rng: random.Random
    loss: float = 0.0
    reply_loss: float = 0.0
    delay: float = 0.0
    cut_uploads_after: int | None = None
    down: set[str] = field(default_factory=set)
    nodes: dict[str, RelayNode] = field(default_factory=dict)
    requests: int = 0

    def link(self, sender_id: str) -> FakePeerLink:
        return FakePeerLink(self, sender_id)

    def attach(self, node: RelayNode) -> None:
        self.nodes[node.node_id] = node

    async def _reach(self, peer: str) -> RelayNode:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        node = self.nodes.get(peer)
        if node is None or peer in self.down:
            raise PeerUnreachable(f"{peer} is down")
        if self.rng.random() < self.loss:
            raise PeerUnavailable(f"request to {peer} lost")
        return node


class FakePeerLink:
    """The link of one node (``sender_id``) into a :class:`FakeNetwork`."""

    def __init__(self, network: FakeNetwork, sender_id: str) -> None:
        self._net = network
        self._me = sender_id

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        node = await self._net._reach(peer)
        try:
            receipts = await node.receive_batch(self._me, list(packets))
        except Exception as exc:  # what an HTTP peer answers with a 500: try again later
            raise PeerUnavailable(f"{peer} failed: {exc!r}") from exc
        if self._net.rng.random() < self._net.reply_loss:
            raise PeerUnavailable(f"answer from {peer} lost")
        return receipts

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        node = await self._net._reach(peer)
        offset = node.blob_offset(digest)
        if offset >= size:
            return
        limit = self._net.cut_uploads_after
        try:
            # closed here, not by the garbage collector, whoever stops reading first
            source = open_at(offset)
            try:
                await node.write_blob(self._me, digest, size, offset, _cut(source, limit))
            finally:
                aclose = getattr(source, "aclose", None)  # an async generator: close it now
                if aclose is not None:
                    await aclose()
        except _Cut as exc:
            raise PeerUnavailable(f"upload to {peer} broke") from exc
        except AttachmentError as exc:  # answered as the federation listener would
            status = 409 if exc.reason == "offset-mismatch" else 422
            raise PeerRefused(
                f"upload to {peer} refused: {exc.reason}",
                status=status,
                kind="blob-upload",
                code=exc.reason,
            ) from exc
        if node.blob_offset(digest) < size:
            raise PeerUnavailable(f"upload to {peer} incomplete")


class _Cut(Exception):
    pass


async def _cut(chunks: AsyncIterator[bytes], limit: int | None) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in chunks:
        if limit is not None and sent + len(chunk) > limit:
            yield chunk[: limit - sent]
            raise _Cut
        sent += len(chunk)
        yield chunk
