"""The relay core's ports: what it needs from the world, as small interfaces.

- :class:`PeerLink` carries packets and attachment blobs to a partner node. The real
  one is mutual TLS over HTTPS (``relay.http``); :class:`relay.core.fakes.FakePeerLink`
  connects :class:`~relay.core.service.RelayNode` objects in memory with loss, delay
  and down partners.
- :data:`Clock` is the time source (aware UTC datetimes); tests advance a fake one.
- :class:`Authorizer` is the agreement decision (``agreements.authorize`` adapted);
  both the sending and the receiving node call it.
- :class:`ContentCheck` (optional) lets the application above the relay refuse a
  packet for what its opened content says — the case layer refuses a partner's step
  its state machine does not allow — before the packet is stored or receipted as
  accepted. The core knows nothing of what the content means.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from relay.core.errors import PeerUnavailable
from relay.core.model import PacketSummary
from signing.certificates import TrustBundle

__all__ = [
    "AGREEMENT_UNKNOWN",
    "AgreementRef",
    "AuthorizationDecision",
    "AuthorizationRequest",
    "Authorizer",
    "BundleSource",
    "Clock",
    "ContentCheck",
    "OpenAt",
    "OpenedPacket",
    "PeerLink",
    "PeerUnavailable",
    "ReceivedBatch",
]

AGREEMENT_UNKNOWN = "agreement-unknown"
"""An :class:`AuthorizationDecision` reason that is no agreement decision: the receiving
node does not hold the agreement version the packet pins (not loaded yet). The packet's
receipt says ``agreement-unknown`` itself, not ``agreement-denied:*``, and the sender
retries it (docs/protocol.md §8.5 step 5, §8.7)."""

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC ``datetime``."""

BundleSource = Callable[[], TrustBundle]
"""Returns the trust bundle in force now (roots and the freshest CRLs)."""

OpenAt = Callable[[int], AsyncIterator[bytes]]
"""``open_at(offset)`` streams a blob's bytes from ``offset`` to its end, in chunks."""


class PeerLink(Protocol):
    """Transport to partner nodes. Implementations add no semantics of their own."""

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        """Send a batch of compact packet JWS to ``peer``; return its receipts.

        The result holds one compact receipt JWS per packet, in the same order. Raises
        :class:`PeerUnavailable` when the peer cannot be reached or answers with
        anything but a well-formed batch of receipts (the caller retries later; the
        receiver deduplicates, so a batch that was in fact delivered is harmless).
        """
        ...

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        """Make sure ``peer`` holds the sealed blob ``digest`` (``size`` bytes).

        Resumable: asks the peer how many bytes it already holds (its offset), then
        streams the rest from ``open_at(offset)``. Returns once the peer holds the
        complete blob and has checked its digest. Raises :class:`PeerUnavailable`.
        """
        ...


@dataclass(frozen=True)
class AgreementRef:
    """Which agreement version a packet travels under (pinned in the outer packet)."""

    id: str
    version: int
    digest: str


@dataclass(frozen=True)
class AuthorizationRequest:
    """One step between two parties. ``agreement`` is None when the caller (the sending
    node) asks the authorizer to find the agreement that grants it. ``sender_profile``
    and ``receiver_profile`` are the cryptographic profiles (``default``, ``sm``;
    :mod:`signing.profiles`) of the two nodes, which the agreement must allow
    (docs/protocol.md §6.6); the relay core always names both."""

    sender: str
    receiver: str
    matter: str
    action: str
    mode: str
    agreement: AgreementRef | None = None
    sender_profile: str | None = None
    receiver_profile: str | None = None


@dataclass(frozen=True)
class AuthorizationDecision:
    """``allowed`` with the granting agreement, or refused with a stable reason code
    and, when the authorizer can say more than the code, a sentence for people."""

    allowed: bool
    reason: str | None = None
    agreement: AgreementRef | None = None
    detail: str | None = None


class Authorizer(Protocol):
    """The agreement decision at time ``at``."""

    def __call__(self, request: AuthorizationRequest, at: datetime) -> AuthorizationDecision: ...


@dataclass(frozen=True)
class OpenedPacket:
    """An authentic packet whose sealed content opened and verified: its routing facts
    and the business content (the inner JWS ``body``)."""

    summary: PacketSummary
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ReceivedBatch:
    """What one federation batch left: the receipts (in order) and the packets it
    accepted, committed, with the content as the pipeline opened it, so that an
    application applying them need not verify and decrypt them a second time."""

    receipts: tuple[str, ...]
    accepted: tuple[OpenedPacket, ...]
    received_at: datetime


class ContentCheck(Protocol):
    """The application's say on an incoming packet's content (docs/protocol.md §8.5,
    step 9).

    The receiver runs it last, after every check of the relay itself passed, inside the
    receive transaction and before anything is stored: returning None accepts the
    packet; returning a code ``c`` (short kebab-case) refuses it with a signed
    ``rejected`` receipt whose reason is ``content-refused:c``, and nothing is stored.
    Raising fails the whole batch (the sender retries later): use it for the check's
    own failures, never for a verdict.
    """

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        """Why ``packet`` is refused, or None. ``earlier`` are the packets of the same
        batch accepted before it, in order: accepted, but not yet committed, so they
        are not yet visible through the store; ``at`` is the receiving time."""
        ...
