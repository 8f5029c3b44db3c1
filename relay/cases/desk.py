"""``CaseDesk``: the case workflow composed with the relay node, the store and tracking.

The desk is the shell around the pure core: it reads and writes cases through a
:class:`~relay.cases.store.CaseStore`, turns our own steps into case packets through
the relay core (``create_packet``, which checks the agreement and queues the signed,
sealed packet), and applies the partner's case packets (``list_inbox`` /
``read_packet``) with the same :func:`~relay.cases.workflow.transition`. Nothing here
knows about HTTP.

A partner's case packet is judged before the relay accepts it
(:mod:`relay.cases.admission`: a step outside the state machine gets a ``rejected``
receipt and is never stored) and applied after every accepted federation batch (see
:class:`SyncingCore`): the relay hands over the packets the batch accepted with the
content its pipeline opened (:class:`~relay.core.ports.ReceivedBatch`), the desk queues
them in commit order (:meth:`CaseDesk.received`) and applies the queue in one
transaction (:meth:`CaseDesk.apply_received`) — no second verify and decrypt, no read of
the inbox, so the cost per packet does not grow with what is stored. :meth:`CaseDesk.sync`
reads the inbox for every packet not applied yet (once at start, for what arrived while
the case layer was not running or was applied by no one). Each packet is applied at
most once: its outcome (``applied``, ``duplicate`` or — for a packet that no longer
opens, or one accepted before admission existed — a refusal code) is recorded in the
same transaction as the case change. Once that committed, the desk settles the packets
with the relay (``settle_inbox``): what stays unsettled is what admission must still
count as pending (:mod:`relay.cases.admission`).

A step of ours is stored first and then queued; if the relay refuses to queue it (the
agreement does not grant it, unknown partner) the stored step is taken back. The step is
stored with the packets it sends, their ids chosen then (``case_unsent``, removed once
the relay has queued them): a node stopped between the two queues them at its next start
(:meth:`CaseDesk.send_unsent`; on a node of several workers, each looks every minute
for steps unsent for :data:`UNSENT_AFTER`), and a packet the relay had queued under
that id before the stop is not queued again. The steps of a case are taken one at a time
(per process; across workers, the store refuses a step while the case has packets
unsent), each after the packets of the one before are queued: the relay numbers a
case's packets in the order they are queued, and the partner applies them in that order.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from agreements.calendar import WorkingCalendar
from relay.audit.leaves import LicenceEvent
from relay.audit.licence_events import licence_leaf
from relay.cases.admission import CaseAdmission, advance, read_content
from relay.cases.application import check_application
from relay.cases.errors import CaseError, IllegalTransition, TrackingDenied
from relay.cases.incoming import CASE_ACTIONS, check_licence
from relay.cases.model import CONTENT_FORMAT, CaseHeader, EventKind, Office, thaw
from relay.cases.queue import QueueEntry, SettledQueue, queue_rank
from relay.cases.short_links import ShortLinks
from relay.cases.sla import ClockState, Colour, SlaReport, case_clock, complaint_clock
from relay.cases.store import AppliedPacket, CaseRecord, CaseStore
from relay.cases.terms import CaseTerms, TermsSource
from relay.cases.tracking import (
    LookupThrottle,
    check_access_code,
    code_key,
    hash_access_code,
    new_access_code,
    sign_tracking_link,
    verify_tracking_link,
)
from relay.cases.tracking_view import OfficeNames, public_view
from relay.cases.workflow import Case, Command, transition
from relay.core import ids
from relay.core.errors import RelayError
from relay.core.model import InboxItem, PacketContent, PacketSummary
from relay.core.ports import OpenedPacket, ReceivedBatch
from signing.certificates import TrustBundle
from signing.encoding import canonical_json
from signing.keys import Signer

__all__ = ["CASE_ACTIONS", "CaseDesk", "Opened", "Overdue", "PacketPort", "SyncingCore"]


class _NotACaseEvent(CaseError):
    """A packet whose content is not a case event (admission lets it pass, §8.5 step 9)."""

    code = "not-a-case-event"


_log = logging.getLogger("tongban.relay.cases")


@functools.cache
def _dummy_hash() -> str:
    """A hash to check codes for unknown cases against (the same work as a real one)."""
    return hash_access_code("unknown-case", b"\x00" * 16)


def _given(content: Mapping[str, Any]) -> Callable[[], Mapping[str, Any]]:
    """Content already opened by the relay, as the reader :meth:`CaseDesk._change_for`
    takes."""
    return lambda: content


class PacketPort(Protocol):
    """What the desk needs of ``relay.core.service.RelayNode``."""

    async def create_packet(
        self,
        *,
        to: str,
        case_id: str,
        matter: str,
        action: str,
        mode: str,
        content: Mapping[str, Any],
        attachments: Sequence[str] = (),
        expires_in: timedelta | None = None,
        audit: Sequence[bytes] = (),
        packet_id: str | None = None,
    ) -> PacketSummary: ...

    def list_inbox(self, *, case_id: str | None = None) -> list[InboxItem]: ...

    def unsettled_inbox(self, *, case_id: str | None = None) -> list[InboxItem]: ...

    def settle_inbox(self, packet_ids: Sequence[str]) -> None: ...

    def read_packet(self, packet_id: str) -> PacketContent: ...


UNSENT_AFTER = timedelta(minutes=2)
"""A step whose packets are still not queued this long after it was stored (or claimed)
is taken for one a stop interrupted, on a node of several workers: its packets are
queued by :meth:`CaseDesk.send_unsent` (each worker looks every minute)."""


@dataclass(frozen=True)
class Unsent:
    """The packets of a step, kept with it until the relay has queued them
    (``case_unsent``): ``(packet id, to, action, content)`` each, the attachments they
    carry and the leaves their queueing logs."""

    packets: tuple[tuple[str, str, str, Any], ...]
    attachments: tuple[str, ...]
    audit: tuple[bytes, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "packets": [list(p) for p in self.packets],
                "attachments": list(self.attachments),
                "audit": [base64.b64encode(leaf).decode("ascii") for leaf in self.audit],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Unsent:
        data = json.loads(text)
        return cls(
            tuple((str(i), str(to), str(a), c) for i, to, a, c in data["packets"]),
            tuple(str(d) for d in data["attachments"]),
            tuple(base64.b64decode(leaf) for leaf in data["audit"]),
        )


@dataclass(frozen=True)
class Opened:
    """A case opened at hand-in; ``access_code`` is shown to the applicant once."""

    record: CaseRecord
    access_code: str
    tracking_link: str
    short_code: str | None = None  # for the SMS link /t/<short_code> (relay.cases.short_links)


@dataclass(frozen=True)
class Overdue:
    record: CaseRecord
    clock: SlaReport
    complaints: tuple[tuple[int, SlaReport], ...]  # (complaint seq, its clock)


def _flagged(*clocks: SlaReport | None) -> bool:
    """Whether a clock is yellow, red or grey (None: no such clock)."""
    return any(c is not None and c.colour is not Colour.GREEN for c in clocks)


class CaseDesk:
    def __init__(
        self,
        *,
        node_id: str,
        relay: PacketPort,
        store: CaseStore,
        terms: TermsSource,
        calendar: WorkingCalendar | Callable[[], WorkingCalendar],
        signer: Signer,
        bundle: Callable[[], TrustBundle],
        clock: Callable[[], datetime],
        office_names: OfficeNames,
        randbytes: Callable[[int], bytes] = os.urandom,
        monotonic: Callable[[], float] = time.monotonic,
        throttle: LookupThrottle | None = None,
        link_ttl: timedelta = timedelta(days=180),
        short_links: ShortLinks | None = None,
    ) -> None:
        self.node_id = node_id
        self._relay = relay
        self._store = store
        self._terms = terms
        # a callable is asked each time, so a calendar loaded while the node runs is used
        self._calendar = calendar
        self._signer = signer
        self._bundle = bundle
        self._clock = clock
        self.office_names = office_names
        self._randbytes = randbytes
        self._monotonic = monotonic
        self.throttle = throttle or LookupThrottle()
        self._link_ttl = link_ttl
        self.short_links = short_links
        self._sync_lock = asyncio.Lock()
        # one step at a time per case in this process, its packets queued before the next
        self._case_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # the steps left unsent that no sender may still hold: written (or claimed)
        # UNSENT_AFTER ago on a node of several workers; CaseServices says every one on a
        # node of one worker, whose senders all hold their case (see _holding)
        self.unsent_before: Callable[[], datetime] = lambda: self._clock() - UNSENT_AFTER
        self._changed = asyncio.Condition()
        self._generation = 0  # how many times cases changed (see wait_changed)
        # who waits for which case to change (see changed): woken only by their case
        self._watchers: dict[str, set[asyncio.Event]] = {}
        # accepted packets not applied and settled yet, in commit order (see received())
        self._pending: deque[tuple[OpenedPacket, datetime]] = deque()

    def now(self) -> datetime:
        return self._clock()

    # -- staff -----------------------------------------------------------------------

    async def open_case(
        self,
        *,
        matter: str,
        mode: str,
        handling: str,
        case_id: str | None = None,
        materials: Sequence[str] = (),
        submit: bool = True,
        application: Mapping[str, Any] | None = None,
        attachments: Sequence[str] = (),
        replay: bool = False,
    ) -> Opened:
        """Open a case at hand-in (we are the receiving office); submit it unless told
        not to, with the ``application`` (the structured content: the applicant's data
        entered once, relay.cases.application, checked against the agreement's data
        rules) and the staged ``attachments`` (plaintext digests). Raises
        :class:`~relay.cases.terms.NoTerms`, ``case-exists``, ``data-category-not-agreed``,
        ``content-schema``.

        ``replay`` (an office's own system importing a case under its own ``case_id``,
        which may retry a request whose answer it lost): a case of that id opened with
        the same facts is not opened again. Submitted with the same content, it is
        answered as opened, with a new access code (the one before, never shown, opens
        it no more); not submitted yet (the submit failed), it is submitted now. Any
        other case of that id is ``case-exists``."""
        now = self._clock()
        terms = self._terms(self.node_id, handling, matter, mode, now)
        if application is not None and not submit:
            raise CaseError("an application is handed in with the submit", code="malformed-event")
        check_application(
            application, matter=matter, materials=terms.materials,
            categories=terms.data_categories, attachments=len(attachments),
        )  # fmt: skip
        if case_id is None:
            suffix = base64.b32encode(self._randbytes(5)).decode("ascii")
            case_id = f"{self.node_id}-{now:%Y%m%d}-{suffix}"
        header = CaseHeader(
            case_id, matter, mode, self.node_id, handling,
            terms.time_limit_working_days, terms.survey_required,
        )  # fmt: skip
        details: dict[str, Any] = {"materials": list(materials)} if materials else {}
        if application is not None:
            details["application"] = application
        code = new_access_code(self._randbytes)
        access_hash = await asyncio.to_thread(hash_access_code, code, self._randbytes(16))
        record = CaseRecord(Case(header, Office.RECEIVING), access_hash, now, 1)
        try:
            self._store.create(record)
        except CaseError as exc:
            if not replay or exc.code != "case-exists":
                raise
            record = self._replayed(header, details if submit else None, access_hash)
        if submit and not record.case.events:
            record = await self.act(case_id, EventKind.SUBMIT, details, attachments)
        short = None if self.short_links is None else self.short_links.code_for(case_id)
        return Opened(record, code, self.tracking_link(case_id, record.access_hash), short)

    def _replayed(
        self, header: CaseHeader, details: Mapping[str, Any] | None, access_hash: str
    ) -> CaseRecord:
        """The case ``header`` names, opened before by the same request, now under
        ``access_hash`` (see :meth:`open_case`'s ``replay``); else ``case-exists``."""
        case_id = header.case_id

        def same(old: CaseRecord) -> bool:
            h = old.case.header
            if (h.matter, h.mode, h.receiving, h.handling) != (
                header.matter, header.mode, header.receiving, header.handling,
            ):  # fmt: skip
                return False
            if not old.case.events:  # opened, its submit failed: submitted by the caller
                return details is not None
            first = old.case.events[0]
            return (
                details is not None
                and first.kind is EventKind.SUBMIT
                and canonical_json(thaw(first.details)) == canonical_json(dict(details))
            )

        def change(old: CaseRecord | None) -> CaseRecord | None:
            if old is None or not same(old):
                raise CaseError(f"case {case_id} exists", code="case-exists")
            return CaseRecord(old.case, access_hash, old.opened_at, old.version)

        after = self._store.update(case_id, change)
        assert after is not None
        return after

    @property
    def terms_source(self) -> TermsSource:
        return self._terms

    def terms(self, handling: str, matter: str, mode: str) -> CaseTerms:
        """The agreed terms now of a case we would receive for ``handling``."""
        return self._terms(self.node_id, handling, matter, mode, self._clock())

    async def reissue_access_code(self, case_id: str) -> Opened:
        """A new access code for an applicant who lost theirs (the old one stops
        working), with a new tracking link; only the receiving office, which gave the
        first, holds one."""
        record = self.get(case_id)
        if record.case.me is not Office.RECEIVING or record.access_hash is None:
            raise IllegalTransition(
                "only the receiving office gives the applicant an access code",
                code="wrong-office",
            )
        code = new_access_code(self._randbytes)
        access_hash = await asyncio.to_thread(hash_access_code, code, self._randbytes(16))

        def change(old: CaseRecord | None) -> CaseRecord | None:
            return None if old is None else dataclasses.replace(old, access_hash=access_hash)

        updated = self._store.update(case_id, change)
        assert updated is not None
        short = None if self.short_links is None else self.short_links.code_for(case_id)
        return Opened(updated, code, self.tracking_link(case_id, access_hash), short)

    def get(self, case_id: str) -> CaseRecord:
        record = self._store.get(case_id)
        if record is None:
            raise CaseError(f"no case {case_id}", code="unknown-case")
        return record

    def list_cases(
        self, *, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[CaseRecord]:
        """Every case, or a page of them (see :meth:`CaseStore.list_cases`)."""
        return self._store.list_cases(after=after, limit=limit)

    def queue_entries(self, *, settled: bool = True) -> list[QueueEntry]:
        """Every case as the work queue sees it, oldest first (no event read); without
        the settled ones unless ``settled`` (see :meth:`settled_queue`)."""
        return self._store.queue_entries(settled=settled)

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
        """What a work queue shows of the settled cases (:attr:`QueueEntry.settled`):
        their counts per state under these filters and the first rows of ``state``
        (see :meth:`~relay.cases.sqlite_store.SqliteCaseStore.settled_queue`), ordered
        by their clocks on the working calendar: the ranks of cases settled since the
        last queue are stored first, and all of them again when the calendar changed."""
        calendar, now = self.calendar, self.now()
        self._store.rank_settled(
            lambda facts: queue_rank(facts.case_clock(calendar, now)), calendar.fingerprint
        )
        return self._store.settled_queue(
            matter=matter, partner=partner, mine=mine, overdue=overdue, state=state, room=room
        )

    def licence(self, number: str) -> tuple[str, str] | None:
        """(token, case id) of the e-licence numbered ``number`` issued in a case here."""
        return self._store.licence(number)

    def next_status_index(self) -> int:
        """The status-list index for the next e-licence this node issues."""
        return self._store.next_status_index(self.node_id)

    def packets(self, case_id: str) -> list[AppliedPacket]:
        return self._store.packets(case_id)

    async def act(
        self,
        case_id: str,
        kind: EventKind,
        details: Mapping[str, Any],
        attachments: Sequence[str] = (),
        logged_when_sent: Sequence[bytes] = (),
    ) -> CaseRecord:
        """Our office takes a step: checked, stored, and sent to the other office
        (with ``attachments``: plaintext digests staged with the relay core).
        ``logged_when_sent``: audit leaves logged in the transaction that queues the
        step's packet (a step that sends one), so that a packet the relay refuses
        (``RelayError``: the step is undone) logs none.

        A step of a case waits for the step of the case this process is taking, and
        queues first the packets of a step before it that a stop or a failure left
        unsent: the partner gets them in the order they were taken. One another worker
        may still be sending (younger than :attr:`unsent_before`) refuses the step
        (``step-in-flight``; try again in a moment)."""
        async with self._holding(case_id):
            try:
                return await self._act(case_id, kind, details, attachments, logged_when_sent)
            except CaseError as exc:  # the store found packets unsent: those go first
                if exc.code != "step-in-flight" or not await self._send_earlier(case_id):
                    raise
            return await self._act(case_id, kind, details, attachments, logged_when_sent)

    def _holding(self, case_id: str) -> asyncio.Lock:
        lock = self._case_locks.get(case_id)
        if lock is None:
            lock = self._case_locks[case_id] = asyncio.Lock()
        return lock

    async def _send_earlier(self, case_id: str) -> bool:
        """Queue the packets of the case's steps left unsent that no sender may still
        hold (see :meth:`act`); whether there were any. Read only when a step found
        some: the steps of a case that has none cost no look."""
        claimed = self._store.claim_unsent(self.unsent_before(), self._clock(), case_id=case_id)
        for _, version, text in claimed:
            record = self.get(case_id)
            try:
                await self._send(case_id, record.case.header, Unsent.from_json(text))
            except RelayError as exc:
                raise CaseError(
                    f"an earlier step of this case cannot be sent ({exc}); it is tried again"
                    " when the node starts, or ask the administrator to check the agreement",
                    code="earlier-step-unsent",
                ) from exc
            self._store.sent(case_id, version)
        return bool(claimed)

    async def _act(
        self,
        case_id: str,
        kind: EventKind,
        details: Mapping[str, Any],
        attachments: Sequence[str],
        logged_when_sent: Sequence[bytes],
    ) -> CaseRecord:
        now = self._clock()
        before = self.get(case_id)
        audit: list[bytes] = []
        if kind is EventKind.ISSUE_LICENCE:
            check_licence(details, before.case.header, self._bundle(), now)
            token = details["licence"]
            leaf = licence_leaf(
                token, LicenceEvent.ISSUED, node_id=self.node_id, case_id=case_id, at=now
            )
            audit.append(leaf)
        case, packets = transition(before.case, Command(kind, details), now)
        if logged_when_sent and len(packets) != 1:
            raise ValueError(f"the step {kind.value} sends {len(packets)} packets, not one")

        def change(old: CaseRecord | None) -> CaseRecord | None:
            if old is None or old.version != before.version:
                raise CaseError("the case changed meanwhile; try again", code="conflict")
            return CaseRecord(case, old.access_hash, old.opened_at, old.version)

        # the packets, their ids chosen now, are kept with the step until they are queued:
        # a stop in between has the next start queue them (send_unsent), none twice
        sends = Unsent(
            tuple((ids.packet_id(), p.to, p.action.value, thaw(p.content)) for p in packets),
            tuple(attachments),
            tuple(logged_when_sent),
        )
        after = self._store.update(
            case_id, change, audit, unsent=(sends.to_json(), now) if packets else None
        )
        assert after is not None
        try:
            await self._send(case_id, case.header, sends)
        except RelayError:
            self._store.update(
                case_id,
                lambda old: (
                    CaseRecord(before.case, old.access_hash, old.opened_at, 0)
                    if old is not None and old.version == after.version
                    else None
                ),
                sent=after.version if packets else None,
            )
            raise
        if packets:
            self._store.sent(case_id, after.version)
        await self._notify([case_id])
        return after

    async def _send(self, case_id: str, header: CaseHeader, sends: Unsent) -> None:
        for packet_id, to, action, content in sends.packets:
            await self._relay.create_packet(
                to=to, case_id=case_id, matter=header.matter, action=action,
                mode=header.mode, content=content, attachments=sends.attachments,
                audit=sends.audit, packet_id=packet_id,
            )  # fmt: skip

    async def send_unsent(self, stored_before: datetime) -> list[str]:
        """Queue the packets of the steps stored before ``stored_before`` whose packets
        a stop left unqueued; the cases whose packets were queued. ``stored_before``:
        when this process started, on a node of one worker (SQLite), whose steps in
        progress are all younger; on several workers (PostgreSQL), a while ago
        (:data:`UNSENT_AFTER`), as another worker may be queueing a step's packets
        now. Each step is claimed first, so two workers never send one together, and
        each packet keeps the id chosen with its step: one the relay queued before the
        stop is not queued again. A packet the relay refuses now is logged at ERROR and
        tried again after :data:`UNSENT_AFTER`, or at the next start."""
        done: list[str] = []
        tried: set[tuple[str, int]] = set()
        while claimed := [
            c for c in self._store.claim_unsent(stored_before, self._clock())
            if (c[0], c[1]) not in tried
        ]:  # fmt: skip
            for case_id, version, text in claimed:
                tried.add((case_id, version))
                async with self._holding(case_id):  # a step of it in progress goes first
                    record = self._store.get(case_id)
                    if record is None:
                        self._store.sent(case_id, version)
                        continue
                    try:
                        await self._send(case_id, record.case.header, Unsent.from_json(text))
                    except RelayError as exc:
                        _log.error(
                            "case %s: the packets of its step %d cannot be queued (%s); tried"
                            " again later", case_id, version, exc,
                        )  # fmt: skip
                        continue
                    self._store.sent(case_id, version)
                done.append(case_id)
        if done:
            _log.warning("queued the packets of %d steps a stop had left unsent", len(done))
            await self._notify(done)
        return done

    @property
    def calendar(self) -> WorkingCalendar:
        """The working-day calendar now."""
        if isinstance(self._calendar, WorkingCalendar):
            return self._calendar
        return self._calendar()

    def unknown_clocks(self, now: datetime) -> list[str]:
        """Cases in progress whose statutory clock cannot be computed (state unknown)."""
        calendar = self.calendar
        return [
            case_id
            for case_id, facts in self._store.clocks(settled=False)
            if facts.case_clock(calendar, now).state is ClockState.UNKNOWN
        ]

    def statutory_clocks(self, now: datetime) -> list[SlaReport]:
        """The statutory clock of every case not settled, oldest case first (from the
        clock facts the store keeps: no event is read; a settled case's clock no longer
        runs, :attr:`~relay.cases.queue.QueueEntry.settled`)."""
        calendar = self.calendar
        return [facts.case_clock(calendar, now) for _, facts in self._store.clocks(settled=False)]

    def overdue(self, now: datetime | None = None) -> list[Overdue]:
        """Cases whose clock or an open complaint's clock is yellow, red or grey (unknown).

        Judged on the clock facts the store keeps for every case not settled (a settled
        case waits for nobody: its stopped clock may have ended red, but nothing is late
        any more; :attr:`~relay.cases.queue.QueueEntry.settled`); only the cases found
        flagged are read (and judged again on their copy, which a step may have moved on
        since), so a node with years of cases reads none of those that ended."""
        now = now or self._clock()
        calendar = self.calendar
        out = []
        for case_id, facts in self._store.clocks(settled=False):
            if not _flagged(facts.case_clock(calendar, now), facts.complaint_clock(calendar, now)):
                continue
            record = self._store.get(case_id, keep=False)  # not pushing out the working set
            if record is None:
                continue
            report = self.clock_of(record.case, now, calendar)
            complaints = tuple(
                (c.seq, complaint_clock(c, calendar=calendar, now=now))
                for c in record.case.view.open_complaints
            )
            if _flagged(report, *(r for _, r in complaints)):
                out.append(Overdue(record, report, complaints))
        return out

    def clock_of(
        self, case: Case, now: datetime, calendar: WorkingCalendar | None = None
    ) -> SlaReport:
        return case_clock(
            case.view,
            limit=case.header.time_limit_working_days,
            calendar=calendar or self.calendar,
            now=now,
        )

    # -- incoming packets ------------------------------------------------------------

    async def sync(self) -> list[AppliedPacket]:
        """Apply every accepted case packet not yet applied, in arrival order, opening
        each again: at start. It reads the packets the relay holds unsettled, which
        include every one not applied yet (``RelayNode.unsettled_inbox``), so a start
        costs what was left in progress, not the inbox kept over the years. After a
        federation batch the node uses :meth:`received` and :meth:`apply_received`."""
        async with self._sync_lock:
            listed = self._relay.unsettled_inbox()
            items = [i for i in listed if i.summary.action in CASE_ACTIONS]
            todo = set(self._store.unapplied([i.summary.packet_id for i in items]))
            done = self._store.apply_packets(
                [
                    self._change_for(
                        i.summary,
                        functools.partial(read_content, self._relay, i.summary.packet_id),
                        i.received_at,
                    )
                    for i in items
                    if i.summary.packet_id in todo
                ]
            )
            # every packet listed is recorded now (or carries no case event)
            self._relay.settle_inbox([i.summary.packet_id for i in listed])
        if done:
            await self._notify(a.case_id for a in done)
        return done

    def received(self, batch: ReceivedBatch) -> None:
        """Queue the packets a federation batch accepted, with the content the relay
        opened. Called as soon as the batch committed (nothing awaited between), so the
        queue is in commit order."""
        for packet in batch.accepted:
            self._pending.append((packet, batch.received_at))

    async def apply_received(self) -> list[AppliedPacket]:
        """Apply the queued case packets (:meth:`received`) in order, in one
        transaction, then settle every queued packet with the relay; a packet applied
        meanwhile (by :meth:`sync`) is skipped. Reads only those packets: nothing that
        grows with the inbox. On a failure they stay queued and unsettled (and
        :meth:`sync` at the next start applies them in any case)."""
        async with self._sync_lock:
            queued = list(self._pending)
            cases = [(p, at) for p, at in queued if p.summary.action in CASE_ACTIONS]
            todo = set(self._store.unapplied([p.summary.packet_id for p, _ in cases]))
            done = self._store.apply_packets(
                [
                    self._change_for(p.summary, _given(p.body), at)
                    for p, at in cases
                    if p.summary.packet_id in todo
                ]
            )
            for _ in queued:
                self._pending.popleft()
            self._relay.settle_inbox([p.summary.packet_id for p, _ in queued])
        if done:
            await self._notify(a.case_id for a in done)
        return done

    def admission(self) -> CaseAdmission:
        """The content check that refuses, before the relay accepts it, a partner's
        packet :meth:`sync` would refuse (``relay.core`` ``install_content_check``)."""
        return CaseAdmission(
            node_id=self.node_id, relay=self._relay, store=self._store, terms=self._terms,
            bundle=self._bundle,
        )  # fmt: skip

    def _change_for(
        self,
        summary: PacketSummary,
        content: Callable[[], Mapping[str, Any]],
        received_at: datetime,
    ) -> tuple[str, str, Callable[[CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]]]:
        """The store's ``apply_packets`` item for one incoming packet."""
        pid, cid = summary.packet_id, summary.case_id

        def change(old: CaseRecord | None) -> tuple[CaseRecord | None, AppliedPacket]:
            try:
                new = self._received(old, summary, content(), received_at)
            except _NotACaseEvent:
                # a plain packet between the offices (no case event): nothing to apply,
                # nothing for an operator to look at
                _log.debug("packet %s carries no case event", pid)
                return None, AppliedPacket(pid, cid, "not-a-case-event", "")
            except CaseError as exc:
                _log.warning("case packet %s refused: %s", pid, exc)
                return None, AppliedPacket(pid, cid, exc.code, str(exc))
            kind = "duplicate" if old is not None and new.case == old.case else "applied"
            return new, AppliedPacket(pid, cid, kind, "")

        return pid, cid, change

    def _received(
        self,
        old: CaseRecord | None,
        summary: PacketSummary,
        content: Mapping[str, Any],
        received_at: datetime,
    ) -> CaseRecord:
        if content.get("format") != CONTENT_FORMAT:
            raise _NotACaseEvent("no case event in this packet")
        return advance(
            old, summary, content, me=self.node_id, terms=self._terms,
            bundle=self._bundle(), received_at=received_at,
        )  # fmt: skip

    # -- applicants ------------------------------------------------------------------

    def tracking_link(self, case_id: str, access_hash: str | None = None) -> str:
        """A tracking link of the case's current access code (``access_hash``: its
        stored hash, read from the case when not given)."""
        if access_hash is None:
            record = self._store.get(case_id)
            access_hash = None if record is None else record.access_hash
        return sign_tracking_link(
            case_id, self._signer, node_id=self.node_id, at=self._clock(), ttl=self._link_ttl,
            key=None if access_hash is None else code_key(access_hash),
        )  # fmt: skip

    async def lookup(self, case_id: str, code: str, client: str) -> CaseRecord:
        """The case if ``code`` is its access code; raises :class:`TrackingDenied`
        (``throttled`` with ``retry_after``, or ``bad-code`` — the same for an unknown
        case and a wrong code)."""
        wait = self.throttle.admit(client, case_id, self._monotonic())
        if wait > 0:
            raise TrackingDenied(
                "too many lookups; try again later", code="throttled", retry_after=wait
            )
        record = self._store.get(case_id)
        stored = record.access_hash if record is not None and record.access_hash else _dummy_hash()
        ok = await asyncio.to_thread(check_access_code, code, stored)
        if record is None or not ok:
            self.throttle.failed(case_id, self._monotonic())
            raise TrackingDenied("no case with this number and access code", code="bad-code")
        return record

    async def lookup_short(self, short: str, code: str, client: str) -> CaseRecord:
        """:meth:`lookup` by a short link's code: the same throttle (the named case's
        bucket) and the same ``bad-code`` answer for an unknown short code."""
        case_id = None if self.short_links is None else self.short_links.case_for(short)
        return await self.lookup(case_id or f"short:{short[:16]}", code, client)

    def lookup_link(self, token: str) -> CaseRecord:
        case_id, key = verify_tracking_link(
            token, self._bundle(), node_id=self.node_id, at=self._clock()
        )
        record = self._store.get(case_id)
        if record is None or record.access_hash is None:
            raise TrackingDenied("no such case", code="bad-link")
        if key is not None and key != code_key(record.access_hash):
            raise TrackingDenied("the link is of an access code replaced since", code="bad-link")
        return record

    def view(self, record: CaseRecord, lang: str) -> dict[str, Any]:
        out = public_view(
            record.case,
            lang=lang,
            now=self._clock(),
            calendar=self.calendar,
            office_names=self.office_names,
        )
        out["version"] = record.version
        return out

    async def changed(self, case_id: str, version: int, timeout: float) -> CaseRecord | None:
        """Wait until the case's version differs from ``version`` (None on timeout).

        The wait is woken only by a change of this case: with many applicants watching
        their cases, a change reads the changed case's watchers' copies, not every one."""
        record = self._store.get(case_id)
        if record is not None and record.version != version:
            return record
        woken = asyncio.Event()
        watchers = self._watchers.setdefault(case_id, set())
        watchers.add(woken)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await woken.wait()
                    woken.clear()
                    record = self._store.get(case_id)
                    if record is not None and record.version != version:
                        return record
        except TimeoutError:
            return None
        finally:
            watchers.discard(woken)
            if not watchers:
                self._watchers.pop(case_id, None)

    @property
    def generation(self) -> int:
        """A number that grows each time any case changes (for :meth:`wait_changed`)."""
        return self._generation

    async def wait_changed(self, timeout: float, since: int | None = None) -> bool:
        """Wait until any case changes (our step or a partner's packet applied) after
        :attr:`generation` was ``since`` (now, when None): at once if it has already;
        False on timeout. For live views: they read what they show again afterwards."""
        async with self._changed:
            start = self._generation if since is None else since
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._generation != start), timeout
                )
            except TimeoutError:
                return False
        return True

    async def _notify(self, case_ids: Iterable[str]) -> None:
        """Tell the live views that ``case_ids`` changed."""
        for case_id in set(case_ids):
            for woken in self._watchers.get(case_id, ()):
                woken.set()
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()


class SyncingCore:
    """A relay core with the case layer mounted: it refuses the partner's case packets
    the desk would refuse (the desk's :meth:`~CaseDesk.admission` installed as the
    core's content check) and its ``receive_batch`` applies the case packets the batch
    accepted, with the content the core opened, before answering.

    Every other attribute is the wrapped core's."""

    def __init__(self, core: Any, desk: CaseDesk) -> None:
        core.install_content_check(desk.admission())
        self._core = core
        self._desk = desk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        return list((await self.receive_batch_opened(peer_id, packets)).receipts)

    async def receive_batch_opened(self, peer_id: str, packets: Sequence[str]) -> ReceivedBatch:
        """The core's ``receive_batch_opened``, with the accepted case packets applied."""
        batch: ReceivedBatch = await self._core.receive_batch_opened(peer_id, packets)
        self._desk.received(batch)  # before any await: the queue keeps commit order
        await self._desk.apply_received()
        return batch
