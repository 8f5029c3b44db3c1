"""The agreement lifecycle as a pure state machine.

::

    draft ──propose──▶ proposed ──activate (every party signed)──▶ active
                                                                  │  ▲
                                              suspend (a party) ──┘  │
                                                     suspended ──resume (same party)
    active / suspended ──withdraw (a party leaves)──▶ same state while ≥ 2 parties remain,
                                                      withdrawn when fewer remain (bilateral)
    active / suspended ──expire (at ≥ valid_until)──▶ expired
    active / suspended ──supersede (newer version active)──▶ superseded
    draft / proposed ──expire──▶ expired

Every transition is caused by an :class:`~agreements.events.Event` (signed by a party
when it travels; see :mod:`agreements.events`), applied at the event's instant. Events
must come in time order; an event dated before the last one is refused. The lifecycle
keeps every snapshot, so :meth:`Lifecycle.status_at` answers "what was in force at t"
for any t: a suspension or withdrawal takes effect at its instant and not before.

Several parties may suspend at once; the agreement is active again when every
suspending party has resumed. A party that withdraws is out from that instant on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from agreements.errors import IllegalTransition
from agreements.events import Event, EventKind, document_digest
from agreements.model import Agreement, from_epoch

__all__ = [
    "Lifecycle",
    "Snapshot",
    "State",
    "apply",
    "from_signatures",
    "start",
    "supersede_check",
]


class State(StrEnum):
    DRAFT = "draft"
    PROPOSED = "proposed"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


_LIVE = frozenset({State.ACTIVE, State.SUSPENDED})
_FINAL = frozenset({State.WITHDRAWN, State.EXPIRED, State.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What held from ``at`` on (until the next snapshot)."""

    at: datetime
    state: State
    withdrawn: frozenset[str]
    suspended_by: frozenset[str]
    event: EventKind | None


@dataclass(frozen=True)
class Lifecycle:
    agreement: Agreement
    snapshots: tuple[Snapshot, ...]  # non-empty, in time order
    _times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.snapshots:
            raise ValueError("a lifecycle has at least one snapshot")
        object.__setattr__(self, "_times", tuple(s.at for s in self.snapshots))

    @property
    def current(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def state(self) -> State:
        return self.current.state

    def status_at(self, at: datetime) -> Snapshot | None:
        """The snapshot in force at ``at``; ``None`` before the lifecycle started."""
        i = bisect_right(self._times, at)
        return self.snapshots[i - 1] if i else None

    @property
    def activated_at(self) -> datetime | None:
        """When the agreement first became active (fully signed), if it did."""
        for snap in self.snapshots:
            if snap.event is EventKind.ACTIVATE:
                return snap.at
        return None

    def state_at(self, at: datetime) -> State:
        """The state at ``at``, counting the end of the validity window as expiry."""
        snap = self.status_at(at)
        if snap is None:
            return State.DRAFT
        if snap.state in _LIVE and at >= self.agreement.valid_until:
            return State.EXPIRED
        return snap.state

    def remaining_parties(self) -> frozenset[str]:
        return self.agreement.party_ids - self.current.withdrawn


def start(agreement: Agreement, at: datetime) -> Lifecycle:
    """A new lifecycle in state draft."""
    return Lifecycle(agreement, (Snapshot(at, State.DRAFT, frozenset(), frozenset(), None),))


def _illegal(lc: Lifecycle, event: Event, why: str) -> IllegalTransition:
    return IllegalTransition(lc.state.value, event.kind.value, why)


def apply(lc: Lifecycle, event: Event, *, signed_by: frozenset[str] = frozenset()) -> Lifecycle:
    """Apply one event; ``signed_by`` is the set of parties whose signature verified.

    Raises :class:`IllegalTransition` when the state, the actor or the time forbids it.
    """
    ag = lc.agreement
    cur = lc.current
    if event.agreement_id != ag.id or event.version != ag.version:
        raise _illegal(lc, event, "the event names another agreement or version")
    if event.document_sha256 != document_digest(ag):
        raise _illegal(lc, event, "the event names other document bytes")
    if event.at < cur.at:
        raise _illegal(lc, event, "events must come in time order")
    if event.party not in ag.party_ids:
        raise _illegal(lc, event, f"{event.party} is not a party")
    if event.party in cur.withdrawn:
        raise _illegal(lc, event, f"{event.party} has withdrawn")
    if cur.state in _FINAL:
        raise _illegal(lc, event, "the agreement has ended")
    state, withdrawn, suspended = cur.state, cur.withdrawn, cur.suspended_by
    kind = event.kind
    if kind is EventKind.PROPOSE:
        if state is not State.DRAFT:
            raise _illegal(lc, event, "only a draft can be proposed")
        state = State.PROPOSED
    elif kind is EventKind.ACTIVATE:
        if state is not State.PROPOSED:
            raise _illegal(lc, event, "only a proposed agreement can be activated")
        missing = ag.party_ids - signed_by
        if missing:
            raise _illegal(lc, event, f"not signed by {', '.join(sorted(missing))}")
        state = State.ACTIVE
    elif kind is EventKind.SUSPEND:
        if state not in _LIVE:
            raise _illegal(lc, event, "only an active agreement can be suspended")
        if event.party in suspended:
            raise _illegal(lc, event, f"{event.party} has already suspended it")
        suspended = suspended | {event.party}
        state = State.SUSPENDED
    elif kind is EventKind.RESUME:
        if event.party not in suspended:
            raise _illegal(lc, event, f"{event.party} has not suspended it")
        suspended = suspended - {event.party}
        state = State.SUSPENDED if suspended else State.ACTIVE
    elif kind is EventKind.WITHDRAW:
        if state not in _LIVE:
            raise _illegal(lc, event, "only an active or suspended agreement can be left")
        withdrawn = withdrawn | {event.party}
        suspended = suspended - {event.party}
        if len(ag.party_ids - withdrawn) < 2:
            state = State.WITHDRAWN
        else:
            state = State.SUSPENDED if suspended else State.ACTIVE
    elif kind is EventKind.EXPIRE:
        if event.at < ag.valid_until:
            raise _illegal(lc, event, "the validity window has not ended")
        state = State.EXPIRED
    elif kind is EventKind.SUPERSEDE:
        if state not in _LIVE:
            raise _illegal(lc, event, "only an active or suspended agreement is superseded")
        if event.superseded_by is None or event.superseded_by <= ag.version:
            raise _illegal(lc, event, "supersede needs a later version")
        state = State.SUPERSEDED
    else:  # pragma: no cover - enum is exhaustive
        raise _illegal(lc, event, "unknown event")
    snap = Snapshot(event.at, state, withdrawn, suspended, kind)
    return Lifecycle(ag, (*lc.snapshots, snap))


def supersede_check(old: Lifecycle, new: Lifecycle) -> None:
    """Refuse a supersession unless ``new`` is a later, fully signed (active) version."""
    if new.agreement.id != old.agreement.id or new.agreement.supersedes != old.agreement.version:
        raise IllegalTransition(old.state.value, "supersede", "not a successor of this version")
    if new.state is not State.ACTIVE:
        raise IllegalTransition(old.state.value, "supersede", "the new version is not active")


def from_signatures(agreement: Agreement, signed: Mapping[str, datetime]) -> Lifecycle:
    """The lifecycle that verified party signatures imply.

    A draft since the epoch; the first signature proposes it (at its signing time, by
    its signer); the signature that completes the set activates it (at that time).
    """
    lc = start(agreement, from_epoch(0))
    order = sorted(signed.items(), key=lambda item: (item[1], item[0]))
    if not order:
        return lc
    first_party, first_at = order[0]
    lc = apply(
        lc, Event.for_agreement(agreement, EventKind.PROPOSE, party=first_party, at=first_at)
    )
    if agreement.party_ids <= signed.keys():
        last_party, last_at = order[-1]
        lc = apply(
            lc,
            Event.for_agreement(agreement, EventKind.ACTIVATE, party=last_party, at=last_at),
            signed_by=frozenset(signed),
        )
    return lc
