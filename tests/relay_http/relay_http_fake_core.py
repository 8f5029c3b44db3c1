"""A small in-memory stand-in for ``RelayNode`` (the methods the HTTP shell calls).

Blobs and attachments go to files (constant memory), so upload tests measure the HTTP
shell and not the fake.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from relay.core.errors import AttachmentError, NotAuthorized, NotFound, UnknownNode
from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketContent,
    PacketSummary,
)

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


@dataclass
class _Upload:
    path: Path
    size: int
    offset: int = 0


@dataclass
class FakeCore:
    folder: Path
    batches: list[tuple[str, list[str]]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        self.batches.append((peer_id, list(packets)))
        return [f"receipt-of-{p}" for p in packets]

    def blob_offset(self, digest: str) -> int:
        upload = self.uploads.get(digest)
        return upload.offset if upload is not None else 0

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        upload = self.uploads.setdefault(digest, _Upload(self.folder / digest, size))
        if upload.size != size:
            raise AttachmentError("size-mismatch", "announced size differs")
        if offset != upload.offset:
            raise AttachmentError("offset-mismatch", f"held {upload.offset} bytes")
        with upload.path.open("r+b" if upload.path.exists() else "wb") as fh:
            fh.seek(offset)
            async for chunk in chunks:
                if upload.offset + len(chunk) > size:
                    raise AttachmentError("too-large", "more bytes than announced")
                fh.write(chunk)
                upload.offset += len(chunk)
        if upload.offset == size:
            sha = hashlib.sha256()
            with upload.path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    sha.update(block)
            if sha.hexdigest() != digest:
                upload.path.unlink()
                del self.uploads[digest]
                raise AttachmentError("digest-mismatch", "SHA-256 differs")
            self.complete.add(digest)
        return upload.offset

    def attachment_offset(self, digest: str) -> int:
        return self.blob_offset(digest)

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
        done = await self.write_blob("staff", digest, size, offset, chunks)
        if done < size:
            return None
        return AttachmentInfo(digest, size, media_type, name, digest, size)

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
    ) -> PacketSummary:
        if to == "999999":
            raise UnknownNode(to)
        if action == "forbidden":
            raise NotAuthorized("action-not-granted")
        for digest in attachments:
            if digest not in self.complete:
                raise NotFound(f"attachment {digest} is not staged")
        self.created.append({"to": to, "case_id": case_id, "content": dict(content)})
        return self._summary(
            f"p{len(self.created)}", to, case_id, matter, action, mode, len(self.created)
        )

    def _summary(
        self, pid: str, to: str, case_id: str, matter: str, action: str, mode: str, seq: int
    ) -> PacketSummary:
        """A summary as the core gives it: ``seq`` counts from 1, as the schema says."""
        return PacketSummary(
            packet_id=pid,
            digest="d" * 64,
            case_id=case_id,
            sender="420106",
            receiver=to,
            matter=matter,
            action=action,
            mode=mode,
            seq=seq,
            created=T0,
            expires=T0 + timedelta(days=7),
        )

    def list_outbox(
        self,
        *,
        state: OutboxState | None = None,
        peer: str | None = None,
        case_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]:
        items = [
            OutboxItem(
                self._summary(f"p{i + 1}", c["to"], c["case_id"], "m", "submit", "online", i + 1),
                OutboxState.QUEUED,
                0,
                T0,
                None,
                None,
            )
            for i, c in enumerate(self.created)
        ]
        kept = [
            i
            for i in items
            if (state is None or i.state == state)
            and (peer is None or i.summary.receiver == peer)
            and (case_id is None or i.summary.case_id == case_id)
        ]
        return (kept[::-1] if newest_first else kept)[:limit]

    def list_inbox(
        self, *, case_id: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[InboxItem]:
        items = [
            InboxItem(
                self._summary(f"in{i}", "420106", "C1", "m", "submit", "online", i + 1),
                T0,
                "rcpt.payload.sig",
                i,
            )
            for i in range(2)
        ]
        return (items[::-1] if newest_first else items)[:limit]

    def read_packet(self, packet_id: str) -> PacketContent:
        if packet_id != "p1":
            raise NotFound(f"no packet {packet_id}")
        summary = self._summary("p1", "320982", "C1", "m", "submit", "online", 1)
        return PacketContent(summary, {"applicant": "张三"}, "inner.p.s", "outer.p.s", None)


class RunningFakeCore(FakeCore):
    """The fake with an outbox loop, as ``relay.node.Node`` runs a core."""

    outbox_runs: int = 0

    async def run_outbox(self, stop: Any) -> None:
        self.outbox_runs += 1
        await stop.wait()
