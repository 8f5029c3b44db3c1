"""The case state machine shared by both offices, and how two copies converge.

A :class:`Case` is a header plus the set of :class:`~relay.cases.model.Event` s both
offices took, kept in canonical order (Lamport time ``seq + seen``, handling office
first on ties). Everything else — state, timeline, what is missing, the licence, the
rating and complaints — is a *fold* over that order (:class:`CaseView`). Two copies
holding the same events therefore show the same timeline, whatever order the packets
arrived in.

:func:`transition` is the only way to change a case:

- a :class:`Command` is our own office acting: checked against the current state
  (:class:`IllegalTransition` with a stable code), numbered, appended, and returned with
  the packet to send to the other office (an agreement :class:`~agreements.Action`, the
  recipient node id and the content of docs/protocol.md §11);
- a :class:`Received` is the other office's event taken from a packet: a duplicate of
  an event we hold is a no-op, a gap is :class:`OutOfOrder`, a reused number with other
  content is :class:`ConflictingEvent`, and the event must have been legal *in the
  sender's own view* — the fold of exactly the events it had when it acted (its own
  earlier ones and the first ``seen`` of ours). No transition outside the state machine
  is ever accepted from a partner.

Only the applicant's withdrawal and complaint can race the handling office's steps
(every other step is the turn of one office). When two concurrent events are folded
and the later one in canonical order is no longer allowed (a withdrawal that arrived
after the decision), it stays in the timeline marked *void* on both copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any

from agreements.actions import Action
from relay.cases.errors import ConflictingEvent, IllegalTransition, OutOfOrder
from relay.cases.model import CaseHeader, CaseState, Event, EventKind, Office

__all__ = [
    "Case",
    "CaseView",
    "Command",
    "Complaint",
    "OutgoingPacket",
    "Received",
    "TimelineEntry",
    "action_for",
    "transition",
]

S, K, Of = CaseState, EventKind, Office
_UNDECIDED = frozenset(
    {
        S.RECEIVED,
        S.SUBMITTED,
        S.CORRECTION_REQUESTED,
        S.ACCEPTED,
        S.SURVEY_REQUESTED,
        S.SURVEY_REPORTED,
    }
)
_OPENED = frozenset(S) - {S.RECEIVED}

# kind -> (acting office (None: the surveyor), states it may act from, state after)
_Rule = tuple[Office | None, frozenset[CaseState], CaseState | None]
_RULES: Mapping[EventKind, _Rule] = MappingProxyType(
    {
        K.SUBMIT: (Of.RECEIVING, frozenset({S.RECEIVED}), S.SUBMITTED),
        K.ACCEPT: (Of.HANDLING, frozenset({S.SUBMITTED}), S.ACCEPTED),
        K.REJECT: (Of.HANDLING, frozenset({S.SUBMITTED}), S.REJECTED),
        K.REQUEST_CORRECTION: (Of.HANDLING, frozenset({S.SUBMITTED}), S.CORRECTION_REQUESTED),
        K.SUPPLEMENT: (Of.RECEIVING, frozenset({S.CORRECTION_REQUESTED}), S.SUBMITTED),
        K.REQUEST_SURVEY: (Of.HANDLING, frozenset({S.ACCEPTED}), S.SURVEY_REQUESTED),
        K.SURVEY_REPORT: (None, frozenset({S.SURVEY_REQUESTED}), S.SURVEY_REPORTED),
        K.DECIDE: (Of.HANDLING, frozenset({S.ACCEPTED, S.SURVEY_REPORTED}), None),
        K.ISSUE_LICENCE: (Of.HANDLING, frozenset({S.APPROVED}), S.LICENCE_ISSUED),
        K.DELIVER: (Of.RECEIVING, frozenset({S.LICENCE_ISSUED}), S.DELIVERED),
        K.CONCLUDE: (Of.RECEIVING, frozenset({S.DELIVERED, S.DENIED}), S.CONCLUDED),
        K.WITHDRAW: (Of.RECEIVING, _UNDECIDED, S.WITHDRAWN),
        K.RATE: (Of.RECEIVING, frozenset({S.CONCLUDED}), None),
        K.COMPLAIN: (Of.RECEIVING, _OPENED, None),
        K.ANSWER_COMPLAINT: (Of.HANDLING, _OPENED, None),
    }
)

_ACTIONS: Mapping[EventKind, Action] = MappingProxyType(
    {
        K.SUBMIT: Action.SUBMIT,
        K.ACCEPT: Action.ACCEPT,
        K.REJECT: Action.REJECT,
        K.REQUEST_CORRECTION: Action.REQUEST_CORRECTION,
        K.SUPPLEMENT: Action.SUPPLEMENT,
        K.DECIDE: Action.DECIDE,
        K.ISSUE_LICENCE: Action.ISSUE_LICENCE,
        K.DELIVER: Action.DELIVER,
        K.CONCLUDE: Action.STATUS_UPDATE,
        K.WITHDRAW: Action.WITHDRAW,
        K.RATE: Action.RATING,
        K.COMPLAIN: Action.COMPLAINT,
        K.ANSWER_COMPLAINT: Action.STATUS_UPDATE,
    }
)


def action_for(event: Event) -> Action:
    """The agreement action of the packet carrying ``event`` (docs/protocol.md §11).

    A survey by the receiving office travels as ``request-survey`` / ``survey-report``
    (the agreement must let it survey for the handling office); a survey the handling
    office does itself is announced to the receiving office as ``status-update``.
    """
    if event.kind is K.REQUEST_SURVEY:
        by_receiver = event.details["surveyor"] == Of.RECEIVING
        return Action.REQUEST_SURVEY if by_receiver else Action.STATUS_UPDATE
    if event.kind is K.SURVEY_REPORT:
        return Action.SURVEY_REPORT if event.origin is Of.RECEIVING else Action.STATUS_UPDATE
    return _ACTIONS[event.kind]


@dataclass(frozen=True)
class Complaint:
    seq: int  # the complaint event's seq (receiving office)
    at: datetime
    text: str
    answered_at: datetime | None = None
    answer: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    event: Event
    applied: bool  # False: void (a concurrent step made it impossible)
    state: CaseState  # the case state after this entry


@dataclass(frozen=True)
class CaseView:
    """The fold of a case's events: where it stands and how it got there."""

    state: CaseState
    timeline: tuple[TimelineEntry, ...]
    surveyor: Office | None = None
    missing: tuple[str, ...] = ()
    licence: str | None = None
    licence_number: str | None = None
    rating: Mapping[str, Any] | None = None
    complaints: tuple[Complaint, ...] = ()
    # the statutory clock's running intervals (start, end or None while running) and
    # whether it stopped for good (relay.cases.sla counts them): carried step by step
    clock: tuple[tuple[datetime, datetime | None], ...] = ()
    clock_stopped: bool = False
    # (office, person) of every applied event naming the person who took it
    # (``details.staff``), each pair once, in the order they first acted: carried step
    # by step (the console's "my cases" reads it without going through the events)
    staff: tuple[tuple[Office, str], ...] = ()
    # how many complaints are open and when the oldest open one was made: carried step
    # by step (what the work queue and the clock facts need, however many complaints)
    open_count: int = 0
    oldest_open: datetime | None = None
    # when the latest event (applied or not) happened: carried step by step (retention
    # counts from it)
    last_at: datetime | None = None

    @property
    def open_complaints(self) -> tuple[Complaint, ...]:
        return tuple(c for c in self.complaints if c.answered_at is None)


def _why_not(view: CaseView, header: CaseHeader, event: Event) -> str | None:
    """The stable code refusing ``event`` in ``view``, or None when it is allowed."""
    actor, states, _ = _RULES[event.kind]
    if actor is None:
        actor = view.surveyor
    if event.origin is not actor:
        return "wrong-office"
    if view.state not in states:
        return "wrong-state"
    if event.kind is K.DECIDE and header.survey_required and view.state is S.ACCEPTED:
        return "survey-required"
    if event.kind is K.RATE and view.rating is not None:
        return "already-rated"
    if event.kind is K.ANSWER_COMPLAINT:
        target = event.details["complaint"]
        if not any(c.seq == target for c in view.open_complaints):
            return "no-open-complaint"
    return None


_CLOCK_PAUSES = frozenset({K.REQUEST_CORRECTION})
_CLOCK_RESUMES = frozenset({K.SUPPLEMENT})
_CLOCK_STOPS = frozenset({K.REJECT, K.DECIDE, K.WITHDRAW})


def _clock_after(view: CaseView, event: Event) -> dict[str, Any]:
    """The statutory clock's change by an applied ``event``: it starts at submission,
    pauses for a correction, resumes at the supplement and stops for good at the
    answer, decision or withdrawal (nothing changes it after that)."""
    intervals = view.clock
    if view.clock_stopped:
        return {}
    running = bool(intervals) and intervals[-1][1] is None
    kind = event.kind
    if kind is K.SUBMIT or (kind in _CLOCK_RESUMES and not running):
        return {"clock": (*intervals, (event.at, None))}
    if running and (kind in _CLOCK_PAUSES or kind in _CLOCK_STOPS):
        return {
            "clock": (*intervals[:-1], (intervals[-1][0], event.at)),
            "clock_stopped": kind in _CLOCK_STOPS,
        }
    return {}


def _apply(view: CaseView, event: Event) -> CaseView:
    _, _, after = _RULES[event.kind]
    d = event.details
    state = after if after is not None else view.state
    changes: dict[str, Any] = _clock_after(view, event)
    person = d.get("staff")
    if isinstance(person, str) and person and (event.origin, person) not in view.staff:
        changes["staff"] = (*view.staff, (event.origin, person))
    if event.kind is K.DECIDE:
        state = S.APPROVED if d["decision"] == "approve" else S.DENIED
    elif event.kind is K.REQUEST_CORRECTION:
        changes["missing"] = tuple(d["missing"])
    elif event.kind is K.SUPPLEMENT:
        changes["missing"] = ()
    elif event.kind is K.REQUEST_SURVEY:
        changes["surveyor"] = Of(d["surveyor"])
    elif event.kind is K.ISSUE_LICENCE:
        changes["licence"], changes["licence_number"] = d["licence"], d["licence_number"]
    elif event.kind is K.RATE:
        changes["rating"] = d
    elif event.kind is K.COMPLAIN:
        changes["complaints"] = (*view.complaints, Complaint(event.seq, event.at, d["text"]))
        changes["open_count"] = view.open_count + 1
        oldest = view.oldest_open
        changes["oldest_open"] = event.at if oldest is None else min(oldest, event.at)
    elif event.kind is K.ANSWER_COMPLAINT:
        complaints = tuple(
            Complaint(c.seq, c.at, c.text, event.at, d["answer"]) if c.seq == d["complaint"] else c
            for c in view.complaints
        )
        still_open = [c.at for c in complaints if c.answered_at is None]
        changes["complaints"] = complaints
        changes["open_count"] = len(still_open)
        changes["oldest_open"] = min(still_open, default=None)
    return _replace(view, state=state, **changes)


def _replace(view: CaseView, **changes: Any) -> CaseView:
    values = {name: getattr(view, name) for name in CaseView.__dataclass_fields__}
    values.update(changes)
    return CaseView(**values)


def _fold(header: CaseHeader, events: tuple[Event, ...]) -> CaseView:
    view = CaseView(S.RECEIVED, ())
    timeline = []
    for event in events:
        applied = _why_not(view, header, event) is None
        if applied:
            view = _apply(view, event)
        timeline.append(TimelineEntry(event, applied, view.state))
    last = max((e.at for e in events), default=None)
    return _replace(view, timeline=tuple(timeline), last_at=last)


@dataclass(frozen=True)
class Case:
    """One office's copy of a case: the header, which office we are, the events."""

    header: CaseHeader
    me: Office
    events: tuple[Event, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(sorted(self.events, key=Event.sort_key)))

    @cached_property
    def view(self) -> CaseView:
        return _fold(self.header, self.events)

    def with_event(self, event: Event) -> Case:
        """This copy with ``event`` added. When ``event`` sorts after every event held
        (a step taken now: the usual case) the new copy's view and counts are this
        copy's carried one step on, so a step costs the same however long the case is;
        otherwise (a concurrent event sorting earlier) they are folded anew."""
        events = self.events
        if events and event.sort_key() < events[-1].sort_key():
            return Case(self.header, self.me, (*events, event))
        new = object.__new__(Case)  # the events are in order already: no sort
        for name, value in (("header", self.header), ("me", self.me), ("events", (*events, event))):
            object.__setattr__(new, name, value)
        view = self.view
        applied = _why_not(view, self.header, event) is None
        after = _apply(view, event) if applied else view
        entry = TimelineEntry(event, applied, after.state)
        # cached_property reads the instance dict: the values the fold would compute
        last = event.at if view.last_at is None else max(view.last_at, event.at)
        new.__dict__["view"] = _replace(after, timeline=(*view.timeline, entry), last_at=last)
        counts = dict(self._counts)
        counts[event.origin] += 1
        new.__dict__["_counts"] = counts
        return new

    @property
    def state(self) -> CaseState:
        return self.view.state

    def count(self, origin: Office) -> int:
        """How many events of ``origin`` this copy holds (they are numbered 1..count)."""
        return self._counts[origin]

    @cached_property
    def _counts(self) -> dict[Office, int]:
        counts = dict.fromkeys(Office, 0)
        for e in self.events:
            counts[e.origin] += 1
        return counts

    def event(self, origin: Office, seq: int) -> Event | None:
        if seq > self.count(origin):  # not held: no need to look (a new event)
            return None
        for e in self.events:
            if e.origin is origin and e.seq == seq:
                return e
        return None

    def allowed(self, kind: EventKind, details: Mapping[str, Any], now: datetime) -> str | None:
        """Why our office may not take ``kind`` now (a code), or None if it may."""
        try:
            event = self._next_event(kind, details, now)
        except IllegalTransition as exc:
            return exc.code
        return _why_not(self.view, self.header, event)

    def _next_event(self, kind: EventKind, details: Mapping[str, Any], now: datetime) -> Event:
        mine, theirs = self.count(self.me), self.count(self.me.other)
        return Event(kind, self.me, mine + 1, theirs, now, details)


@dataclass(frozen=True)
class Command:
    """Our own office takes a step."""

    kind: EventKind
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Received:
    """The other office's step, taken from a packet's content."""

    event: Event


@dataclass(frozen=True)
class OutgoingPacket:
    action: Action
    to: str  # node id of the other office
    content: Mapping[str, Any]


def transition(
    case: Case, step: Command | Received, now: datetime
) -> tuple[Case, tuple[OutgoingPacket, ...]]:
    """Apply one step to ``case``; return the new case and the packets to send."""
    if isinstance(step, Command):
        event = case._next_event(step.kind, step.details, now)
        why = _why_not(case.view, case.header, event)
        if why is not None:
            raise IllegalTransition(
                f"{step.kind} is not allowed in state {case.state} ({why})", code=why
            )
        new = case.with_event(event)
        if case.state is S.RECEIVED and event.kind is not K.SUBMIT:
            return new, ()  # the other office has no copy of this case yet
        to = case.header.node(case.me.other)
        return new, (OutgoingPacket(action_for(event), to, event.to_content(case.header)),)
    return _receive(case, step.event), ()


def _receive(case: Case, event: Event) -> Case:
    if event.origin is case.me:
        raise IllegalTransition("our own office's event came from the partner", code="wrong-office")
    held = case.event(event.origin, event.seq)
    if held is not None:
        if held.same_as(event):
            return case  # duplicate delivery: idempotent
        raise ConflictingEvent(f"event {event.origin}/{event.seq} already held with other content")
    expected = case.count(event.origin) + 1
    if event.seq != expected:
        raise OutOfOrder(f"expected {event.origin} event {expected}, got {event.seq}")
    if event.seen > case.count(case.me):
        raise IllegalTransition("the partner claims events we never sent", code="bad-basis")
    if event.seen == case.count(case.me):  # the partner had seen all we hold
        basis_view = case.view
    else:  # judged by what the partner had seen when it acted
        basis = tuple(
            e
            for e in case.events
            if (e.origin is event.origin and e.seq < event.seq)
            or (e.origin is not event.origin and e.seq <= event.seen)
        )
        basis_view = _fold(case.header, basis)
    why = _why_not(basis_view, case.header, event)
    if why is not None:
        raise IllegalTransition(f"partner event {event.kind} refused ({why})", code=why)
    return case.with_event(event)
