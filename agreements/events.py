"""Lifecycle events: the facts that move an agreement from one state to the next.

An event names the agreement (id, version and the SHA-256 of its document bytes, so it
cannot be replayed against other bytes), the acting party, the instant and the kind.
On the wire an event is a JWS signed by the acting party's seal
(``typ: tongban-agreement-event+jws``, see :mod:`agreements.signatures`); its payload is
the canonical JSON of :meth:`Event.to_json`::

    {"agreement": "hb-js-2026", "at": 1767225600, "document_sha256": "<hex>",
     "event": "suspend", "format": "tongban-agreement-event/1", "party": "420106",
     "reason": "...", "superseded_by": null, "version": 1}
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from agreements.document import is_node_id, load_json
from agreements.errors import MalformedAgreement
from agreements.model import Agreement, epoch, from_epoch
from signing.encoding import canonical_json

__all__ = ["EVENT_FORMAT", "MAX_REASON", "Event", "EventKind", "document_digest", "parse_event"]

MAX_REASON = 2000
"""An event's reason, at most this many characters (protocol.md §6.4)."""

EVENT_FORMAT = "tongban-agreement-event/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class EventKind(StrEnum):
    PROPOSE = "propose"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    RESUME = "resume"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"
    SUPERSEDE = "supersede"


def document_digest(agreement: Agreement) -> str:
    """Lowercase hex SHA-256 of the agreement's document bytes."""
    return hashlib.sha256(agreement.document_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    agreement_id: str
    version: int
    document_sha256: str
    party: str
    at: datetime
    reason: str = ""
    superseded_by: int | None = None

    @classmethod
    def for_agreement(
        cls,
        agreement: Agreement,
        kind: EventKind,
        *,
        party: str,
        at: datetime,
        reason: str = "",
        superseded_by: int | None = None,
    ) -> Event:
        return cls(
            kind,
            agreement.id,
            agreement.version,
            document_digest(agreement),
            party,
            at,
            reason,
            superseded_by,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement_id,
            "at": epoch(self.at),
            "document_sha256": self.document_sha256,
            "event": self.kind.value,
            "format": EVENT_FORMAT,
            "party": self.party,
            "reason": self.reason,
            "superseded_by": self.superseded_by,
            "version": self.version,
        }

    def payload(self) -> bytes:
        return canonical_json(self.to_json())


_KEYS = {
    "agreement",
    "at",
    "document_sha256",
    "event",
    "format",
    "party",
    "reason",
    "superseded_by",
    "version",
}


def parse_event(data: bytes) -> Event:
    """Parse an event payload strictly (pointer-carrying :class:`MalformedAgreement`)."""
    obj = load_json(data)
    if not isinstance(obj, dict):
        raise MalformedAgreement("", "an event must be an object")
    for key in obj:
        if key not in _KEYS:
            raise MalformedAgreement(f"/{key}", "unknown field")
    for key in sorted(_KEYS):
        if key not in obj:
            raise MalformedAgreement(f"/{key}", "missing field")
    if obj["format"] != EVENT_FORMAT:
        raise MalformedAgreement("/format", f"must be {EVENT_FORMAT!r}")
    if obj["event"] not in {k.value for k in EventKind}:
        raise MalformedAgreement("/event", "unknown event kind")
    if not isinstance(obj["agreement"], str) or not obj["agreement"]:
        raise MalformedAgreement("/agreement", "must be an agreement id")
    for key in ("version", "at"):
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MalformedAgreement(f"/{key}", "must be a non-negative integer")
    if not isinstance(obj["document_sha256"], str) or not _HEX64.fullmatch(obj["document_sha256"]):
        raise MalformedAgreement("/document_sha256", "must be 64 lowercase hex digits")
    if not is_node_id(obj["party"]):
        raise MalformedAgreement("/party", "must be a 6-digit division code")
    if not isinstance(obj["reason"], str) or len(obj["reason"]) > MAX_REASON:
        raise MalformedAgreement("/reason", f"must be a string (at most {MAX_REASON} characters)")
    sup = obj["superseded_by"]
    if sup is not None and (isinstance(sup, bool) or not isinstance(sup, int) or sup < 1):
        raise MalformedAgreement("/superseded_by", "must be null or a version number")
    return Event(
        EventKind(obj["event"]),
        obj["agreement"],
        obj["version"],
        obj["document_sha256"],
        obj["party"],
        from_epoch(obj["at"]),
        obj["reason"],
        sup,
    )
