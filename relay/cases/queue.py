"""What the work queue shows of a case, kept with every write of it (issue 12).

The console's work queue lists every case of the node with its state, whose turn it
is, its open complaints and its clock, filters them (the person's own cases among
them) and counts them per state; every open console asks for it again whenever a case
changes. Computing that from each case's events made every refresh decode every case
of the node. The case store keeps, with each write of a case, the few facts the queue
needs (:class:`QueueFacts`) beside its clock facts, and :class:`QueueEntry` is a case
as the queue sees it, read from its row alone.

Most cases of a node that has run for years are settled (:data:`SETTLED_STATES`, no
open complaint, the clock stopped): nothing is left to do in them and their place in
the queue (:func:`queue_rank`) no longer changes with time. The store marks them, so a
queue reads the rows of the cases still in progress and only counts the settled ones,
reading the few of them a page shows (:class:`SettledQueue`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relay.cases.model import CaseHeader, CaseState, Office
from relay.cases.sla import ClockFacts, ClockState, Colour, SlaReport
from relay.cases.workflow import Case

__all__ = [
    "CLOCK_RANK",
    "COLOUR_RANK",
    "SETTLED_STATES",
    "QueueEntry",
    "QueueFacts",
    "SettledQueue",
    "queue_rank",
    "turn_of",
]

SETTLED_STATES = frozenset({CaseState.REJECTED, CaseState.CONCLUDED, CaseState.WITHDRAWN})
"""The states a case ends in: not accepted, concluded, withdrawn."""

COLOUR_RANK = {Colour.RED: 0, Colour.GREY: 1, Colour.YELLOW: 2, Colour.GREEN: 3}
CLOCK_RANK = {
    ClockState.RUNNING: 0,
    ClockState.UNKNOWN: 0,
    ClockState.NOT_STARTED: 1,
    ClockState.PAUSED: 2,
    ClockState.STOPPED: 3,
}


def queue_rank(clock: SlaReport) -> int:
    """Where a clock puts its case in the queue before the deadline (running clocks
    first, then red before grey before yellow before green), as one number: its
    remainder by ``len(COLOUR_RANK)`` is the colour's rank."""
    return CLOCK_RANK[clock.state] * len(COLOUR_RANK) + COLOUR_RANK[clock.colour]


# Which office acts next in a state (None: nobody; the case is closed).
_TURN: Mapping[CaseState, Office | None] = {
    CaseState.RECEIVED: Office.RECEIVING,
    CaseState.SUBMITTED: Office.HANDLING,
    CaseState.ACCEPTED: Office.HANDLING,
    CaseState.REJECTED: None,
    CaseState.CORRECTION_REQUESTED: Office.RECEIVING,
    CaseState.SURVEY_REQUESTED: None,  # the surveyor's; see turn_of
    CaseState.SURVEY_REPORTED: Office.HANDLING,
    CaseState.APPROVED: Office.HANDLING,
    CaseState.DENIED: Office.RECEIVING,
    CaseState.LICENCE_ISSUED: Office.RECEIVING,
    CaseState.DELIVERED: Office.RECEIVING,
    CaseState.CONCLUDED: None,
    CaseState.WITHDRAWN: None,
}


def turn_of(case: Case) -> Office | None:
    """The office whose step the case waits for (None when nobody's)."""
    view = case.view
    if view.state is CaseState.SURVEY_REQUESTED:
        return view.surveyor
    if view.open_count and _TURN[view.state] is None:
        return Office.HANDLING
    return _TURN[view.state]


@dataclass(frozen=True)
class QueueFacts:
    """Whose turn the case waits for, how many complaints are open, and the names of
    the people through whom our office took a step (applied) in it (the queue's "mine"
    filter), in the order they first acted."""

    turn: Office | None
    open_complaints: int
    staff: tuple[str, ...]

    @classmethod
    def of(cls, case: Case) -> QueueFacts:
        view = case.view  # the staff carried by the fold: no walk through the events
        staff = tuple(name for office, name in view.staff if office is case.me)
        return cls(turn_of(case), view.open_count, staff)

    def to_json(self) -> dict[str, Any]:
        turn = None if self.turn is None else self.turn.value
        return {"turn": turn, "open_complaints": self.open_complaints, "staff": list(self.staff)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> QueueFacts:
        turn = obj["turn"]
        return cls(
            None if turn is None else Office(turn),
            int(obj["open_complaints"]),
            tuple(str(n) for n in obj["staff"]),
        )


@dataclass(frozen=True)
class QueueEntry:
    """A case as the work queue sees it: read from the case's row, no event decoded."""

    header: CaseHeader
    me: Office
    state: CaseState
    version: int
    opened_at: datetime
    clock: ClockFacts
    facts: QueueFacts

    @property
    def case_id(self) -> str:
        return self.header.case_id

    @property
    def partner(self) -> str:
        """The other office's node id."""
        return self.header.node(self.me.other)

    @property
    def our_turn(self) -> bool:
        return self.facts.turn is self.me

    @property
    def settled(self) -> bool:
        """Nothing is left to do: the case ended (:data:`SETTLED_STATES`) with no open
        complaint and its clock stopped or never started, so nobody's turn comes and
        its clock reads the same whenever it is read."""
        return (
            self.state in SETTLED_STATES
            and self.facts.open_complaints == 0
            and (self.clock.stopped or not self.clock.intervals)
        )

    @classmethod
    def of(cls, case: Case, version: int, opened_at: datetime) -> QueueEntry:
        """The entry of a whole case copy (what the store's row holds for it)."""
        return cls(
            case.header,
            case.me,
            case.state,
            version,
            opened_at,
            ClockFacts.of(case),
            QueueFacts.of(case),
        )


@dataclass(frozen=True)
class SettledQueue:
    """The settled cases a work queue shows (:attr:`QueueEntry.settled`), as the store
    gives them from its index: how many of them the filters keep in each state, and the
    first of them (by :func:`queue_rank`, then case id) in the state asked for (every
    state when none was), as many as the page has room for."""

    counts: Mapping[str, int]
    entries: tuple[QueueEntry, ...]
