"""The relay's storage interface. Nothing above it writes SQL.

Two implementations: :class:`relay.core.sqlite_store.SqliteStore` (one SQLite file per
node, WAL, ``synchronous=FULL``, plus a content-addressed blob directory) and
:class:`relay.core.pg_store.PgStore` (one PostgreSQL database the node's workers share,
blobs in a shared directory; :func:`relay.core.stores.open_relay_store` picks one from
the configuration).
Every method is one transaction, and no method the outbox or the receive pipeline
calls per batch reads more than what is due (the cost stays flat however many packets
are queued or stored); :meth:`RelayStore.receiving` opens a transaction the
receive pipeline reads and writes through and that commits when the block exits —
before any receipt leaves the node.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from relay.core.model import (
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketSummary,
)
from relay.core.outbox import OutboxRow, PeerBackoff

__all__ = [
    "Incoming",
    "NewOutgoing",
    "OutboxUpdate",
    "Outgoing",
    "ReceiveTx",
    "RelayStore",
    "StagedAttachment",
    "Upload",
    "UploadKind",
]


@dataclass(frozen=True)
class NewOutgoing:
    """A packet to queue; ``own_copy`` is its inner content JWS sealed for this node
    alone (``r1.<kid>.<b64url>``, ``r2`` on an SM-profile node, :mod:`signing.at_rest`;
    older rows ``<kid>.<b64url>``, HPKE-sealed to its own key) so staff can read what
    they sent; ``audit_leaf`` is the ``packet-sent`` leaf appended in the same
    transaction, and ``also_logged`` the leaves the packet's sending logs after it (a
    ``survey-report`` leaf: the report is logged as sent when its packet is queued)."""

    summary: PacketSummary
    token: str
    own_copy: str
    audit_leaf: bytes
    also_logged: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Outgoing:
    item: OutboxItem
    token: str
    own_copy: str


@dataclass(frozen=True)
class Incoming:
    item: InboxItem
    token: str


@dataclass(frozen=True)
class OutboxUpdate:
    """A state change of one outgoing packet (``attempted`` adds one attempt).

    ``audit_leaf`` (the ``receipt`` leaf of ``receipt``) is appended in the same
    transaction unless that very receipt was stored before."""

    packet_id: str
    state: OutboxState
    next_attempt_at: datetime | None = None
    reason: str | None = None
    receipt: str | None = None
    attempted: bool = False
    audit_leaf: bytes | None = None


@dataclass(frozen=True)
class StagedAttachment:
    """A staff-staged attachment, sealed at rest; ``wrapped_key`` is its stream key
    HPKE-sealed to this node's own key ``key_kid``."""

    plain_digest: str
    plain_size: int
    blob_digest: str
    blob_size: int
    media_type: str
    name: str
    key_kid: str
    wrapped_key: bytes


class UploadKind:
    STAGE = "stage"  # plaintext from staff
    BLOB = "blob"  # sealed blob from a peer


@dataclass(frozen=True)
class Upload:
    kind: str
    digest: str
    size: int
    offset: int
    path: Path


class ReceiveTx(Protocol):
    """The receive pipeline's view of the store inside one transaction."""

    def inbox_lookup(self, packet_id: str) -> tuple[str, str] | None:
        """(digest, receipt) of an accepted packet with that id."""
        ...

    def recv_sequence(self, sender: str, case_id: str) -> tuple[int, str] | None:
        """(last accepted seq, its packet digest) from ``sender`` in ``case_id``."""
        ...

    def blob_size(self, digest: str) -> int | None: ...

    def audit_append(self, leaf: bytes) -> int:
        """Append an audit-log leaf in this transaction; return its index."""
        ...

    def inbox_put(
        self, summary: PacketSummary, token: str, received_at: datetime, receipt: str, log: int
    ) -> str | None:
        """Record the accepted packet (unsettled, :meth:`RelayStore.unsettled_inbox`);
        return the receipt that stands: ``receipt``, or
        (several workers share the store) the one another worker returned when it
        accepted the same packet first — this packet's audit leaves are then undone —
        or None when another worker accepted a different packet in its place."""
        ...


class RelayStore(Protocol):
    # sender
    def enqueue(
        self, peer: str, case_id: str, build: Callable[[int, str | None], NewOutgoing]
    ) -> NewOutgoing:
        """Allocate the next (seq, prev) of ``case_id`` towards ``peer``, call ``build``
        with them and queue the result — all in one transaction."""
        ...

    def enqueue_many(
        self, items: Sequence[tuple[str, str, Callable[[int, str | None], NewOutgoing]]]
    ) -> list[NewOutgoing | Exception]:
        """:meth:`enqueue` for ``(peer, case_id, build)`` items in one transaction; a
        build that raises leaves out its packet alone (its exception in its place)."""
        ...

    def open_rows(self) -> list[OutboxRow]:
        """Every open packet (tests and tools; the outbox reads only what is due)."""
        ...

    def open_peers(self) -> list[str]:
        """Destinations that have open packets."""
        ...

    def head_due(self, peer: str) -> tuple[bool, datetime | None]:
        """(``peer`` has open packets, when its earliest case head is due; None: now)."""
        ...

    def due_rows(
        self, peer: str, at: datetime, limit: int, busy: Collection[str] = ()
    ) -> list[OutboxRow]:
        """Up to ``limit`` open packets for ``peer`` due at ``at``, oldest case first:
        per case (not in ``busy``) its head and the due packets after it in sequence.

        Where several workers share the store, the cases returned are claimed for this
        worker (a lease :meth:`update_outbox` renews and releases) and cases another
        worker holds are left out."""
        ...

    def expired_rows(self, before: datetime, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` open packets that expire at or before ``before``."""
        ...

    def unconfirmed_rows(self, before: datetime, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` packets in flight (sent, never answered) that expire at or
        before ``before``."""
        ...

    def earliest_expiry(self, skip: Collection[str] = ()) -> datetime | None:
        """The earliest expiry of a queued packet to a destination not in ``skip``."""
        ...

    def open_after(self, peer: str, case_id: str, seq: int) -> list[str]:
        """Open packets of ``case_id`` towards ``peer`` after ``seq``, in order."""
        ...

    def has_open(self) -> bool: ...

    def parked(self) -> list[OutboxItem]:
        """Dead packets refused for good (not ``expired``) and not sent again since (no
        later packet of their case queued to that destination), newest first."""
        ...

    def standing_rejections(self) -> list[OutboxItem]:
        """Rejected packets not sent again since, newest first (as :meth:`parked`)."""
        ...

    def unnoticed_refusals(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` packets refused for good not yet noticed, oldest first."""
        ...

    def notice_refusals(self, packet_ids: Sequence[str]) -> None:
        """Mark these refusals noticed (their integration events are made)."""
        ...

    def outgoing(self, packet_id: str) -> Outgoing | None: ...
    def update_outbox(self, updates: Sequence[OutboxUpdate]) -> None: ...
    def peer_backoffs(self) -> dict[str, PeerBackoff]: ...
    def set_peer_backoff(self, peer: str, backoff: PeerBackoff) -> None: ...
    def list_outbox(
        self,
        state: OutboxState | None,
        peer: str | None,
        case_id: str | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]: ...
    def uploaded(self, peer: str, digest: str) -> bool: ...
    def mark_uploaded(self, peer: str, digest: str) -> None: ...
    def unmark_uploaded(self, peer: str, digests: Sequence[str]) -> None: ...

    # receiver
    def receiving(self) -> AbstractContextManager[ReceiveTx]: ...
    def incoming(self, packet_id: str) -> Incoming | None: ...
    def list_inbox(
        self, case_id: str | None, *, limit: int | None = None, newest_first: bool = False
    ) -> list[InboxItem]: ...
    def inbox_after(self, after: int, limit: int) -> list[tuple[int, InboxItem]]:
        """At most ``limit`` accepted packets numbered after ``after`` (0: from the
        first), in arrival order, each with its number: a reader that keeps the last
        number it handled reads each packet once (an index range, however big the inbox
        grew)."""
        ...

    def packet_naming_blob(self, digest: str) -> str | None: ...
    def unsettled_inbox(self, case_id: str | None) -> list[InboxItem]:
        """Accepted packets (of ``case_id``, None: all) the application has not settled
        yet, in arrival order: every packet not yet applied is among them, and the read
        costs what is in progress, not what was received before."""
        ...

    def settle_inbox(self, packet_ids: Sequence[str]) -> None:
        """The application recorded what these packets made (one transaction)."""
        ...

    # blobs and attachments
    def blob_size(self, digest: str) -> int | None: ...
    def blob_path(self, digest: str) -> Path: ...
    def temp_path(self) -> Path: ...
    def publish_blob(self, src: Path, digest: str, size: int) -> None: ...
    def upload(self, kind: str, digest: str) -> Upload | None: ...
    def begin_upload(self, kind: str, digest: str, size: int) -> Upload: ...
    def advance_upload(self, kind: str, digest: str, offset: int) -> None: ...
    def drop_upload(self, kind: str, digest: str) -> None: ...
    def put_attachment(self, staged: StagedAttachment) -> None: ...
    def attachment(self, digest: str) -> StagedAttachment | None:
        """A staged attachment by plaintext or blob digest."""
        ...

    def close(self) -> None: ...

    # figures for the metrics
    def outbox_depth(self) -> dict[str, tuple[int, datetime]]:
        """Partner → (packets queued or in flight, creation of the oldest of them)."""
        ...
