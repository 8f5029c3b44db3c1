"""The audit-log leaves the relay appends (formats in :mod:`relay.audit.leaves`).

In the same transaction as the fact itself: ``packet-sent`` when a packet enters the
outbox; ``packet-received`` then ``receipt`` (direction ``sent``) when a packet is
accepted (the receipt's ``log`` names the ``packet-received`` leaf); ``receipt``
(direction ``received``) when a partner's verified receipt is stored. Refused packets
are not stored and not logged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from relay.audit.leaves import AuditLeaf, Direction, LeafKind, PacketLeaf, ReceiptLeaf, encode_leaf
from relay.core.fields import format_time
from relay.core.packets import RoutingFacts
from relay.core.receipts import Receipt

__all__ = ["packet_leaf", "receipt_leaf"]


def packet_leaf(
    kind: LeafKind, facts: RoutingFacts, digest: str, *, node: str, at: datetime
) -> bytes:
    body = PacketLeaf(
        digest=digest,
        id=facts.id,
        case=facts.case,
        from_node=facts.sender,
        to_node=facts.receiver,
        matter=facts.matter,
        action=facts.action,
        agreement_id=facts.agreement.id,
        agreement_version=facts.agreement.version,
        agreement_digest=facts.agreement.digest,
        seq=facts.seq,
        prev=facts.prev,
        created=format_time(facts.created),
    )
    return encode_leaf(AuditLeaf(kind, node, format_time(at), body))


def receipt_leaf(
    direction: Direction, receipt: Receipt, token: str, *, node: str, at: datetime
) -> bytes:
    assert receipt.packet_id is not None
    body = ReceiptLeaf(
        digest=hashlib.sha256(token.encode("ascii")).hexdigest(),
        direction=str(direction),
        packet_id=receipt.packet_id,
        packet_digest=receipt.packet_digest,
        from_node=receipt.sender,
        to_node=receipt.to,
        status=str(receipt.status),
        reason=receipt.reason,
        log_index=receipt.log_index,
    )
    return encode_leaf(AuditLeaf(LeafKind.RECEIPT, node, format_time(at), body))
