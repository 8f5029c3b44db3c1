"""What the work queue shows of a case, kept with every write of it (issue 12).

The console's work queue lists every case of the node with its state, whose turn it
is, its open complaints and its clock, filters them (the person's own cases among
them) and counts them per state; every open console asks for it again whenever a case
changes. Computing that from each case's events made every refresh decode every case
of the node. The case store keeps, with each write of a case, the few facts the queue
needs (:class:`QueueFacts`) beside its clock facts, and :class:`QueueEntry` is a case
as the queue sees it, read from its row alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relay.cases.model import CaseHeader, CaseState, Office
from relay.cases.sla import ClockFacts
from relay.cases.workflow import Case

__all__ = ["QueueEntry", "QueueFacts", "turn_of"]

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
