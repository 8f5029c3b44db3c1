"""The case storage interface (nothing above it writes SQL) and its records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from relay.cases.queue import QueueEntry, SettledQueue
from relay.cases.sla import ClockFacts
from relay.cases.workflow import Case

__all__ = ["AppliedPacket", "CaseRecord", "CaseStore"]


@dataclass(frozen=True)
class CaseRecord:
    """A stored case: our copy, the applicant's access-code hash (receiving office
    only), when it was opened here and a version counter for updates."""

    case: Case
    access_hash: str | None
    opened_at: datetime
    version: int


@dataclass(frozen=True)
class AppliedPacket:
    """What became of an incoming case packet: ``outcome`` is ``applied``,
    ``duplicate``, ``not-a-case-event`` (a plain packet) or a refusal code
    (``wrong-state``, ``malformed-event``, …)."""

    packet_id: str
    case_id: str
    outcome: str
    detail: str


class CaseStore(Protocol):
    def create(self, record: CaseRecord) -> None:
        """Store a new case; raises :class:`relay.cases.errors.CaseError`
        (``case-exists``) when the id is taken."""
        ...

    def get(self, case_id: str, *, keep: bool = True) -> CaseRecord | None:
        """The case's record, or None; ``keep=False`` for a listing's reads (a store that
        keeps recent copies does not keep this one)."""
        ...

    def update(
        self,
        case_id: str,
        change: Callable[[CaseRecord | None], CaseRecord | None],
        audit: Sequence[bytes] = (),
        *,
        unsent: tuple[str, datetime] | None = None,
        sent: int | None = None,
    ) -> CaseRecord | None:
        """Read, change and write one case in one transaction (``change`` returning
        None leaves it as it was), appending the ``audit`` leaves in it when it changed;
        ``unsent``: the step's packets, kept until :meth:`sent` (refused with
        ``step-in-flight`` while the case has packets of a step before unsent); ``sent``:
        a version whose packets are no longer to be sent."""
        ...

    def sent(self, case_id: str, version: int) -> None:
        """The packets of the step stored as ``version`` are queued."""
        ...

    def claim_unsent(
        self, before: datetime, now: datetime, limit: int = 100, *, case_id: str | None = None
    ) -> list[tuple[str, int, str]]:
        """The steps written or claimed before ``before`` whose packets may be
        unqueued (of ``case_id`` only, when given), claimed for the caller."""
        ...

    def list_cases(
        self, *, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[CaseRecord]:
        """Every case, oldest first (opened_at, then case id), or the page of at most
        ``limit`` after the position ``after`` (the last listed case's opened_at
        timestamp and id)."""
        ...

    def licence(self, number: str) -> tuple[str, str] | None:
        """(token, case id) of the e-licence numbered ``number``, or None."""
        ...

    def next_status_index(self, issuer: str) -> int:
        """One past the highest status-list index of the e-licences ``issuer`` issued in
        a case here (0 for the first), without reading every licence."""
        ...

    def queue_entries(self, *, settled: bool = True) -> list[QueueEntry]:
        """Every case as the work queue sees it, in :meth:`list_cases` order, without
        reading its events; without the settled ones unless ``settled``."""
        ...

    def rank_settled(self, rank_of: Callable[[ClockFacts], int], calendar: str) -> int:
        """Store the queue rank of the settled cases written since the last time (of
        every settled case when ``calendar``, the working calendar's fingerprint, is not
        the one the ranks were stored with)."""
        ...

    def settled_queue(
        self,
        *,
        matter: str = "",
        partner: str = "",
        mine: str = "",
        overdue: bool = False,
        state: str = "",
        room: Callable[[int, str], int | None] | None = None,
    ) -> SettledQueue:
        """The settled cases' counts per state under these filters and the first of
        ``state`` by queue rank (as many as ``room`` says), without reading the others."""
        ...

    def clocks(self, *, settled: bool = True) -> list[tuple[str, ClockFacts]]:
        """Every case's id and clock facts, in :meth:`list_cases` order, without reading
        its events; without the settled cases unless ``settled``."""
        ...

    def unapplied(self, packet_ids: list[str]) -> list[str]:
        """Those of ``packet_ids`` not yet recorded by :meth:`record_packet`."""
        ...

    def apply_packet(
        self,
        packet_id: str,
        case_id: str,
        change: Callable[[CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]],
    ) -> AppliedPacket:
        """Apply an incoming packet to its case and record the outcome ``change``
        returns, in one transaction (a None record leaves the case as it was)."""
        ...

    def apply_packets(
        self,
        items: Sequence[
            tuple[str, str, Callable[[CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]]]
        ],
    ) -> list[AppliedPacket]:
        """:meth:`apply_packet` for ``(packet_id, case_id, change)`` items in order, in
        one transaction."""
        ...

    def packets(self, case_id: str) -> list[AppliedPacket]: ...

    def close(self) -> None: ...
