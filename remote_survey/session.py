"""Survey sessions: the plan, and the state machine that runs it.

A :class:`SurveyPlan` is what the surveying office schedules for a case: who surveys
(inspectors), who shows the site (the on-site party), who may watch (observers), what
must be checked (the matter's checklist), where (address and WGS-84 point) and when
(the time window). A :class:`SurveySession` is a plan plus its state::

    scheduled ──start──▶ live ──complete──▶ completed
        │                 │ ▲
        │               drop rejoin
        │                 ▼ │
        │             interrupted
        │                 │
        └──── abandon / convert (from scheduled, live or interrupted) ────▶
                               abandoned | converted_to_onsite

:func:`transition` is pure: it takes the session, an :class:`Event` and the server time,
and returns the new session plus the evidence bodies the shell must append to the
session's evidence chain (a :class:`~remote_survey.evidence.Gap` when an interruption
ends, by rejoin or by ending the session). Refused transitions raise
:class:`~remote_survey.errors.InvalidTransition`; nothing is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from remote_survey.entries import Gap, epoch_ms
from remote_survey.errors import InvalidSession, InvalidTransition
from remote_survey.geo import GeoPoint
from signing.certificates import is_node_id

__all__ = [
    "ChecklistItem",
    "Event",
    "Interruption",
    "Participant",
    "Role",
    "Site",
    "StateChange",
    "SurveyPlan",
    "SurveySession",
    "SurveyState",
    "TimeWindow",
    "can_apply",
    "schedule",
    "transition",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidSession(f"{what} {value!r} is not 1-64 characters of [A-Za-z0-9._:-]")


def _check_aware(value: object, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidSession(f"{what} must be a timezone-aware datetime")


class Role(StrEnum):
    INSPECTOR = "inspector"
    SITE = "site"
    OBSERVER = "observer"


class SurveyState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    CONVERTED_TO_ONSITE = "converted_to_onsite"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({SurveyState.COMPLETED, SurveyState.ABANDONED, SurveyState.CONVERTED_TO_ONSITE})


class Event(StrEnum):
    START = "start"
    DROP = "drop"
    REJOIN = "rejoin"
    COMPLETE = "complete"
    ABANDON = "abandon"
    CONVERT = "convert"


@dataclass(frozen=True)
class Participant:
    person_id: str
    name: str

    def __post_init__(self) -> None:
        _check_id(self.person_id, "person id")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidSession(f"participant {self.person_id} needs a name")


@dataclass(frozen=True)
class ChecklistItem:
    item_id: str
    text: str

    def __post_init__(self) -> None:
        _check_id(self.item_id, "checklist item id")
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidSession(f"checklist item {self.item_id} needs a text")


@dataclass(frozen=True)
class Site:
    address: str
    location: GeoPoint

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise InvalidSession("the site needs an address")
        if not isinstance(self.location, GeoPoint):
            raise InvalidSession("the site location must be a GeoPoint")


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check_aware(self.start, "window start")
        _check_aware(self.end, "window end")
        if self.end <= self.start:
            raise InvalidSession("the time window must end after it starts")

    def contains(self, at: datetime) -> bool:
        return self.start <= at <= self.end


@dataclass(frozen=True)
class SurveyPlan:
    """Everything scheduled for one survey; invalid combinations cannot be built."""

    session_id: str
    case_id: str
    matter: str
    surveying_office: str
    requesting_office: str
    window: TimeWindow
    inspectors: tuple[Participant, ...]
    site_party: Participant
    observers: tuple[Participant, ...]
    checklist: tuple[ChecklistItem, ...]
    site: Site

    def __post_init__(self) -> None:
        _check_id(self.session_id, "session id")
        _check_id(self.case_id, "case id")
        _check_id(self.matter, "matter")
        for office in (self.surveying_office, self.requesting_office):
            if not is_node_id(office):
                raise InvalidSession(f"office {office!r} is not a 6-digit node id")
        if not self.inspectors:
            raise InvalidSession("a survey needs at least one inspector")
        if not self.checklist:
            raise InvalidSession("a survey needs a checklist with at least one item")
        people = [*self.inspectors, self.site_party, *self.observers]
        ids = [p.person_id for p in people]
        if len(set(ids)) != len(ids):
            raise InvalidSession("each participant may appear once, in one role")
        items = [i.item_id for i in self.checklist]
        if len(set(items)) != len(items):
            raise InvalidSession("checklist item ids must be unique")

    def role_of(self, person_id: str) -> Role | None:
        if any(p.person_id == person_id for p in self.inspectors):
            return Role.INSPECTOR
        if self.site_party.person_id == person_id:
            return Role.SITE
        if any(p.person_id == person_id for p in self.observers):
            return Role.OBSERVER
        return None


@dataclass(frozen=True)
class Interruption:
    """A span during which the live session was broken; ``end`` is None while open."""

    start: datetime
    end: datetime | None = None


@dataclass(frozen=True)
class StateChange:
    event: Event
    before: SurveyState
    after: SurveyState
    at: datetime


@dataclass(frozen=True)
class SurveySession:
    plan: SurveyPlan
    state: SurveyState = SurveyState.SCHEDULED
    started_at: datetime | None = None
    ended_at: datetime | None = None
    interruptions: tuple[Interruption, ...] = ()
    history: tuple[StateChange, ...] = ()

    @property
    def last_change(self) -> datetime | None:
        return self.history[-1].at if self.history else None


def schedule(plan: SurveyPlan) -> SurveySession:
    """A new session for ``plan``, in state ``scheduled``."""
    return SurveySession(plan=plan)


_ALLOWED: dict[Event, tuple[frozenset[SurveyState], SurveyState]] = {
    Event.START: (frozenset({SurveyState.SCHEDULED}), SurveyState.LIVE),
    Event.DROP: (frozenset({SurveyState.LIVE}), SurveyState.INTERRUPTED),
    Event.REJOIN: (frozenset({SurveyState.INTERRUPTED}), SurveyState.LIVE),
    Event.COMPLETE: (frozenset({SurveyState.LIVE}), SurveyState.COMPLETED),
    Event.ABANDON: (
        frozenset({SurveyState.SCHEDULED, SurveyState.LIVE, SurveyState.INTERRUPTED}),
        SurveyState.ABANDONED,
    ),
    Event.CONVERT: (
        frozenset({SurveyState.SCHEDULED, SurveyState.LIVE, SurveyState.INTERRUPTED}),
        SurveyState.CONVERTED_TO_ONSITE,
    ),
}


def can_apply(session: SurveySession, event: Event) -> bool:
    """Whether the state of ``session`` allows ``event`` (times are checked by
    :func:`transition`)."""
    return session.state in _ALLOWED[event][0]


def transition(
    session: SurveySession, event: Event, at: datetime
) -> tuple[SurveySession, tuple[Gap, ...]]:
    """Apply ``event`` at server time ``at``; return the new session and evidence to append.

    Raises :class:`InvalidTransition` when the state does not allow ``event``, when
    ``at`` is earlier than the previous change, or when ``start`` falls outside the
    scheduled window.
    """
    if at.tzinfo is None:
        raise InvalidTransition("transition needs a timezone-aware time")
    sources, target = _ALLOWED[event]
    if session.state not in sources:
        raise InvalidTransition(f"cannot {event.value} a session that is {session.state.value}")
    last = session.last_change
    if last is not None and at < last:
        raise InvalidTransition(
            f"{event.value} at {at.isoformat()} is earlier than the last change {last.isoformat()}"
        )
    if event is Event.START and not session.plan.window.contains(at):
        window = session.plan.window
        raise InvalidTransition(
            f"start at {at.isoformat()} is outside the window "
            f"{window.start.isoformat()} - {window.end.isoformat()}"
        )
    interruptions = session.interruptions
    effects: tuple[Gap, ...] = ()
    if event is Event.DROP:
        interruptions = (*interruptions, Interruption(start=at))
    elif session.state is SurveyState.INTERRUPTED:
        opened = interruptions[-1]
        interruptions = (*interruptions[:-1], Interruption(start=opened.start, end=at))
        effects = (Gap(start_ms=epoch_ms(opened.start), end_ms=epoch_ms(at)),)
    change = StateChange(event=event, before=session.state, after=target, at=at)
    new = replace(
        session,
        state=target,
        started_at=at if event is Event.START else session.started_at,
        ended_at=at if target.is_final else session.ended_at,
        interruptions=interruptions,
        history=(*session.history, change),
    )
    return new, effects
