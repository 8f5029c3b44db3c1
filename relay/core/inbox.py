"""Receiving: run each packet of a batch through the acceptance pipeline
(:mod:`relay.core.receiver`) inside one store transaction and answer with receipts.

Accepted packets, their receipts and their audit leaves are written in that
transaction, which commits (fsync) before the receipts are returned. Refused packets
are answered with a signed ``rejected`` receipt and leave no trace in the store.

Batches are decided one at a time (a lock around the transaction), packet after packet,
so the optional content check sees everything accepted before the packet it judges:
earlier batches through the store, earlier packets of its own batch as ``earlier``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from relay.audit.leaves import Direction, LeafKind
from relay.core.directory import Directory
from relay.core.helper import CryptoHelper
from relay.core.leaves import packet_leaf, receipt_leaf
from relay.core.model import AttachmentInfo, PacketSummary
from relay.core.packets import RoutingFacts, packet_digest, peek_facts
from relay.core.ports import BundleSource, Clock, OpenedPacket, ReceivedBatch
from relay.core.receipts import Receipt, ReceiptStatus, sign_receipt
from relay.core.receiver import Examined, Inbound, Pipeline, Reason, examine
from relay.core.store import ReceiveTx, RelayStore
from signing.hpke import HpkePrivateKey
from signing.keys import Signer

__all__ = ["Inbox", "summary_of"]

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


class Inbox:
    def __init__(
        self,
        *,
        me: str,
        signer: Signer,
        bundle: BundleSource,
        directory: Directory,
        keys: Mapping[str, HpkePrivateKey],
        pipeline: Pipeline,
        store: RelayStore,
        clock: Clock,
        examiner: CryptoHelper | None = None,
    ) -> None:
        """``examiner``: the crypto helper process that examines batches (checks 1 and
        7), else (and whenever it cannot answer) they are examined in a thread."""
        self._me = me
        self._signer = signer
        self._bundle = bundle
        self._directory = directory
        self._keys = keys
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._examiner = examiner
        self._lock = asyncio.Lock()

    def use_pipeline(self, pipeline: Pipeline) -> None:
        """Decide later batches with ``pipeline`` (a batch being decided keeps its own)."""
        self._pipeline = pipeline

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        return list((await self.receive_batch_opened(peer_id, packets)).receipts)

    async def receive_batch_opened(self, peer_id: str, packets: Sequence[str]) -> ReceivedBatch:
        """As :meth:`receive_batch`, with the accepted packets' opened content. Nothing
        awaits between the commit and the return, so callers see batches in commit
        order."""
        at = self._clock()
        bundle = self._bundle()

        def examine_all() -> list[Examined]:
            return [
                examine(t, bundle, self._keys, at=at, peer_id=peer_id, me=self._me) for t in packets
            ]

        # signatures, certificate paths and HPKE: pure and slow, so off the event loop
        examined = None
        if self._examiner is not None:
            examined = await self._examiner.examine(packets, bundle, at=at, peer_id=peer_id)
        if examined is None:
            examined = await asyncio.to_thread(examine_all)
        async with self._lock:
            pipeline = self._pipeline
            accepted: list[OpenedPacket] = []  # so far in this batch, not yet committed
            with self._store.receiving() as tx:
                receipts = tuple(
                    self._decide(tx, pipeline, peer_id, token, ex, at, accepted)
                    for token, ex in zip(packets, examined, strict=True)
                )
            return ReceivedBatch(receipts, tuple(accepted), at)

    def _reject(self, token: object, peer_id: str, reason: str, at: datetime) -> str:
        text = token if isinstance(token, str) else ""
        facts = peek_facts(text) or {}
        packet_id = facts.get("id")
        _log.info("refused packet %r from %s: %s", packet_id, peer_id, reason)
        receipt = Receipt(
            packet_id=packet_id if isinstance(packet_id, str) else None,
            packet_digest=packet_digest(text),
            sender=self._me,
            to=peer_id,
            status=ReceiptStatus.REJECTED,
            reason=str(reason),
            received_at=at,
        )
        return sign_receipt(receipt, self._signer, at=at)

    def _decide(
        self,
        tx: ReceiveTx,
        pipeline: Pipeline,
        peer_id: str,
        token: str,
        examined: Examined,
        at: datetime,
        accepted: list[OpenedPacket],
    ) -> str:
        result = examined.packet
        if isinstance(result, str):
            return self._reject(token, peer_id, result, at)
        facts = result.facts
        existing = tx.inbox_lookup(facts.id)
        if existing is not None:
            if existing[0] == result.digest:
                return existing[1]
            return self._reject(token, peer_id, Reason.DUPLICATE_ID_DIFFERENT_CONTENT, at)
        summary = summary_of(facts, result.digest)
        inbound = Inbound(
            packet=result,
            at=at,
            content=examined.content,
            sender_known=self._directory.knows(facts.sender),
            previous=tx.recv_sequence(facts.sender, facts.case),
            blob_sizes={a.digest: tx.blob_size(a.digest) for a in facts.attachments},
            opened=None if examined.body is None else OpenedPacket(summary, examined.body),
            earlier=tuple(accepted),
        )
        refusal = pipeline.first_refusal(inbound)
        if refusal is not None:
            return self._reject(token, peer_id, refusal[1], at)
        leaf = packet_leaf(LeafKind.PACKET_RECEIVED, facts, result.digest, node=self._me, at=at)
        index = tx.audit_append(leaf)
        receipt = Receipt(
            packet_id=facts.id,
            packet_digest=result.digest,
            sender=self._me,
            to=facts.sender,
            status=ReceiptStatus.ACCEPTED,
            reason=None,
            received_at=at,
            log_index=index,
            log_size=index + 1,
        )
        signed = sign_receipt(receipt, self._signer, at=at)
        tx.audit_append(receipt_leaf(Direction.SENT, receipt, signed, node=self._me, at=at))
        stood = tx.inbox_put(summary, token, at, signed, index)
        if stood is None:  # another worker of this node accepted another packet in its place
            return self._reject(token, peer_id, Reason.OUT_OF_ORDER, at)
        if stood == signed and inbound.opened is not None:  # not accepted by another worker
            accepted.append(inbound.opened)
        return stood
