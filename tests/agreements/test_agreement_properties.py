"""Property tests: the indexed decision agrees with a brute-force reference evaluator.

The reference is written independently from the action table in docs/protocol.md §6:
it *enumerates* every (from, to, action, mode) a clause grants, and scans every
agreement and every lifecycle snapshot linearly, without the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from agreement_support import T0, active, agreement, clause, event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Permit, Reason, Request, authorize
from agreements.errors import IllegalTransition
from agreements.events import EventKind
from agreements.lifecycle import Lifecycle, State, apply, start
from agreements.model import Agreement, MatterClause, ServiceMode

NODES = ("110101", "110102", "110103", "110104", "110105")
MATTERS = ("m1", "m2", "m3")
DESK = {ServiceMode.PROXY_RECEIPT, ServiceMode.JOINT}
HOUR = timedelta(hours=1)
# candidate instants: a few hours around the start of a one-day window
TIMES = tuple(T0 + HOUR * k for k in range(-2, 30))

A = Action
RECEIVER_TO_HANDLER = {
    A.SUBMIT: DESK,
    A.SUPPLEMENT: DESK,
    A.WITHDRAW: DESK,
    A.DELIVER: set(ServiceMode),
    A.STATUS_UPDATE: set(ServiceMode),
    A.RATING: set(ServiceMode),
    A.COMPLAINT: set(ServiceMode),
}
HANDLER_TO_RECEIVER = {
    A.ACCEPT: DESK,
    A.REJECT: DESK,
    A.REQUEST_CORRECTION: DESK,
    A.DECIDE: DESK,
    A.STATUS_UPDATE: set(ServiceMode),
}
CO_HANDLERS = (
    A.SUBMIT,
    A.SUPPLEMENT,
    A.WITHDRAW,
    A.ACCEPT,
    A.REJECT,
    A.REQUEST_CORRECTION,
    A.STATUS_UPDATE,
)


def granted(c: MatterClause) -> Iterator[tuple[str, str, Action, ServiceMode]]:
    """Every (from, to, action, mode) the clause grants, by enumeration."""
    r = c.roles
    for mode in c.modes:
        for receiver, handlers in r.receive_for.items():
            for h in handlers:
                for action, modes in RECEIVER_TO_HANDLER.items():
                    if mode in modes:
                        yield receiver, h, action, mode
                for action, modes in HANDLER_TO_RECEIVER.items():
                    if mode in modes:
                        yield h, receiver, action, mode
                if h in r.issue:
                    yield h, receiver, A.ISSUE_LICENCE, mode
        for surveyor, handlers in r.survey_for.items():
            for h in handlers:
                yield h, surveyor, A.REQUEST_SURVEY, mode
                yield h, surveyor, A.STATUS_UPDATE, mode
                yield surveyor, h, A.SURVEY_REPORT, mode
                yield surveyor, h, A.STATUS_UPDATE, mode
        if mode is ServiceMode.JOINT:
            for h1 in r.handle:
                for h2 in r.handle:
                    if h1 != h2:
                        for action in CO_HANDLERS:
                            yield h1, h2, action, mode


def reference_permits(lifecycles: list[Lifecycle], req: Request, at: datetime) -> bool:
    for lc in lifecycles:
        ag = lc.agreement
        snap = None
        for s in lc.snapshots:
            if s.at <= at:
                snap = s
        if snap is None or snap.state is not State.ACTIVE:
            continue
        if not (ag.valid_from <= at < ag.valid_until):
            continue
        if req.sender in snap.withdrawn or req.recipient in snap.withdrawn:
            continue
        c = ag.clauses.get(req.matter)
        if c is None:
            continue
        for sender, recipient, action, mode in granted(c):
            if (sender, recipient, action) == (req.sender, req.recipient, req.action) and (
                req.mode is None or req.mode is mode
            ):
                return True
    return False


MASKS = st.integers(0, 2**8 - 1)


def subset(items: list[str] | tuple[str, ...], mask: int) -> set[str]:
    return {x for i, x in enumerate(sorted(items)) if mask >> i & 1}


@st.composite
def clauses(draw: st.DrawFn, parties: list[str], matter: str) -> MatterClause:
    handle = subset(parties, draw(MASKS)) or {parties[0]}
    receive_for = {
        p: subset(sorted(handle - {p}), draw(MASKS)) for p in subset(parties, draw(MASKS))
    }
    survey_for = {
        p: subset(sorted(handle - {p}), draw(MASKS)) for p in subset(parties, draw(MASKS))
    }
    modes = [m for i, m in enumerate(ServiceMode) if draw(MASKS) >> i & 1] or [ServiceMode.ONLINE]
    return clause(
        matter,
        handle=handle,
        receive_for=receive_for,
        survey_for=survey_for,
        issue=subset(sorted(handle), draw(MASKS)),
        modes=modes,
    )


@st.composite
def lifecycles(draw: st.DrawFn, number: int) -> Lifecycle:
    parties = sorted(subset(NODES, draw(st.integers(0, 31))) | {NODES[number % 2], NODES[2]})
    matters = subset(MATTERS, draw(st.integers(0, 7))) or {MATTERS[0]}
    cs = [draw(clauses(parties, m)) for m in sorted(matters)]
    start_at = draw(st.sampled_from(TIMES[:10]))
    ag: Agreement = agreement(
        parties,
        cs,
        aid=f"ag-{number}",
        valid_from=start_at,
        valid_until=start_at + HOUR * draw(st.integers(1, 24)),
    )
    lc = start(ag, TIMES[0])
    first = parties[0]
    at = TIMES[draw(st.integers(0, 6))]
    signing = draw(st.sampled_from(["none", "proposed", *["signed"] * 8]))
    if signing != "none":
        lc = apply(lc, event(ag, EventKind.PROPOSE, first, at))
    if signing == "signed":
        lc = apply(lc, event(ag, EventKind.ACTIVATE, first, at), signed_by=ag.party_ids)
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        EventKind.SUSPEND,
                        EventKind.RESUME,
                        EventKind.WITHDRAW,
                        EventKind.EXPIRE,
                        EventKind.ACTIVATE,
                    ]
                ),
                st.sampled_from(parties),
                st.integers(0, 4),
            ),
            max_size=4,
        )
    )
    for kind, actor, gap in steps:
        at = at + HOUR * gap
        try:
            lc = apply(lc, event(ag, kind, actor, at), signed_by=ag.party_ids - {actor})
        except IllegalTransition:
            continue
    return lc


requests = st.builds(
    Request,
    st.sampled_from(NODES),
    st.sampled_from(NODES),
    st.sampled_from((*MATTERS, "m-unknown")),
    st.sampled_from(list(Action)),
    st.one_of(st.none(), st.sampled_from(list(ServiceMode))),
)


@st.composite
def worlds(draw: st.DrawFn) -> list[Lifecycle]:
    n = draw(st.integers(1, 3))
    return [draw(lifecycles(i)) for i in range(n)]


def near_misses(lc: Lifecycle) -> list[Request]:
    """Requests some clause of ``lc`` grants, to be used as is or with one field changed."""
    out = []
    for c in lc.agreement.clauses.values():
        for sender, recipient, action, mode in granted(c):
            out.append(Request(sender, recipient, c.matter, action, mode))
    return out


@st.composite
def queries(draw: st.DrawFn, world: list[Lifecycle]) -> tuple[Request, datetime]:
    if not world or draw(st.integers(0, 4)) == 0:
        return draw(requests), draw(st.sampled_from(TIMES))
    lc = draw(st.sampled_from(world))
    ag = lc.agreement
    if draw(st.integers(0, 3)):
        hours = int((ag.valid_until - ag.valid_from) / HOUR)
        at = ag.valid_from + HOUR * draw(st.integers(0, hours - 1))
    else:
        at = draw(st.sampled_from(TIMES))
    close = near_misses(lc)
    if not close:
        return draw(requests), at
    req = draw(st.sampled_from(close))
    change = draw(st.integers(0, 6))
    if change == 0:
        req = Request(draw(st.sampled_from(NODES)), req.recipient, req.matter, req.action, req.mode)
    elif change == 1:
        req = Request(req.sender, draw(st.sampled_from(NODES)), req.matter, req.action, req.mode)
    elif change == 2:
        req = Request(
            req.sender, req.recipient, req.matter, draw(st.sampled_from(list(Action))), req.mode
        )
    elif change == 3:
        mode = draw(st.one_of(st.none(), st.sampled_from(list(ServiceMode))))
        req = Request(req.sender, req.recipient, req.matter, req.action, mode)
    return req, at


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_decision_equals_brute_force_reference(world, data) -> None:
    index = AgreementIndex(world)
    for _ in range(20):
        req, at = data.draw(queries(world))
        decision = authorize(index, req, at)
        expected = reference_permits(world, req, at)
        assert isinstance(decision, Permit) == expected, (req, at, decision)
        if isinstance(decision, Permit):
            ref = decision.clause
            granting = [lc for lc in world if lc.agreement.ref == (ref.agreement_id, ref.version)]
            assert reference_permits(granting, req, at)  # the named clause itself grants it


@settings(max_examples=100, deadline=None)
@given(worlds(), requests, st.sampled_from(TIMES))
def test_no_candidate_agreement_means_no_agreement(world, req, at) -> None:
    decision = authorize(AgreementIndex(world), req, at)
    names_both = any(
        {req.sender, req.recipient} <= lc.agreement.party_ids and req.sender != req.recipient
        for lc in world
    )
    if not names_both:
        assert decision == Deny(Reason.NO_AGREEMENT)
    else:
        assert not (isinstance(decision, Deny) and decision.reason is Reason.NO_AGREEMENT)


SUBMIT_AB = Request("110101", "110102", "m1", Action.SUBMIT)
SIMPLE = agreement(
    ["110101", "110102", "110103"],
    [clause("m1", handle=["110102"], receive_for={"110101": ["110102"]})],
)
instants = st.integers(0, 10**6).map(lambda s: T0 + timedelta(days=30, seconds=s))


@given(instants, instants)
def test_suspension_takes_effect_at_its_instant_and_not_before(effective, query) -> None:
    lc = apply(active(SIMPLE), event(SIMPLE, EventKind.SUSPEND, "110103", effective))
    decision = authorize(AgreementIndex([lc]), SUBMIT_AB, query)
    if query < effective:
        assert isinstance(decision, Permit)
    else:
        assert decision == Deny(Reason.SUSPENDED, SIMPLE.ref)


@given(instants, instants)
def test_withdrawal_takes_effect_at_its_instant_and_not_before(effective, query) -> None:
    lc = apply(active(SIMPLE), event(SIMPLE, EventKind.WITHDRAW, "110101", effective))
    decision = authorize(AgreementIndex([lc]), SUBMIT_AB, query)
    if query < effective:
        assert isinstance(decision, Permit)
    else:
        assert decision == Deny(Reason.PARTY_WITHDRAWN, SIMPLE.ref)


@given(instants, instants)
def test_a_third_party_withdrawal_does_not_stop_the_others(effective, query) -> None:
    lc = apply(active(SIMPLE), event(SIMPLE, EventKind.WITHDRAW, "110103", effective))
    assert isinstance(authorize(AgreementIndex([lc]), SUBMIT_AB, query), Permit)
