"""Property tests of the workflow (hypothesis).

1. A partner's event is accepted exactly when an independent table of the state
   machine (written out below, not imported) allows it — nothing outside the machine.
2. Two copies driven by random legal steps of both offices, with packets delivered over
   a channel that keeps per-direction order (as the relay guarantees) but interleaves
   the directions arbitrarily and redelivers packets, end with identical events and
   timelines; after every step each copy's view, carried one event at a time, is the
   view folded from all its events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from casekit import details_for, header, later
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.cases.errors import IllegalTransition
from relay.cases.model import CaseHeader, CaseState, Event, EventKind, Office
from relay.cases.workflow import Case, Command, OutgoingPacket, Received, transition

K, S = EventKind, CaseState
R, H = Office.RECEIVING, Office.HANDLING
UNDECIDED = {
    S.RECEIVED, S.SUBMITTED, S.CORRECTION_REQUESTED, S.ACCEPTED, S.SURVEY_REQUESTED,
    S.SURVEY_REPORTED,
}  # fmt: skip

# The oracle: (state, acting office) -> kinds allowed (survey/complaint guards aside).
ORACLE: dict[tuple[S, Office], set[K]] = {}
for s in S:
    ORACLE[(s, R)] = set()
    ORACLE[(s, H)] = set()
    if s is not S.RECEIVED:
        ORACLE[(s, R)].add(K.COMPLAIN)
    if s in UNDECIDED:
        ORACLE[(s, R)].add(K.WITHDRAW)
ORACLE[(S.RECEIVED, R)].add(K.SUBMIT)
ORACLE[(S.SUBMITTED, H)].update({K.ACCEPT, K.REJECT, K.REQUEST_CORRECTION})
ORACLE[(S.CORRECTION_REQUESTED, R)].add(K.SUPPLEMENT)
ORACLE[(S.ACCEPTED, H)].update({K.REQUEST_SURVEY, K.DECIDE})
ORACLE[(S.SURVEY_REPORTED, H)].add(K.DECIDE)
ORACLE[(S.APPROVED, H)].add(K.ISSUE_LICENCE)
ORACLE[(S.LICENCE_ISSUED, R)].add(K.DELIVER)
ORACLE[(S.DELIVERED, R)].add(K.CONCLUDE)
ORACLE[(S.DENIED, R)].add(K.CONCLUDE)
ORACLE[(S.CONCLUDED, R)].add(K.RATE)


def oracle_allows(case: Case, office: Office, kind: K) -> bool:
    view = case.view
    if kind is K.SURVEY_REPORT:
        return view.state is S.SURVEY_REQUESTED and view.surveyor is office
    if kind is K.ANSWER_COMPLAINT:
        return office is H and view.state is not S.RECEIVED and bool(view.open_complaints)
    if kind is K.DECIDE and case.header.survey_required and view.state is S.ACCEPTED:
        return False
    if kind is K.RATE and view.rating is not None:
        return False
    return kind in ORACLE[(view.state, office)]


@dataclass
class Copies:
    r: Case
    h: Case | None = None
    to_h: list[OutgoingPacket] = field(default_factory=list)
    to_r: list[OutgoingPacket] = field(default_factory=list)
    sent_h: list[OutgoingPacket] = field(default_factory=list)  # already delivered
    sent_r: list[OutgoingPacket] = field(default_factory=list)
    clock: int = 0


def receive(case: Case | None, packet: OutgoingPacket, minute: int) -> Case:
    if case is None:
        case = Case(CaseHeader.from_json(packet.content["header"]), H)
    new, out = transition(case, Received(Event.from_content(packet.content)), later(minute))
    assert out == ()
    return new


def step(c: Copies, move: tuple[str, int]) -> None:
    what, choice = move
    c.clock += 1
    if what in ("r", "h"):
        case = c.r if what == "r" else c.h
        if case is None:
            return
        office = R if what == "r" else H
        legal = [k for k in K if oracle_allows(case, office, k)]
        if not legal:
            return
        kind = legal[choice % len(legal)]
        details = dict(details_for(kind, case, choice))
        if choice % 4:  # the person who took it, as the console names them (some steps)
            details["staff"] = f"staff-{choice % 3}"
        new, packets = transition(case, Command(kind, details), later(c.clock))
        if what == "r":
            c.r = new
            c.to_h.extend(packets)
        else:
            c.h = new
            c.to_r.extend(packets)
    elif what == "deliver-h" and c.to_h:
        packet = c.to_h.pop(0)
        c.h = receive(c.h, packet, c.clock)
        c.sent_h.append(packet)
    elif what == "deliver-r" and c.to_r:
        packet = c.to_r.pop(0)
        c.r = receive(c.r, packet, c.clock)
        c.sent_r.append(packet)
    elif what == "dup-h" and c.sent_h:
        before = c.h
        c.h = receive(c.h, c.sent_h[choice % len(c.sent_h)], c.clock)
        assert c.h == before
    elif what == "dup-r" and c.sent_r:
        before = c.r
        c.r = receive(c.r, c.sent_r[choice % len(c.sent_r)], c.clock)
        assert c.r == before


def folded_whole(case: Case | None) -> None:
    """A copy carried step by step (``Case.with_event``) is the copy folded whole."""
    if case is not None:
        whole = Case(case.header, case.me, case.events)
        assert case.view == whole.view
        assert [case.count(o) for o in Office] == [whole.count(o) for o in Office]
        # what the fold carries for the queue and the clock facts is what the events say
        view = case.view
        assert view.open_count == len(view.open_complaints)
        assert view.oldest_open == min((c.at for c in view.open_complaints), default=None)
        assert view.last_at == max((e.at for e in case.events), default=None)
        named = [
            (e.origin, e.details["staff"])
            for e, applied in ((t.event, t.applied) for t in view.timeline)
            if applied and "staff" in e.details
        ]
        assert view.staff == tuple(dict.fromkeys(named))  # fmt: skip


def timeline(case: Case) -> list[tuple[object, ...]]:
    return [
        (e.event.kind, e.event.origin, e.event.seq, e.applied, e.state) for e in case.view.timeline
    ]


MOVES = st.tuples(
    st.sampled_from(["r", "h", "r", "h", "deliver-h", "deliver-r", "dup-h", "dup-r"]),
    st.integers(0, 11),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(MOVES, max_size=60), survey=st.booleans())
def test_both_copies_agree_after_any_interleaving_with_duplicates(moves, survey):
    c = Copies(Case(header(survey=survey), R))
    c.r, first = transition(c.r, Command(K.SUBMIT, details_for(K.SUBMIT, c.r)), later(0))
    c.to_h.extend(first)
    for move in moves:
        step(c, move)
        folded_whole(c.r)
        folded_whole(c.h)
    while c.to_h or c.to_r:  # drain what is still on the wire
        step(c, ("deliver-h", 0))
        step(c, ("deliver-r", 0))
    assert c.h is not None
    assert c.r.events == c.h.events
    assert timeline(c.r) == timeline(c.h)
    assert c.r.view == c.h.view


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    moves=st.lists(MOVES, max_size=40),
    kind=st.sampled_from(list(K)),
    choice=st.integers(0, 11),
    survey=st.booleans(),
)
def test_a_partner_event_is_accepted_exactly_when_the_state_machine_allows_it(
    moves, kind, choice, survey
):
    c = Copies(Case(header(survey=survey), R))
    c.r, first = transition(c.r, Command(K.SUBMIT, details_for(K.SUBMIT, c.r)), later(0))
    c.to_h.extend(first)
    for move in moves:
        step(c, move)
    while c.to_h or c.to_r:
        step(c, ("deliver-h", 0))
        step(c, ("deliver-r", 0))
    assert c.h is not None
    # forge the handling office's next event and offer it to the receiving copy (and
    # the other way round): accepted iff the oracle allows it in that (shared) state
    for me, partner, partner_office in ((c.r, c.h, H), (c.h, c.r, R)):
        details = details_for(kind, partner, choice)
        forged = Event(
            kind,
            partner_office,
            partner.count(partner_office) + 1,
            partner.count(partner_office.other),
            later(c.clock + 1),
            details,
        )
        allowed = oracle_allows(me, partner_office, kind)
        try:
            new, _ = transition(me, Received(forged), later(c.clock + 1))
        except IllegalTransition:
            assert not allowed, (kind, me.state)
        else:
            assert allowed, (kind, me.state)
            assert new.events[-1] == forged
