"""Admission of a partner's case packet: the case layer's content check for the relay.

A partner's step that the state machine does not allow (docs/protocol.md §11.4) must
not be accepted at all, so the case layer judges every incoming case packet *inside*
the relay's receive pipeline (:class:`relay.core.ports.ContentCheck`, §8.5 step 9),
before the relay stores it or answers: a refused packet gets a signed ``rejected``
receipt ``content-refused:<code>`` (``wrong-state``, ``out-of-order``, ``bad-licence``…)
and is never stored, so the sending office's staff see it as rejected in their outbox.
Only packets that carry a case event (content ``format`` ``tongban-case-event/1``) are
judged: the relay also carries plain packets between offices, and those cannot move a
case (the apply records them as ``malformed-event`` and changes nothing).

The check and the later apply (:meth:`relay.cases.desk.CaseDesk.sync`) agree because
both run :func:`relay.cases.incoming.apply_incoming` on the same copy with the same
arguments (the receiving time as ``now``). The copy the check judges against is the
one the apply will see: the stored copy, then the case packets accepted in earlier
batches but not applied yet (the apply runs after the batch is answered, and a batch
may come in before it did), then those accepted before it in its own batch (which the
relay hands over as ``earlier``, not yet committed). The relay decides one batch at a
time, so nothing is accepted meanwhile. A packet in that list that the apply would
refuse changes nothing, as it will not.

The packets of earlier batches come from the relay's unsettled packets of the case
(``unsettled_inbox``: accepted and not yet settled by the desk, which settles them
after their outcome is recorded), less those the case store has recorded: an index
range of what is in progress, so judging a packet costs the same in a case that has
received thousands before it as in a new one.

Within a batch the copy is not built again for each packet: the check remembers, per
case, the last packet it judged, the copy before it and the copy after it. The next
packet of that case in the same batch starts from there (from the copy after it when
it was accepted, before it when not), so a batch of ``k`` packets of one case costs
``k`` steps of the case, not ``k²/2``. The first packet of a case in a batch (no case
event of it before in the batch) always starts from the store: a batch cannot be told
from the next by that alone, while later ones can (a packet is accepted in one batch
only).

The check does not apply anything: it only reads.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from relay.cases.errors import CaseError, MalformedEvent
from relay.cases.incoming import CASE_ACTIONS, apply_incoming
from relay.cases.model import CONTENT_FORMAT
from relay.cases.store import CaseRecord, CaseStore
from relay.cases.terms import TermsSource
from relay.core.errors import RelayError
from relay.core.model import InboxItem, PacketContent, PacketSummary
from relay.core.ports import OpenedPacket
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["CaseAdmission", "InboxReader", "advance"]

_log = logging.getLogger("tongban.relay.cases")


class InboxReader(Protocol):
    """What admission reads of the relay core (``relay.core.service.RelayNode``)."""

    def unsettled_inbox(self, *, case_id: str | None = None) -> list[InboxItem]: ...

    def read_packet(self, packet_id: str) -> PacketContent: ...


def advance(
    old: CaseRecord | None,
    summary: PacketSummary,
    content: Mapping[str, Any],
    *,
    me: str,
    terms: TermsSource,
    bundle: TrustBundle,
    received_at: datetime,
) -> CaseRecord:
    """Our copy after a partner's case packet received at ``received_at``; raises
    :class:`CaseError` (its ``code`` is the refusal). What both the check and the apply
    run, so they cannot disagree."""
    return apply_incoming(old, summary, content, me=me, terms=terms, bundle=bundle, now=received_at)


def read_content(relay: InboxReader, packet_id: str) -> Mapping[str, Any]:
    """The business content of a stored incoming packet; :class:`MalformedEvent` when it
    no longer opens."""
    try:
        return relay.read_packet(packet_id).content
    except (RelayError, SigningError) as exc:
        raise MalformedEvent(f"packet does not open: {exc}") from exc


def _case_events(case_id: str, packets: Sequence[OpenedPacket]) -> tuple[str, ...]:
    """The ids of those of ``packets`` that carry an event of ``case_id``."""
    return tuple(
        p.summary.packet_id
        for p in packets
        if p.summary.case_id == case_id
        and p.summary.action in CASE_ACTIONS
        and p.body.get("format") == CONTENT_FORMAT
    )


@dataclass(frozen=True)
class _Judged:
    """The last packet of a case judged: after the case events ``before`` of its batch
    (which left ``copy``), and the copy ``after`` it (None: refused)."""

    before: tuple[str, ...]
    copy: CaseRecord | None
    packet_id: str
    after: CaseRecord | None


_REMEMBERED = 256  # cases whose last judgement is kept (beyond: built from the store again)


class CaseAdmission:
    """The case layer's :class:`~relay.core.ports.ContentCheck` (see the module note)."""

    def __init__(
        self,
        *,
        node_id: str,
        relay: InboxReader,
        store: CaseStore,
        terms: TermsSource,
        bundle: Callable[[], TrustBundle],
    ) -> None:
        self._me = node_id
        self._relay = relay
        self._store = store
        self._terms = terms
        self._bundle = bundle
        self._judged: OrderedDict[str, _Judged] = OrderedDict()

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        summary = packet.summary
        if summary.action not in CASE_ACTIONS or packet.body.get("format") != CONTENT_FORMAT:
            return None  # a plain packet, no case event: it cannot move a case either
        bundle = self._bundle()
        case_id = summary.case_id
        before = _case_events(case_id, earlier)
        last = self._judged.get(case_id)
        if before and last is not None and before == last.before:
            record = last.copy  # the last one was not accepted
        elif (
            before
            and last is not None
            and last.after is not None
            and before == (*last.before, last.packet_id)
        ):
            record = last.after  # the last one was accepted
        else:
            record = self._pending_copy(case_id, earlier, bundle, at)
        after: CaseRecord | None = None
        try:
            after = self._advance(record, summary, packet.body, bundle, at)
        except CaseError as exc:
            _log.warning("case packet %s refused: %s", summary.packet_id, exc)
            return exc.code
        finally:
            self._judged[case_id] = _Judged(before, record, summary.packet_id, after)
            self._judged.move_to_end(case_id)
            if len(self._judged) > _REMEMBERED:
                self._judged.popitem(last=False)
        return None

    def _advance(
        self,
        record: CaseRecord | None,
        summary: PacketSummary,
        content: Mapping[str, Any],
        bundle: TrustBundle,
        at: datetime,
    ) -> CaseRecord:
        return advance(
            record, summary, content, me=self._me, terms=self._terms, bundle=bundle,
            received_at=at,
        )  # fmt: skip

    def _pending_copy(
        self, case_id: str, earlier: Sequence[OpenedPacket], bundle: TrustBundle, at: datetime
    ) -> CaseRecord | None:
        """The copy the apply will have reached when it comes to this packet."""
        record = self._store.get(case_id)
        in_batch = {e.summary.packet_id for e in earlier}
        items = {
            i.summary.packet_id: i
            for i in self._relay.unsettled_inbox(case_id=case_id)
            if i.summary.action in CASE_ACTIONS and i.summary.packet_id not in in_batch
        }
        for packet_id in self._store.unapplied(list(items)):  # earlier batches, in order
            item = items[packet_id]
            try:
                content = read_content(self._relay, packet_id)
                record = self._advance(record, item.summary, content, bundle, item.received_at)
            except CaseError:
                continue  # the apply records it as refused and leaves the copy
        for e in earlier:
            if e.summary.case_id == case_id and e.summary.action in CASE_ACTIONS:
                try:
                    record = self._advance(record, e.summary, e.body, bundle, at)
                except CaseError:
                    continue
        return record
