"""JSON forms of the relay core's value objects (what the staff API returns)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    PacketContent,
    PacketSummary,
)

__all__ = ["attachment_json", "inbox_json", "outbox_json", "packet_json", "summary_json", "when"]


def when(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a ``Z``, seconds precision."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def attachment_json(info: AttachmentInfo) -> dict[str, Any]:
    return {
        "digest": info.digest,
        "size": info.size,
        "media_type": info.media_type,
        "name": info.name,
        "plain_digest": info.plain_digest,
        "plain_size": info.plain_size,
    }


def summary_json(summary: PacketSummary) -> dict[str, Any]:
    return {
        "packet_id": summary.packet_id,
        "digest": summary.digest,
        "case_id": summary.case_id,
        "from": summary.sender,
        "to": summary.receiver,
        "matter": summary.matter,
        "action": summary.action,
        "mode": summary.mode,
        "seq": summary.seq,
        "created": when(summary.created),
        "expires": when(summary.expires),
        "attachments": [attachment_json(a) for a in summary.attachments],
    }


def outbox_json(item: OutboxItem) -> dict[str, Any]:
    return {
        "packet": summary_json(item.summary),
        "state": item.state.value,
        "attempts": item.attempts,
        "next_attempt_at": when(item.next_attempt_at),
        "reason": item.reason,
        "receipt": item.receipt,
    }


def inbox_json(item: InboxItem) -> dict[str, Any]:
    return {
        "packet": summary_json(item.summary),
        "received_at": when(item.received_at),
        "receipt": item.receipt,
        "log_index": item.log_index,
    }


def packet_json(content: PacketContent) -> dict[str, Any]:
    return {
        "packet": summary_json(content.summary),
        "content": dict(content.content),
        "content_jws": content.content_jws,
        "packet_jws": content.packet,
        "receipt": content.receipt,
    }
