"""What the console shows, computed from cases, clocks and the agreement (pure).

Data in, data out: the records, their SLA clocks, the clause of the agreement for the
matter and ``now`` are arguments; nothing here reads storage or knows about HTTP. Every
label a person reads is chosen by the page from the stable values here (state, event
kind, colour, material status); names (matters, offices, materials) come with both
languages, so no Chinese page ever shows a code alone.

- :func:`queue_view` — the work queue: filters (matter, partner office, mine, our turn,
  overdue), counts per state, sorted by deadline (red first, then the nearest deadline;
  paused and stopped clocks after the running ones), from the cases' queue entries
  (:class:`relay.cases.queue.QueueEntry`: no event read);
- :func:`checklist` — the per-matter standard as materials received / missing / to be
  corrected;
- :func:`available_actions` — the steps the state machine allows our office *now*
  (:meth:`~relay.cases.workflow.Case.allowed`) and the agreement grants;
- :func:`refusals` — our packets of a case the partner refused, with its reason code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from agreements.actions import Action
from agreements.model import Material
from relay.cases.model import CaseHeader, CaseState, EventKind, Office, thaw
from relay.cases.queue import QueueEntry, SettledQueue, queue_rank, turn_of
from relay.cases.sla import Colour, SlaReport
from relay.cases.workflow import Case, action_for
from relay.core.model import OutboxItem, OutboxState

__all__ = [
    "CONSOLE_ACTIONS",
    "MaterialStatus",
    "QueueFilter",
    "available_actions",
    "checklist",
    "queue_view",
    "refusals",
    "turn_of",
]

# The steps a person takes from the case page, in the order the page lists them.
CONSOLE_ACTIONS: tuple[EventKind, ...] = (
    EventKind.SUBMIT,
    EventKind.ACCEPT,
    EventKind.REQUEST_CORRECTION,
    EventKind.REJECT,
    EventKind.SUPPLEMENT,
    EventKind.REQUEST_SURVEY,
    EventKind.SURVEY_REPORT,  # typed in: an on-site survey (a remote one sends its seal)
    EventKind.DECIDE,
    EventKind.ISSUE_LICENCE,
    EventKind.DELIVER,
    EventKind.CONCLUDE,
    EventKind.WITHDRAW,
    EventKind.ANSWER_COMPLAINT,
)

# Details that make each kind well-formed for asking the state machine whether it may
# be taken now (the person's real details are checked again when the step is taken).
_PROBE: Mapping[EventKind, Mapping[str, Any]] = {
    EventKind.REJECT: {"reason": "?"},
    EventKind.REQUEST_CORRECTION: {"missing": ["?"]},
    EventKind.REQUEST_SURVEY: {"surveyor": "handling"},
    EventKind.SURVEY_REPORT: {"outcome": "pass"},
    EventKind.DECIDE: {"decision": "approve"},
    EventKind.ISSUE_LICENCE: {"licence": "?", "licence_number": "?"},
}


@dataclass(frozen=True)
class QueueFilter:
    """The work queue's filters; an empty field does not filter."""

    matter: str = ""
    partner: str = ""  # node id of the other office
    mine: str = ""  # a person's name: cases where our office acted through them
    turn: bool = False  # only cases waiting for our office
    overdue: bool = False  # only yellow, red or grey clocks

    def keeps(self, entry: QueueEntry, clock: SlaReport) -> bool:
        if self.matter and entry.header.matter != self.matter:
            return False
        if self.partner and entry.partner != self.partner:
            return False
        if self.mine and self.mine not in entry.facts.staff:
            return False
        if self.turn and not entry.our_turn:
            return False
        return not (self.overdue and clock.colour is Colour.GREEN)


def _deadline_key(case_id: str, clock: SlaReport) -> tuple[int, date, str]:
    """A case's place in the queue (a settled case's is its stored :func:`queue_rank`
    and id: its clock has no deadline)."""
    return (queue_rank(clock), clock.deadline or date.max, case_id)


def queue_view(
    entries: Iterable[QueueEntry],
    *,
    clock_of: Callable[[QueueEntry], SlaReport],
    names: Callable[[CaseHeader], Mapping[str, Any]],
    keep: QueueFilter,
    state: str = "",
    limit: int | None = None,
    settled: Callable[[Callable[[int, str], int | None]], SettledQueue] | None = None,
) -> dict[str, Any]:
    """The work queue: ``{"counts": {state: n}, "total": n, "shown": n, "cases": [...]}``.

    Counts are per state over the cases the filter keeps (``total`` their sum); the
    rows are those of them in ``state`` (every state when empty), sorted by deadline
    (running clocks first, red before yellow before green, then the nearest deadline),
    at most ``limit`` of them; ``shown`` is how many rows the state holds in all.

    ``entries`` are every case, or, with ``settled``, the cases not settled: the
    settled ones the filter keeps are then what ``settled(room)`` gives, their counts
    and their first rows (the store filtered and ordered them by rank and id: a settled
    case's clock has no deadline). ``room(rank, case_id)`` says how many of them the
    page can show when the first of them has that rank and id: ``limit`` less the rows
    in progress that sort before it (None: no limit)."""
    keys: list[tuple[tuple[int, date, str], QueueEntry, SlaReport]] = []
    counts = dict.fromkeys((s.value for s in CaseState), 0)
    total = 0
    for entry in entries:
        clock = clock_of(entry)
        if not keep.keeps(entry, clock):
            continue
        counts[entry.state.value] += 1
        total += 1
        if state and entry.state.value != state:
            continue
        keys.append((_deadline_key(entry.case_id, clock), entry, clock))
    shown = len(keys)
    if settled is not None:

        def room(rank: int, case_id: str) -> int | None:
            if limit is None:
                return None
            first = (rank, date.max, case_id)
            return max(limit - sum(key < first for key, _, _ in keys), 0)

        found = settled(room)
        for name, n in found.counts.items():
            counts[name] += n
            total += n
            if not state or name == state:
                shown += n
        for entry in found.entries:
            clock = clock_of(entry)
            keys.append((_deadline_key(entry.case_id, clock), entry, clock))
    keys.sort(key=lambda triple: triple[0])
    rows = [
        {
            **entry.header.to_json(),
            **names(entry.header),
            "me": entry.me.value,
            "partner": entry.partner,
            "state": entry.state.value,
            "our_turn": entry.our_turn,
            "version": entry.version,
            "opened_at": entry.opened_at.isoformat(),
            "clock": clock.to_json(),
            "open_complaints": entry.facts.open_complaints,
        }
        for _, entry, clock in keys[:limit]
    ]
    return {"counts": counts, "total": total, "shown": shown, "cases": rows}


class MaterialStatus:
    """A material's status on the checklist (stable values the page translates)."""

    RECEIVED = "received"
    MISSING = "missing"
    CORRECTION = "correction"  # the handling office asked for it (补正)


def _named(name: str, material: Material) -> bool:
    wanted = name.strip().casefold()
    return wanted in (material.name_zh.casefold(), material.name_en.casefold())


def checklist(case: Case, materials: Sequence[Material]) -> list[dict[str, Any]]:
    """The agreement's materials for the matter, each received / missing / to correct.

    A material is *received* when the receiving office listed it at hand-in or supplied
    it later, *correction* while an outstanding correction names it, *missing*
    otherwise. Materials listed at hand-in that the standard does not name are added
    at the end (``required: false``), so nothing the applicant handed in is hidden."""
    supplied: list[str] = []
    for entry in case.view.timeline:
        if not entry.applied:
            continue
        details = entry.event.details
        if entry.event.kind is EventKind.SUBMIT:
            supplied += list(details.get("materials", ()))
        elif entry.event.kind is EventKind.SUPPLEMENT:
            supplied += list(details.get("supplied", ()))
    missing = list(case.view.missing)
    out: list[dict[str, Any]] = []
    for m in materials:
        if any(_named(n, m) for n in missing):
            status = MaterialStatus.CORRECTION
        elif any(_named(n, m) for n in supplied):
            status = MaterialStatus.RECEIVED
        else:
            status = MaterialStatus.MISSING
        out.append({**m.to_json(), "required": True, "status": status})
    known = list(materials)
    for name in dict.fromkeys([*supplied, *missing]):
        if not any(_named(name, m) for m in known):
            status = MaterialStatus.CORRECTION if name in missing else MaterialStatus.RECEIVED
            out.append({"name_zh": name, "name_en": name, "required": False, "status": status})
    return out


def available_actions(
    case: Case, now: datetime, granted: Callable[[Action], bool]
) -> list[dict[str, Any]]:
    """The steps our office may take now: allowed by the state machine and, for a step
    that travels to the partner, granted by the agreement (``granted(action)``).

    Each is ``{"event": kind}``; ``request-survey`` lists the offices that may survey,
    ``answer-complaint`` the open complaints (``complaints``: their seq and text)."""
    out: list[dict[str, Any]] = []
    for kind in CONSOLE_ACTIONS:
        if kind is EventKind.ANSWER_COMPLAINT:
            if case.me is Office.HANDLING and case.view.open_complaints:
                answer = {"complaint": case.view.open_complaints[0].seq, "answer": "?"}
                if case.allowed(kind, answer, now) is None:
                    out.append(
                        {
                            "event": kind.value,
                            "complaints": [
                                {"seq": c.seq, "text": c.text, "at": c.at.isoformat()}
                                for c in case.view.open_complaints
                            ],
                        }
                    )
            continue
        if kind is EventKind.REQUEST_SURVEY:
            offices = [
                o.value
                for o in Office
                if case.allowed(kind, {"surveyor": o.value}, now) is None
                and _granted(case, kind, {"surveyor": o.value}, now, granted)
            ]
            if offices:
                out.append({"event": kind.value, "surveyors": offices})
            continue
        probe: Mapping[str, Any] = _PROBE.get(kind, {})
        if case.allowed(kind, probe, now) is None and _granted(case, kind, probe, now, granted):
            out.append({"event": kind.value})
    return out


def _granted(
    case: Case,
    kind: EventKind,
    details: Mapping[str, Any],
    now: datetime,
    granted: Callable[[Action], bool],
) -> bool:
    if case.state is CaseState.RECEIVED and kind is not EventKind.SUBMIT:
        return True  # stays with us: nothing travels to the partner yet
    event = case._next_event(kind, details, now)
    return granted(action_for(event))


def refusals(case: Case, outbox: Iterable[OutboxItem]) -> list[dict[str, Any]]:
    """Our packets of this case the partner refused for good (a rejected receipt) or
    that can never be delivered (dead, other than expired): each with the partner's
    reason code and the step it carried."""
    out = []
    for item in outbox:
        s = item.summary
        if s.case_id != case.header.case_id:
            continue
        if item.state not in (OutboxState.REJECTED, OutboxState.DEAD) or item.reason is None:
            continue
        out.append(
            {
                "packet_id": s.packet_id,
                "action": s.action,
                "partner": s.receiver,
                "state": item.state.value,
                "reason": item.reason,
            }
        )
    return out


def timeline(case: Case) -> list[dict[str, Any]]:
    """Both offices' events in the canonical order, with the office that took each."""
    return [
        {
            "event": e.event.kind.value,
            "origin": e.event.origin.value,
            "node": case.header.node(e.event.origin),
            "ours": e.event.origin is case.me,
            "seq": e.event.seq,
            "at": e.event.at.isoformat(),
            "details": thaw(e.event.details),
            "applied": e.applied,
            "state": e.state.value,
        }
        for e in case.view.timeline
    ]
