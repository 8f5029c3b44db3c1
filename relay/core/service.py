"""``RelayNode``: the relay core composed — packets, outbox, inbox, receipts, attachments.

The HTTP shell (``relay.http``) only decodes requests, calls these methods and encodes
results; nothing here knows about HTTP. Every method that returns an acknowledgement
returns it only after the store committed what it acknowledges.

Federation side (called with the mTLS-authenticated peer id):
    ``receive_batch``, ``blob_offset``, ``write_blob``, ``open_blob``.
Staff side:
    ``create_packet``, ``list_outbox``, ``list_inbox``, ``read_packet``,
    ``attachment_offset``, ``write_attachment``, ``open_attachment``.
Background:
    ``run_outbox`` (or ``deliver_once`` step by step in tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from relay.audit.leaves import Direction, LeafKind
from relay.core import blobs
from relay.core.directory import Directory
from relay.core.errors import AttachmentError, MalformedPacket, NotAuthorized, NotFound
from relay.core.fields import format_time, is_digest
from relay.core.leaves import packet_leaf, receipt_leaf
from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketContent,
    PacketSummary,
)
from relay.core.outbox import OutboxPolicy, next_wakeup
from relay.core.packets import (
    AttachmentKey,
    AttachmentRef,
    RoutingFacts,
    build_packet,
    open_content,
    packet_digest,
    peek_facts,
    verify_packet,
)
from relay.core.ports import AuthorizationRequest, Authorizer, Clock, PeerLink
from relay.core.receipts import Receipt, ReceiptStatus, sign_receipt
from relay.core.receiver import Inbound, Reason, authenticate, standard_pipeline
from relay.core.sender import Sender
from relay.core.store import NewOutgoing, ReceiveTx, RelayStore, StagedAttachment, UploadKind
from signing.certificates import TrustBundle
from signing.encoding import b64url, b64url_decode
from signing.errors import SigningError
from signing.hpke import HpkePrivateKey, hpke_open, hpke_seal, seal_info
from signing.nodedir import NodeKeys
from signing.stream import new_stream_key

__all__ = ["RelayNode"]

_log = logging.getLogger("tongban.relay")


def summary_of(
    facts: RoutingFacts, digest: str, infos: Sequence[AttachmentInfo] = ()
) -> PacketSummary:
    by_digest = {i.digest: i for i in infos}
    return PacketSummary(
        packet_id=facts.id,
        digest=digest,
        case_id=facts.case,
        sender=facts.sender,
        receiver=facts.receiver,
        matter=facts.matter,
        action=facts.action,
        mode=facts.mode,
        seq=facts.seq,
        created=facts.created,
        expires=facts.expires,
        attachments=tuple(
            by_digest.get(a.digest) or AttachmentInfo(a.digest, a.size, a.media_type, a.name)
            for a in facts.attachments
        ),
    )


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
        self.node_id = node_id
        self._signer = keys.seal
        self._hpke: tuple[HpkePrivateKey, ...] = tuple(keys.hpke_keys)
        if not self._hpke:
            raise ValueError("a node needs at least one HPKE private key")
        self._bundle = bundle
        self._directory = directory
        self._authorizer = authorizer
        self._store = store
        self._clock = clock
        self._rng = rng
        self._policy = policy or OutboxPolicy()
        self._pipeline = standard_pipeline(authorizer, self._hpke, bundle)
        self._receive_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._sender = Sender(
            me=node_id,
            bundle=bundle,
            store=store,
            link=link,
            clock=clock,
            rng=rng,
            policy=self._policy,
        )

    # -- federation side -------------------------------------------------------------

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        """Run every packet through the acceptance pipeline; return one signed receipt
        (compact JWS, typ ``tongban-receipt+jws``) per packet, in order.

        ``peer_id`` is the node id from the peer's path-validated TLS client
        certificate. Accepted packets are committed (with their receipts) before this
        returns; a duplicate packet id gets the original receipt back.
        """
        async with self._receive_lock:
            at = self._clock()
            with self._store.receiving() as tx:
                return [self._receive_one(tx, peer_id, token, at) for token in packets]

    def _reject(self, token: object, peer_id: str, reason: str, at: datetime) -> str:
        text = token if isinstance(token, str) else ""
        facts = peek_facts(text) or {}
        packet_id = facts.get("id")
        _log.info("refused packet %r from %s: %s", packet_id, peer_id, reason)
        receipt = Receipt(
            packet_id=packet_id if isinstance(packet_id, str) else None,
            packet_digest=packet_digest(text),
            sender=self.node_id,
            to=peer_id,
            status=ReceiptStatus.REJECTED,
            reason=str(reason),
            received_at=at,
        )
        return sign_receipt(receipt, self._signer, at=at)

    def _receive_one(self, tx: ReceiveTx, peer_id: str, token: str, at: datetime) -> str:
        result = authenticate(token, self._bundle, at=at, peer_id=peer_id, me=self.node_id)
        if isinstance(result, str):
            return self._reject(token, peer_id, result, at)
        facts = result.facts
        existing = tx.inbox_lookup(facts.id)
        if existing is not None:
            if existing[0] == result.digest:
                return existing[1]
            return self._reject(token, peer_id, Reason.DUPLICATE_ID_DIFFERENT_CONTENT, at)
        inbound = Inbound(
            packet=result,
            at=at,
            sender_known=self._directory.knows(facts.sender),
            previous=tx.recv_sequence(facts.sender, facts.case),
            blob_sizes={a.digest: tx.blob_size(a.digest) for a in facts.attachments},
        )
        refusal = self._pipeline.first_refusal(inbound)
        if refusal is not None:
            return self._reject(token, peer_id, refusal[1], at)
        leaf = packet_leaf(LeafKind.PACKET_RECEIVED, facts, result.digest, node=self.node_id, at=at)
        index = tx.audit_append(leaf)
        receipt = Receipt(
            packet_id=facts.id,
            packet_digest=result.digest,
            sender=self.node_id,
            to=facts.sender,
            status=ReceiptStatus.ACCEPTED,
            reason=None,
            received_at=at,
            log_index=index,
            log_size=index + 1,
        )
        signed = sign_receipt(receipt, self._signer, at=at)
        tx.audit_append(receipt_leaf(Direction.SENT, receipt, signed, node=self.node_id, at=at))
        tx.inbox_put(summary_of(facts, result.digest), token, at, signed, index)
        return signed

    def blob_offset(self, digest: str) -> int:
        """How many bytes of the sealed blob ``digest`` this node holds (its size when
        complete, 0 when unknown). Used by a peer's resumable upload."""
        size = self._store.blob_size(digest)
        if size is not None:
            return size
        upload = self._store.upload(UploadKind.BLOB, digest)
        return 0 if upload is None else upload.offset

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """Append a peer's upload of sealed blob ``digest`` at ``offset``; return the new
        offset. On reaching ``size`` the SHA-256 is checked and the blob published in
        the content-addressed directory (raises :class:`AttachmentError` on mismatch)."""
        _check_digest(digest)
        held = self._store.blob_size(digest)
        if held is not None:
            if held != size:
                raise AttachmentError("size-mismatch", "a blob with this digest has another size")
            return held
        pos = await self._append(UploadKind.BLOB, digest, size, offset, chunks)
        if pos < size:
            return pos
        upload = self._store.upload(UploadKind.BLOB, digest)
        assert upload is not None
        actual, _ = await asyncio.to_thread(blobs.sha256_file, upload.path)
        if actual != digest:
            self._store.drop_upload(UploadKind.BLOB, digest)
            raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
        self._store.publish_blob(upload.path, digest, size)
        self._store.drop_upload(UploadKind.BLOB, digest)
        _log.info("blob %s (%d bytes) received from %s", digest, size, peer_id)
        return size

    def open_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a complete sealed blob from ``offset`` (what an upload sends)."""
        if self._store.blob_size(digest) is None:
            raise NotFound(f"no blob {digest}")
        return blobs.read_from(self._store.blob_path(digest), offset)

    async def _append(
        self, kind: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        if size < 0:
            raise AttachmentError("size-mismatch", "size must not be negative")
        upload = self._store.begin_upload(kind, digest, size)
        if upload.size != size:
            raise AttachmentError("size-mismatch", f"upload started with size {upload.size}")
        if offset != upload.offset:
            raise AttachmentError("offset-mismatch", f"continue at offset {upload.offset}")

        def record(pos: int) -> None:
            self._store.advance_upload(kind, digest, pos)

        return await blobs.append_stream(upload.path, offset, size, chunks, record)

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
        at = self._clock()
        recipient = self._directory.sealing_key(to)  # UnknownNode first
        request = AuthorizationRequest(self.node_id, to, matter, action, mode, None)
        decision = self._authorizer(request, at)
        if not decision.allowed or decision.agreement is None:
            raise NotAuthorized(decision.reason or "no-agreement")
        staged: list[StagedAttachment] = []
        for digest in attachments:
            item = self._store.attachment(digest)
            if item is None:
                raise NotFound(f"attachment {digest} is not staged")
            staged.append(item)
        keys = [
            AttachmentKey(s.blob_digest, self._unwrap(s), s.plain_digest, s.plain_size)
            for s in staged
        ]
        refs = [AttachmentRef(s.blob_digest, s.blob_size, s.media_type, s.name) for s in staged]
        infos = [
            AttachmentInfo(
                s.blob_digest, s.blob_size, s.media_type, s.name, s.plain_digest, s.plain_size
            )
            for s in staged
        ]
        packet_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        agreement = decision.agreement

        def build(seq: int, prev: str | None) -> NewOutgoing:
            facts = {
                "v": 1,
                "id": packet_id,
                "case": case_id,
                "from": self.node_id,
                "to": to,
                "matter": matter,
                "action": action,
                "mode": mode,
                "agreement": {
                    "id": agreement.id,
                    "version": agreement.version,
                    "digest": agreement.digest,
                },
                "seq": seq,
                "prev": prev,
                "created": format_time(at),
                "expires": format_time(at + (expires_in or self._policy.default_ttl)),
                "attachments": [r.to_json() for r in refs],
            }
            token, parsed, inner = build_packet(
                facts, content, keys, signer=self._signer, recipient=recipient, at=at
            )
            digest = packet_digest(token)
            leaf = packet_leaf(LeafKind.PACKET_SENT, parsed, digest, node=self.node_id, at=at)
            return NewOutgoing(
                summary_of(parsed, digest, infos), token, self._own_copy(inner, packet_id), leaf
            )

        try:
            new = self._store.enqueue(to, case_id, build)
        except MalformedPacket as exc:
            raise NotAuthorized(f"malformed: {exc}") from exc
        self._wake.set()
        return new.summary

    def _own_copy(self, inner: str, packet_id: str) -> str:
        own = self._hpke[0].public_key()
        ct = hpke_seal(inner.encode("ascii"), own, info=seal_info("packet-copy", {"id": packet_id}))
        return f"{own.kid}.{b64url(ct)}"

    def _key_by_kid(self, kid: str) -> HpkePrivateKey:
        for key in self._hpke:
            if key.public_key().kid == kid:
                return key
        raise NotFound(f"no HPKE private key {kid} (rotated out?)")

    def _unwrap(self, staged: StagedAttachment) -> bytes:
        info = seal_info("attachment-key", {"digest": staged.plain_digest})
        return hpke_open(staged.wrapped_key, self._key_by_kid(staged.key_kid), info=info)

    def list_outbox(
        self, *, state: OutboxState | None = None, peer: str | None = None
    ) -> list[OutboxItem]:
        """Outgoing packets in creation order, optionally filtered (``dead`` = dead letters)."""
        return self._store.list_outbox(state, peer)

    def list_inbox(self, *, case_id: str | None = None) -> list[InboxItem]:
        """Accepted incoming packets in arrival order."""
        return self._store.list_inbox(case_id)

    def read_packet(self, packet_id: str) -> PacketContent:
        """Open an incoming or outgoing packet: content, inner JWS, outer JWS, receipt."""
        incoming = self._store.incoming(packet_id)
        if incoming is not None:
            at = incoming.item.received_at
            packet = verify_packet(incoming.token, self._bundle, at=at)
            content = open_content(packet.facts, self._hpke, self._bundle, at=at)
            infos = [
                AttachmentInfo(a.digest, a.size, a.media_type, a.name, k.plain_digest, k.plain_size)
                for a in packet.facts.attachments
                for k in content.attachment_keys
                if k.digest == a.digest
            ]
            summary = summary_of(packet.facts, packet.digest, infos)
            return PacketContent(
                summary, content.body, content.jws, incoming.token, incoming.item.receipt
            )
        outgoing = self._store.outgoing(packet_id)
        if outgoing is None:
            raise NotFound(f"no packet {packet_id}")
        kid, _, ct = outgoing.own_copy.partition(".")
        info = seal_info("packet-copy", {"id": packet_id})
        inner = hpke_open(b64url_decode(ct), self._key_by_kid(kid), info=info).decode("ascii")
        payload = json.loads(b64url_decode(inner.split(".")[1]))
        return PacketContent(
            outgoing.item.summary, payload["body"], inner, outgoing.token, outgoing.item.receipt
        )

    def attachment_offset(self, digest: str) -> int:
        """How many plaintext bytes of a staff upload of ``digest`` are held (its size
        once complete)."""
        staged = self._store.attachment(digest)
        if staged is not None and staged.plain_digest == digest:
            return staged.plain_size
        upload = self._store.upload(UploadKind.STAGE, digest)
        return 0 if upload is None else upload.offset

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
        _check_digest(digest)
        staged = self._store.attachment(digest)
        if staged is None:
            pos = await self._append(UploadKind.STAGE, digest, size, offset, chunks)
            if pos < size:
                return None
            staged = await self._seal_staged(digest, size, media_type, name)
        return AttachmentInfo(
            staged.blob_digest, staged.blob_size, staged.media_type, staged.name,
            staged.plain_digest, staged.plain_size,
        )  # fmt: skip

    async def _seal_staged(
        self, digest: str, size: int, media_type: str, name: str
    ) -> StagedAttachment:
        upload = self._store.upload(UploadKind.STAGE, digest)
        assert upload is not None
        actual, _ = await asyncio.to_thread(blobs.sha256_file, upload.path)
        if actual != digest:
            self._store.drop_upload(UploadKind.STAGE, digest)
            raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
        key = new_stream_key()
        tmp = self._store.temp_path()
        aad = blobs.attachment_aad(digest)
        await asyncio.to_thread(blobs.seal_file, upload.path, tmp, key, aad=aad)
        blob_digest, blob_size = await asyncio.to_thread(blobs.sha256_file, tmp)
        self._store.publish_blob(tmp, blob_digest, blob_size)
        own = self._hpke[0].public_key()
        wrapped = hpke_seal(key, own, info=seal_info("attachment-key", {"digest": digest}))
        staged = StagedAttachment(
            digest, size, blob_digest, blob_size, media_type, name, own.kid, wrapped
        )
        self._store.put_attachment(staged)
        self._store.drop_upload(UploadKind.STAGE, digest)
        return staged

    def open_attachment(self, digest: str) -> AsyncIterator[bytes]:
        """Stream the plaintext of a staged or received attachment (plaintext digest
        or blob digest); decrypted segment by segment, authenticated."""
        staged = self._store.attachment(digest)
        if staged is not None:
            key, blob, plain = self._unwrap(staged), staged.blob_digest, staged.plain_digest
        else:
            packet_id = self._store.packet_naming_blob(digest)
            if packet_id is None:
                raise NotFound(f"no attachment {digest}")
            content = self._open_incoming(packet_id)
            match = [k for k in content if k.digest == digest]
            if not match or self._store.blob_size(digest) is None:
                raise NotFound(f"no attachment {digest}")
            key, blob, plain = match[0].key, digest, match[0].plain_digest
        return blobs.decrypt_to_async(
            self._store.blob_path(blob), key, aad=blobs.attachment_aad(plain), plain_digest=plain
        )

    def _open_incoming(self, packet_id: str) -> tuple[AttachmentKey, ...]:
        incoming = self._store.incoming(packet_id)
        if incoming is None:
            raise NotFound(f"no packet {packet_id}")
        at = incoming.item.received_at
        try:
            facts = verify_packet(incoming.token, self._bundle, at=at).facts
            return open_content(facts, self._hpke, self._bundle, at=at).attachment_keys
        except SigningError as exc:
            raise NotFound(f"packet {packet_id} no longer opens") from exc

    # -- background ------------------------------------------------------------------

    async def deliver_once(self) -> int:
        """One outbox pass: expire, upload attachments, send due batches, apply receipts.

        Returns how many packets got settled (delivered, rejected or dead) in this pass.
        """
        return await self._sender.deliver_once()

    async def run_outbox(self, stop: asyncio.Event) -> None:
        """Run outbox passes until ``stop`` is set, sleeping until the next due attempt
        (or until a new packet is queued)."""
        while not stop.is_set():
            self._wake.clear()
            await self.deliver_once()
            now = self._clock()
            wake = next_wakeup(
                self._store.open_rows(), self._store.peer_backoffs(), self._policy, now
            )
            delay = max((wake - now).total_seconds(), 0.0)
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()


def _check_digest(digest: str) -> None:
    if not is_digest(digest):
        raise AttachmentError("bad-digest", "a digest is 64 lowercase hex characters")
