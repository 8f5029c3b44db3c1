"""Value objects the relay core hands to its callers (staff API, CLI, HTTP shell)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "AttachmentInfo",
    "InboxItem",
    "OutboxItem",
    "OutboxState",
    "PacketContent",
    "PacketSummary",
]


class OutboxState(StrEnum):
    """Delivery state of an outgoing packet.

    ``queued`` → ``in_flight`` → ``delivered`` (accepted receipt) or ``rejected``
    (final rejected receipt); ``dead`` when it expired undelivered or an earlier packet
    of the same case and direction can no longer be delivered.
    """

    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    DEAD = "dead"


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as the packet's routing facts name it.

    ``digest``/``size`` are those of the *sealed blob* (what travels and what the
    receiver checks); ``plain_digest``/``plain_size`` those of the plaintext (None
    where only the routing facts are known: an incoming packet not yet opened).
    """

    digest: str
    size: int
    media_type: str
    name: str
    plain_digest: str | None = None
    plain_size: int | None = None


@dataclass(frozen=True)
class PacketSummary:
    """What staff see of a packet: its routing facts and where it stands."""

    packet_id: str
    digest: str
    case_id: str
    sender: str
    receiver: str
    matter: str
    action: str
    mode: str
    seq: int
    created: datetime
    expires: datetime
    attachments: tuple[AttachmentInfo, ...] = ()


@dataclass(frozen=True)
class OutboxItem:
    """An outgoing packet, its delivery state and the receipt that settled it."""

    summary: PacketSummary
    state: OutboxState
    attempts: int
    next_attempt_at: datetime | None
    reason: str | None
    receipt: str | None


@dataclass(frozen=True)
class InboxItem:
    """An accepted incoming packet and the receipt we returned for it."""

    summary: PacketSummary
    received_at: datetime
    receipt: str
    log_index: int | None


@dataclass(frozen=True)
class PacketContent:
    """A packet opened for reading: the business content and the proof of who said it.

    ``content_jws`` is the inner compact JWS (typ ``tongban-content+jws``) signed by the
    sending node's seal: together with ``packet`` (the outer JWS) and ``receipt`` an
    auditor can check the content, its origin and its delivery offline.
    """

    summary: PacketSummary
    content: Mapping[str, Any]
    content_jws: str
    packet: str
    receipt: str | None
