"""The acceptance pipeline for incoming packets, as named checks.

Order (the first refusal wins and names the receipt's reason code):

1. ``authentic`` — outer JWS verifies against the trust bundle with a seal
   certificate (``bad-signature``); its payload is v1 routing facts (``malformed``);
   the seal certificate's node id is ``from`` and ``from`` is the mutual-TLS peer
   (``sender-mismatch``); ``to`` is this node (``not-for-me``).
2. ``known-sender`` — ``from`` has a verified descriptor here (``unknown-sender``).
3. *deduplication* (not a check: done by the service against the inbox) — a packet
   id already accepted gets the original receipt back if the digest is the same,
   ``duplicate-id-different-content`` otherwise. It runs before the checks below on
   purpose: a retried packet whose receipt was lost must get its receipt even after
   the packet expired or the agreement changed.
4. ``not-expired`` (``expired``).
5. ``authorized`` — the agreement named in the packet grants this sender, receiver,
   matter, action and mode now, and allows the cryptographic profiles of the sender
   (its seal certificate that signed the packet) and of this node
   (``agreement-denied:<agreement reason>``, e.g. ``agreement-denied:profile-not-allowed``;
   ``agreement-unknown`` when this node does not hold the pinned version yet).
6. ``in-sequence`` — ``seq`` is one past the last accepted of this case from this
   sender and ``prev`` its digest (``gap`` when packets are missing before it,
   ``out-of-order`` when it is behind or its ``prev`` does not chain).
7. ``content`` — the sealed content opens with one of our HPKE keys and its inner JWS
   is signed by the sender and names this packet (``malformed``, ``bad-signature``).
8. ``attachments`` — every attachment blob is held complete (``attachment-missing``)
   with the announced size (``attachment-digest-mismatch``).
9. ``content-accepted`` (only with a :class:`~relay.core.ports.ContentCheck`) — the
   application accepts the opened content (``content-refused:<its code>``). It runs
   last, so a packet it lets pass is accepted; it is told which packets of the batch
   were accepted before.

Everything but the content check is pure: what the store knows is read into
:class:`Inbound` first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from relay.core.errors import MalformedPacket
from relay.core.packets import Content, VerifiedPacket, open_content, verify_packet
from relay.core.ports import (
    AGREEMENT_UNKNOWN,
    AuthorizationRequest,
    Authorizer,
    ContentCheck,
    OpenedPacket,
)
from signing.certificates import TrustBundle
from signing.errors import InvalidSignature, SigningError
from signing.hpke import HpkePrivateKey
from signing.profiles import certificate_profile

__all__ = [
    "Check",
    "Examined",
    "Inbound",
    "Pipeline",
    "Reason",
    "authenticate",
    "content_verdict",
    "examine",
    "standard_pipeline",
]

_CODE = re.compile(r"[a-z0-9-]{1,64}")


class Reason(StrEnum):
    """Stable reason codes of a rejected receipt (``agreement-denied:*`` is built by
    :meth:`agreement_denied`, ``content-refused:*`` by :meth:`content_refused`)."""

    BAD_SIGNATURE = "bad-signature"
    NOT_FOR_ME = "not-for-me"
    SENDER_MISMATCH = "sender-mismatch"
    UNKNOWN_SENDER = "unknown-sender"
    EXPIRED = "expired"
    AGREEMENT_DENIED = "agreement-denied"
    AGREEMENT_UNKNOWN = "agreement-unknown"
    DUPLICATE_ID_DIFFERENT_CONTENT = "duplicate-id-different-content"
    OUT_OF_ORDER = "out-of-order"
    GAP = "gap"
    ATTACHMENT_MISSING = "attachment-missing"
    ATTACHMENT_DIGEST_MISMATCH = "attachment-digest-mismatch"
    MALFORMED = "malformed"
    CONTENT_REFUSED = "content-refused"

    @staticmethod
    def agreement_denied(reason: str | None) -> str:
        return f"agreement-denied:{reason or 'denied'}"

    @staticmethod
    def content_refused(code: str) -> str:
        """``content-refused:<code>``; a code that is not 1-64 of ``[a-z0-9-]`` (what
        docs/protocol.md §8.5 promises a reader of the receipt) becomes ``refused``."""
        return f"content-refused:{code if _CODE.fullmatch(code) else 'refused'}"


def authenticate(
    token: str, bundle: TrustBundle, *, at: datetime, peer_id: str, me: str
) -> VerifiedPacket | str:
    """Check 1 (``authentic``): the verified packet, or the reason code refusing it."""
    if not isinstance(token, str) or not token.isascii():
        return Reason.MALFORMED
    try:
        packet = verify_packet(token, bundle, at=at)
    except SigningError:
        return Reason.BAD_SIGNATURE
    except MalformedPacket:
        return Reason.MALFORMED
    if packet.signer.node_id != packet.facts.sender or packet.facts.sender != peer_id:
        return Reason.SENDER_MISMATCH
    if packet.facts.receiver != me:
        return Reason.NOT_FOR_ME
    return packet


def _open(
    packet: VerifiedPacket, keys: Mapping[str, HpkePrivateKey], bundle: TrustBundle, at: datetime
) -> Content | str:
    try:
        return open_content(packet.facts, keys, bundle, at=at)
    except InvalidSignature:
        return Reason.BAD_SIGNATURE
    except (MalformedPacket, SigningError):  # no key for the kid, decryption failed
        return Reason.MALFORMED


def content_verdict(
    packet: VerifiedPacket, keys: Mapping[str, HpkePrivateKey], bundle: TrustBundle, *, at: datetime
) -> str | None:
    """Check 7 (``content``) on its own: None when the sealed content opens with one of
    ``keys`` (by kid) and its inner JWS matches, else the reason code."""
    opened = _open(packet, keys, bundle, at)
    return opened if isinstance(opened, str) else None


@dataclass(frozen=True)
class Examined:
    """What can be decided about a packet without the store (checks 1 and 7): the
    expensive, pure part, which the inbox runs off the event loop."""

    packet: VerifiedPacket | str  # the authentic packet, or the reason refusing it
    content: str | None = None  # the ``content`` check's verdict
    body: Mapping[str, Any] | None = None  # the opened business content (verdict None)


def examine(
    token: str,
    bundle: TrustBundle,
    keys: Mapping[str, HpkePrivateKey],
    *,
    at: datetime,
    peer_id: str,
    me: str,
) -> Examined:
    packet = authenticate(token, bundle, at=at, peer_id=peer_id, me=me)
    if isinstance(packet, str):
        return Examined(packet)
    opened = _open(packet, keys, bundle, at)
    if isinstance(opened, str):
        return Examined(packet, opened)
    return Examined(packet, None, opened.body)


@dataclass(frozen=True)
class Inbound:
    """An authentic packet with what the store knows about it, at time ``at``, the
    precomputed verdict of the ``content`` check and, for the ``content-accepted``
    check, the opened packet and the packets accepted before it in its batch."""

    packet: VerifiedPacket
    at: datetime
    content: str | None
    sender_known: bool
    previous: tuple[int, str] | None
    blob_sizes: Mapping[str, int | None]
    opened: OpenedPacket | None = None  # None when the content did not open
    earlier: tuple[OpenedPacket, ...] = ()


@dataclass(frozen=True)
class Check:
    """A named acceptance rule: returns a reason code, or None to let the packet pass."""

    name: str
    run: Callable[[Inbound], str | None]


@dataclass(frozen=True)
class Pipeline:
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        if not self.checks:
            raise ValueError("an empty acceptance pipeline would accept everything")

    def first_refusal(self, inbound: Inbound) -> tuple[str, str] | None:
        """(check name, reason code) of the first check that refuses, or None."""
        for check in self.checks:
            reason = check.run(inbound)
            if reason is not None:
                return check.name, reason
        return None


def _known_sender(i: Inbound) -> str | None:
    return None if i.sender_known else Reason.UNKNOWN_SENDER


def _not_expired(i: Inbound) -> str | None:
    return Reason.EXPIRED if i.packet.facts.expires <= i.at else None


def _in_sequence(i: Inbound) -> str | None:
    facts = i.packet.facts
    last_seq, last_digest = i.previous if i.previous is not None else (0, None)
    if facts.seq > last_seq + 1:
        return Reason.GAP
    if facts.seq <= last_seq or facts.prev != last_digest:
        return Reason.OUT_OF_ORDER
    return None


def _attachments(i: Inbound) -> str | None:
    for ref in i.packet.facts.attachments:
        size = i.blob_sizes.get(ref.digest)
        if size is None:
            return Reason.ATTACHMENT_MISSING
        if size != ref.size:
            return Reason.ATTACHMENT_DIGEST_MISMATCH
    return None


def _authorized(authorizer: Authorizer, profile: str | None) -> Callable[[Inbound], str | None]:
    def run(i: Inbound) -> str | None:
        f = i.packet.facts
        request = AuthorizationRequest(
            sender=f.sender,
            receiver=f.receiver,
            matter=f.matter,
            action=f.action,
            mode=f.mode,
            agreement=f.agreement,
            sender_profile=certificate_profile(i.packet.signer.certificate),
            receiver_profile=profile,
        )
        decision = authorizer(request, i.at)
        if decision.allowed:
            return None
        if decision.reason == AGREEMENT_UNKNOWN:  # not loaded here yet: the sender retries
            return Reason.AGREEMENT_UNKNOWN
        return Reason.agreement_denied(decision.reason)

    return run


def _content(i: Inbound) -> str | None:
    return i.content


def _content_accepted(content_check: ContentCheck) -> Callable[[Inbound], str | None]:
    def run(i: Inbound) -> str | None:
        if i.opened is None:  # the ``content`` check refused it already
            return Reason.MALFORMED
        code = content_check.check(i.opened, earlier=i.earlier, at=i.at)
        return None if code is None else Reason.content_refused(code)

    return run


def standard_pipeline(
    authorizer: Authorizer,
    content_check: ContentCheck | None = None,
    *,
    profile: str | None = None,
) -> Pipeline:
    """Checks 2 and 4-8 of the module docstring, in that order (7 reads the verdict
    :func:`examine` computed), then 9 when a ``content_check`` is given. ``profile`` is
    this node's cryptographic profile, which the agreement must allow (check 5)."""
    checks: tuple[Check, ...] = (
        Check("known-sender", _known_sender),
        Check("not-expired", _not_expired),
        Check("authorized", _authorized(authorizer, profile)),
        Check("in-sequence", _in_sequence),
        Check("content", _content),
        Check("attachments", _attachments),
    )
    if content_check is not None:
        checks += (Check("content-accepted", _content_accepted(content_check)),)
    return Pipeline(checks)
