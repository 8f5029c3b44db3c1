"""The signed-agreement file: the document, the party signatures and signed events.

::

    {
      "format": "tongban-signed-agreement/1",
      "document": { ...agreement document, see agreements.document... },
      "signatures": [{"party": "420106", "jws": "<detached compact JWS>"}, ...],
      "events": ["<compact JWS, typ tongban-agreement-event+jws>", ...]
    }

The signed bytes are never the file's bytes: they are the canonical JSON of the parsed,
normalized ``document`` (:meth:`Agreement.document_bytes`), so re-indenting the file
does not break a signature, and changing any value does. Errors inside ``document``
carry pointers from the file's root (``/document/matters/0/modes/1``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agreements.document import load_json, parse_agreement, pointer
from agreements.errors import AgreementError, IllegalTransition, MalformedAgreement
from agreements.events import Event
from agreements.lifecycle import Lifecycle, apply, from_signatures
from agreements.model import Agreement
from agreements.signatures import (
    PartySignature,
    SigningStatus,
    signing_status,
    verify_event,
)
from signing.certificates import TrustBundle

__all__ = ["SIGNED_FORMAT", "Evaluation", "SignedAgreement"]

SIGNED_FORMAT = "tongban-signed-agreement/1"
_KEYS = {"format", "document", "signatures", "events"}


@dataclass(frozen=True)
class Evaluation:
    """What a signed-agreement file amounts to, checked against a trust bundle."""

    status: SigningStatus
    lifecycle: Lifecycle
    events: tuple[Event, ...]  # applied, in time order
    refused_events: tuple[tuple[int, str], ...]  # (index in the file, why)


@dataclass(frozen=True)
class SignedAgreement:
    agreement: Agreement
    signatures: tuple[PartySignature, ...] = ()
    events: tuple[str, ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedAgreement:
        obj = load_json(data)
        if not isinstance(obj, dict):
            raise MalformedAgreement("", "must be an object")
        for key in obj:
            if key not in _KEYS:
                raise MalformedAgreement(pointer(key), "unknown field")
        for key in ("format", "document", "signatures"):
            if key not in obj:
                raise MalformedAgreement(pointer(key), "missing field")
        if obj["format"] != SIGNED_FORMAT:
            raise MalformedAgreement("/format", f"must be {SIGNED_FORMAT!r}")
        try:
            agreement = parse_agreement(obj["document"])
        except MalformedAgreement as exc:
            raise MalformedAgreement("/document" + exc.pointer, exc.reason) from None
        sigs = obj["signatures"]
        if not isinstance(sigs, list):
            raise MalformedAgreement("/signatures", "must be an array")
        parsed: list[PartySignature] = []
        for i, entry in enumerate(sigs):
            if not isinstance(entry, dict) or set(entry) != {"party", "jws"}:
                raise MalformedAgreement(pointer("signatures", i), "must be {party, jws}")
            if not isinstance(entry["party"], str):
                raise MalformedAgreement(pointer("signatures", i, "party"), "must be a string")
            if not isinstance(entry["jws"], str) or entry["jws"].count(".") != 2:
                raise MalformedAgreement(pointer("signatures", i, "jws"), "must be a compact JWS")
            parsed.append(PartySignature(entry["party"], entry["jws"]))
        events = obj.get("events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise MalformedAgreement("/events", "must be an array of compact JWS strings")
        return cls(agreement, tuple(parsed), tuple(events))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SIGNED_FORMAT,
            "document": self.agreement.document(),
            "signatures": [{"party": s.party, "jws": s.jws} for s in self.signatures],
            "events": list(self.events),
        }

    def to_bytes(self) -> bytes:
        """Human-readable JSON (indented, UTF-8); not the signed bytes."""
        return (json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n").encode()

    def with_signature(self, signature: PartySignature) -> SignedAgreement:
        """Add the party's signature, replacing an earlier one by the same party."""
        kept = tuple(s for s in self.signatures if s.party != signature.party)
        return SignedAgreement(self.agreement, (*kept, signature), self.events)

    def with_event(self, token: str) -> SignedAgreement:
        return SignedAgreement(self.agreement, self.signatures, (*self.events, token))

    def evaluate(self, bundle: TrustBundle, *, at: datetime | None = None) -> Evaluation:
        """Verify signatures and events and replay the lifecycle they imply.

        Signatures made after ``at`` and events dated after ``at`` are left out, so the
        evaluation shows the agreement as it stood at ``at``.
        """
        status = signing_status(self.agreement, self.signatures, bundle, at=at)
        lc = from_signatures(self.agreement, status.signed)
        good: list[tuple[int, Event]] = []
        refused: list[tuple[int, str]] = []
        for i, token in enumerate(self.events):
            try:
                event = verify_event(token, self.agreement, bundle)
            except AgreementError as exc:
                refused.append((i, str(exc)))
                continue
            if at is None or event.at <= at:
                good.append((i, event))
        applied: list[Event] = []
        for i, event in sorted(good, key=lambda item: (item[1].at, item[0])):
            try:
                lc = apply(lc, event, signed_by=frozenset(status.signed))
            except IllegalTransition as exc:
                refused.append((i, str(exc)))
                continue
            applied.append(event)
        return Evaluation(status, lc, tuple(applied), tuple(sorted(refused)))
