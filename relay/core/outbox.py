"""Outbox policy (pure): what to send next, when to retry, what to give up on.

Everything here is a function of the outbox rows, the time and a random number passed
in; the service applies the decisions through the store.

- **Per-case order.** Per destination and case, the *head* (lowest ``seq`` not yet
  settled) goes first; ``seq`` k+1 goes only behind k in the same batch (the receiver
  decides a batch packet after packet, so it admits k+1 once k is in) or once k has an
  accepted receipt. A case is in at most one batch in flight.
- **Batches.** Up to ``batch_size`` packets per destination per request, oldest case
  first; up to ``batches_in_flight`` requests to one destination at once, each with
  other cases. (The pure :func:`due_batches` below is the head-only rule on a list of
  rows; the sender reads the same choice from the store's indexes.)
- **Backoff.** After the peer could not be reached (or asked us to retry), the next
  attempt waits ``uniform(0, 1) * min(max_delay, base_delay * 2**(failures - 1))``
  ("full jitter"); the random number is an argument.
- **Expiry.** A packet past its ``expires`` time still gets one more chance when it is
  next due: the receiver answers with the original receipt if it had accepted it (its
  answer was lost), or refuses it as ``expired``. Only when the destination stays
  unreachable for ``expiry_grace`` after expiry is it dead-lettered without an answer.
  A dead packet takes the later packets of its case and destination with it (their
  ``prev`` chain can no longer be accepted); so does a final rejection.
- **Refusals.** A partner's HTTP refusal is classified by :func:`classify_refusal`
  (one table, documented in ``docs/federation-http.md``): *retry* (the partner or the
  network may recover: the destination backs off), *split* (the batch is too big: send
  it in halves) or *permanent* (this packet can never be accepted as it is: park it as
  a dead letter with the reason, so nothing else waits behind it).
- **Probe.** While a destination is backing off (it failed and has not answered since),
  the attempt after each backoff is one batch of one packet: an unreachable partner
  costs one small request per attempt, not ``batches_in_flight`` full batches encoded,
  marked in flight and marked back. Its first answer ends the backoff, and the next
  pass sends full batches again.
- **Catch-up.** Nothing special: every unsettled packet is still in the outbox, and a
  destination whose backoff elapsed is sent its heads again, in order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from relay.core.model import OutboxState

__all__ = [
    "BATCH_ENVELOPE_BYTES",
    "PER_PACKET_BYTES",
    "RETRYABLE_REASONS",
    "Batch",
    "OutboxPolicy",
    "OutboxRow",
    "PeerBackoff",
    "Refusal",
    "backoff_delay",
    "blocked_successors",
    "classify_refusal",
    "due_batches",
    "expired",
    "next_wakeup",
]

RETRYABLE_REASONS = frozenset({"gap", "attachment-missing", "unknown-sender", "agreement-unknown"})
"""Rejections that may succeed later unchanged; every other rejection is final."""

PER_PACKET_BYTES = 4
"""JSON overhead per packet in a batch body (quotes and comma)."""
BATCH_ENVELOPE_BYTES = 64
"""JSON overhead of a batch body around its packets, with room to spare."""

_OPEN = (OutboxState.QUEUED, OutboxState.IN_FLIGHT)


class Refusal(enum.StrEnum):
    RETRY = "retry"
    SPLIT = "split"
    PERMANENT = "permanent"


REQUEST_KINDS = ("batch", "blob-offset", "blob-upload")
"""Requests the sender makes: ``POST /packets``, ``HEAD`` and ``PUT /attachments/{d}``."""

_RETRY_STATUSES = frozenset({408, 425, 429})
"""4xx answers that say "later" rather than "never"."""

_BY_KIND: dict[tuple[str, int], Refusal] = {
    # the batch is over the partner's body or batch-size limit: halve it; a single
    # packet that is still too large is permanent (see Sender)
    ("batch", 413): Refusal.SPLIT,
    # no such route: a wrong federation URL or a node being redeployed, never a packet's
    # fault (taken per packet, one bad pass parked every packet and its successors)
    ("batch", 404): Refusal.RETRY,
    ("batch", 405): Refusal.RETRY,
    # the partner does not hold the blob / the offset moved: ask again later
    ("blob-offset", 404): Refusal.RETRY,
    ("blob-upload", 409): Refusal.RETRY,
    # the partner has not (yet) a verified descriptor or agreement for us
    ("batch", 403): Refusal.RETRY,
    ("blob-offset", 403): Refusal.RETRY,
    ("blob-upload", 403): Refusal.RETRY,
    ("batch", 401): Refusal.RETRY,
    ("blob-offset", 401): Refusal.RETRY,
    ("blob-upload", 401): Refusal.RETRY,
}


def classify_refusal(kind: str, status: int, code: str | None = None) -> Refusal:
    """The one table of what a partner's HTTP answer ``status`` (with its problem
    ``code``, if any) to a request of ``kind`` means for the sender. Network errors,
    timeouts and garbage never reach here: they are :data:`Refusal.RETRY` by
    construction. A refusal of a batch or an upload without a problem code is not a
    tongban node's (a proxy, a wrong address, a node being redeployed): retry. A
    ``HEAD`` answer has no body, so its status alone decides."""
    if kind not in REQUEST_KINDS:
        raise ValueError(f"unknown request kind {kind!r}")
    special = _BY_KIND.get((kind, status))
    if special is not None:
        return special
    if status in _RETRY_STATUSES or status >= 500 or status < 400:
        return Refusal.RETRY
    if code is None and kind != "blob-offset":
        return Refusal.RETRY
    return Refusal.PERMANENT


@dataclass(frozen=True)
class OutboxPolicy:
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)
    batch_size: int = 64
    batches_in_flight: int = 4
    """Batches sent to one destination at once (each holds other cases)."""
    default_ttl: timedelta = timedelta(days=7)
    idle_poll: timedelta = timedelta(seconds=30)
    expiry_grace: timedelta = timedelta(hours=1)
    max_packet_bytes: int | None = None
    """Largest packet (compact serialization) accepted at creation; ``None``: no limit."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.base_delay <= timedelta(0) or self.batches_in_flight < 1:
            raise ValueError("batch_size, batches_in_flight and base_delay must be positive")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must be at least base_delay")


@dataclass(frozen=True)
class OutboxRow:
    """What the policy needs to know of one outgoing packet."""

    packet_id: str
    peer: str
    case_id: str
    seq: int
    order: int
    state: OutboxState
    expires: datetime
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class PeerBackoff:
    failures: int = 0
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Batch:
    peer: str
    packet_ids: tuple[str, ...] = field(default_factory=tuple)


def backoff_delay(policy: OutboxPolicy, failures: int, rand: float) -> timedelta:
    """Full-jitter exponential backoff after ``failures`` consecutive failures."""
    if failures < 1:
        return timedelta(0)
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must be in [0, 1]")
    exp = min(failures - 1, 40)
    # in float seconds: base_delay × 2^40 is no timedelta once base_delay is over 78 s
    ceiling = min(policy.max_delay.total_seconds(), policy.base_delay.total_seconds() * 2.0**exp)
    return timedelta(seconds=ceiling * rand)


def expired(rows: Iterable[OutboxRow], policy: OutboxPolicy, at: datetime) -> list[str]:
    """Open packets to give up on without an answer: past expiry plus the grace."""
    return [r.packet_id for r in rows if r.state in _OPEN and r.expires + policy.expiry_grace <= at]


def blocked_successors(rows: Iterable[OutboxRow], settled: OutboxRow) -> list[str]:
    """Open packets after ``settled`` in its case and destination (to be dead-lettered
    when ``settled`` was rejected or died)."""
    return [
        r.packet_id
        for r in rows
        if r.state in _OPEN
        and r.peer == settled.peer
        and r.case_id == settled.case_id
        and r.seq > settled.seq
    ]


def _heads(rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    head: dict[tuple[str, str], OutboxRow] = {}
    for r in rows:
        if r.state not in _OPEN:
            continue
        key = (r.peer, r.case_id)
        if key not in head or r.seq < head[key].seq:
            head[key] = r
    return sorted(head.values(), key=lambda r: r.order)


def due_batches(
    rows: Sequence[OutboxRow],
    peers: dict[str, PeerBackoff],
    policy: OutboxPolicy,
    at: datetime,
) -> list[Batch]:
    """Batches to send now: per destination whose backoff elapsed, the due case heads
    (oldest first, at most ``batch_size``); expired heads too, for their last chance."""
    by_peer: dict[str, list[str]] = {}
    for r in _heads(rows):
        backoff = peers.get(r.peer)
        if backoff and backoff.next_attempt_at and backoff.next_attempt_at > at:
            continue
        if r.next_attempt_at is not None and r.next_attempt_at > at:
            continue
        ids = by_peer.setdefault(r.peer, [])
        if len(ids) < policy.batch_size:
            ids.append(r.packet_id)
    return [Batch(peer, tuple(ids)) for peer, ids in by_peer.items()]


def next_wakeup(
    rows: Sequence[OutboxRow], peers: dict[str, PeerBackoff], policy: OutboxPolicy, at: datetime
) -> datetime:
    """When the next pass has something to do (at the latest ``at + idle_poll``)."""
    wake = at + policy.idle_poll
    for r in _heads(rows):
        candidates = [r.expires + policy.expiry_grace]
        due = r.next_attempt_at or at
        backoff = peers.get(r.peer)
        if backoff and backoff.next_attempt_at:
            due = max(due, backoff.next_attempt_at)
        candidates.append(due)
        wake = min(wake, *candidates)
    return max(wake, at)
