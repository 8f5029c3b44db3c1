"""Receipts: the receiver's signed answer to every packet.

Compact JWS, typ ``tongban-receipt+jws``, signed by the receiving node's seal, whose
payload is the canonical JSON::

    {v: 1, packet_id, packet_digest, from, to, status, reason, received_at,
     log: {index, size} | null}

``from`` is the receiving node, ``to`` the sender (the mutual-TLS peer); ``reason`` is
null exactly when ``status`` is ``accepted``; ``log`` names the audit-log leaf that
records an accepted packet (null for rejections, which are not stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from relay.core.errors import MalformedPacket
from relay.core.fields import digest_field, format_time, int_field, node_field, parse_time
from relay.core.packets import canonical_parts, require_canonical
from signing.certificates import Purpose, TrustBundle
from signing.encoding import canonical_json, loads_ijson
from signing.errors import MalformedInput
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "MAX_REASON",
    "RECEIPT_TYP",
    "Receipt",
    "ReceiptStatus",
    "sign_receipt",
    "verify_receipt",
]

RECEIPT_TYP = "tongban-receipt+jws"


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


MAX_REASON = 256
"""The longest reason a receipt may give (the audit log's receipt leaf holds it)."""


@dataclass(frozen=True)
class Receipt:
    """A receipt's facts. ``sender`` is the receiving node that signs it (``from``)."""

    packet_id: str | None
    packet_digest: str
    sender: str
    to: str
    status: ReceiptStatus
    reason: str | None
    received_at: datetime
    log_index: int | None = None
    log_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        log = None
        if self.log_index is not None:
            log = {"index": self.log_index, "size": self.log_size}
        return {
            "v": 1,
            "packet_id": self.packet_id,
            "packet_digest": self.packet_digest,
            "from": self.sender,
            "to": self.to,
            "status": str(self.status),
            "reason": self.reason,
            "received_at": format_time(self.received_at),
            "log": log,
        }

    @classmethod
    def from_json(cls, obj: object) -> Receipt:
        keys = {"v", "packet_id", "packet_digest", "from", "to", "status", "reason"}
        if not isinstance(obj, dict) or set(obj) != keys | {"received_at", "log"}:
            raise MalformedPacket("receipt must have exactly the v1 keys")
        if obj["v"] != 1 or obj["status"] not in ("accepted", "rejected"):
            raise MalformedPacket("bad receipt version or status")
        status = ReceiptStatus(obj["status"])
        reason = obj["reason"]
        if (status is ReceiptStatus.ACCEPTED) != (reason is None) or (
            reason is not None and not isinstance(reason, str)
        ):
            raise MalformedPacket("a reason is given exactly when the packet was rejected")
        if reason is not None and not 0 < len(reason) <= MAX_REASON:
            raise MalformedPacket(f"a reason is 1 to {MAX_REASON} characters")
        packet_id = obj["packet_id"]
        if packet_id is not None and not isinstance(packet_id, str):
            raise MalformedPacket("packet_id must be a string or null")
        log = obj["log"]
        index = size = None
        if log is not None:
            if not isinstance(log, dict) or set(log) != {"index", "size"}:
                raise MalformedPacket("log is {index, size} or null")
            index, size = int_field(log, "index"), int_field(log, "size", minimum=1)
            if index >= size:
                raise MalformedPacket("log index must be below the log size")
        return cls(
            packet_id=packet_id,
            packet_digest=digest_field(obj, "packet_digest"),
            sender=node_field(obj, "from"),
            to=node_field(obj, "to"),
            status=status,
            reason=reason,
            received_at=parse_time(obj["received_at"]),
            log_index=index,
            log_size=size,
        )


def sign_receipt(receipt: Receipt, signer: Signer, *, at: datetime) -> str:
    return sign_compact(canonical_json(receipt.to_json()), signer, typ=RECEIPT_TYP, at=at)


def verify_receipt(token: str, bundle: TrustBundle, *, at: datetime, expected_from: str) -> Receipt:
    """Verify a receipt signed by ``expected_from``'s seal; raises :class:`SigningError`
    or :class:`MalformedPacket`."""
    canonical_parts(token)
    verified = verify_compact(
        token, bundle, at=at, typ=RECEIPT_TYP, purpose=Purpose.SEAL, node_id=expected_from
    )
    try:
        obj = loads_ijson(verified.payload)
    except MalformedInput as exc:
        raise MalformedPacket(f"receipt payload is not JSON: {exc}") from exc
    receipt = Receipt.from_json(obj)
    require_canonical(obj, verified.payload)
    if receipt.sender != expected_from:
        raise MalformedPacket("receipt 'from' is not its signer")
    return receipt
