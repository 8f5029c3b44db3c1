"""Cross-province cases: the workflow both offices share, SLA clocks, applicant tracking.

Design note
-----------
A case lives at two offices: the *receiving* office (收件地) where the applicant hands
in materials, and the *handling* office (办理地) that holds the power to decide. Each
keeps its own copy; every step one office takes travels to the other as a signed case
packet (``relay.core``) whose content is one :class:`~relay.cases.model.Event`
(docs/protocol.md §11). A copy is the set of events of both offices; the state and the
timeline are a deterministic fold over them (:mod:`relay.cases.workflow`), so two
copies holding the same events show the same timeline whatever the arrival order, and
a duplicate delivery changes nothing.

Pure core (data in, data out; time, randomness and keys are arguments):

- :mod:`~relay.cases.model` — states, offices, event kinds, header, events;
- :mod:`~relay.cases.workflow` — ``transition(case, step, now) -> (case, packets)``;
- :mod:`~relay.cases.sla` — working-day clocks (75 % yellow, overdue red, grey when
  uncountable, paused during correction, flagged provisional on computed holidays) and
  the three-working-day complaint clock;
- :mod:`~relay.cases.tracking` — access codes (scrypt), signed tracking links, the
  lookup throttle; :mod:`~relay.cases.tracking_view` — the applicant's view (zh/en).

Shell: :mod:`~relay.cases.store` (the storage interface) and
:mod:`~relay.cases.sqlite_store`; :mod:`~relay.cases.terms` reads the agreement terms;
:mod:`~relay.cases.incoming` applies a partner's packet and
:mod:`~relay.cases.admission` refuses, inside the relay's receive pipeline, one that
could not be applied (so it is never accepted); :mod:`~relay.cases.desk`
composes the core with the relay node; ``relay.http.cases``, ``relay.http.tracking``
and ``relay.http.licences`` are the HTTP handlers, ``relay.http.case_services`` plugs
it all into a node.
"""

from relay.cases.errors import (
    CaseError,
    ConflictingEvent,
    IllegalTransition,
    MalformedEvent,
    OutOfOrder,
    TrackingDenied,
)
from relay.cases.model import CaseHeader, CaseState, Event, EventKind, Office
from relay.cases.sla import ClockState, Colour, SlaReport, case_clock, complaint_clock
from relay.cases.workflow import (
    Case,
    CaseView,
    Command,
    OutgoingPacket,
    Received,
    action_for,
    transition,
)

__all__ = [
    "Case",
    "CaseError",
    "CaseHeader",
    "CaseState",
    "CaseView",
    "ClockState",
    "Colour",
    "Command",
    "ConflictingEvent",
    "Event",
    "EventKind",
    "IllegalTransition",
    "MalformedEvent",
    "Office",
    "OutOfOrder",
    "OutgoingPacket",
    "Received",
    "SlaReport",
    "TrackingDenied",
    "action_for",
    "case_clock",
    "complaint_clock",
    "transition",
]
