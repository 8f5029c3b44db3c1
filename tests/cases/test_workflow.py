"""The case state machine: happy paths, refusals with stable codes, packets and actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from casekit import HANDLING, RECEIVING, T0, details_for, header, later

from agreements.actions import Action
from relay.cases.errors import (
    ConflictingEvent,
    IllegalTransition,
    MalformedEvent,
    OutOfOrder,
)
from relay.cases.model import CaseHeader, CaseState, Event, EventKind, Office
from relay.cases.workflow import Case, Command, Received, transition

K = EventKind


def act(case: Case, kind: EventKind, minutes: int, choice: int = 0):
    return transition(case, Command(kind, details_for(kind, case, choice)), later(minutes))


def deliver(case: Case | None, packets, minutes: int = 0) -> Case:
    for packet in packets:
        event = Event.from_content(packet.content)
        if case is None:
            case = Case(CaseHeader.from_json(packet.content["header"]), Office.HANDLING)
        case, out = transition(case, Received(event), later(minutes))
        assert out == ()
    assert case is not None
    return case


def test_full_case_converges_on_both_copies_and_maps_every_step_to_an_action():
    r = Case(header(), Office.RECEIVING)
    h = None
    actions = []
    script = [
        ("r", K.SUBMIT), ("h", K.REQUEST_CORRECTION), ("r", K.SUPPLEMENT), ("h", K.ACCEPT),
        ("h", K.DECIDE), ("h", K.ISSUE_LICENCE), ("r", K.DELIVER), ("r", K.CONCLUDE),
        ("r", K.RATE),
    ]  # fmt: skip
    for i, (who, kind) in enumerate(script):
        if who == "r":
            r, packets = act(r, kind, i)
            h = deliver(h, packets, i)
        else:
            assert h is not None
            h, packets = act(h, kind, i)
            r = deliver(r, packets, i)
        assert len(packets) == 1
        actions.append(packets[0].action)
        assert packets[0].to == (HANDLING if who == "r" else RECEIVING)
    assert h is not None
    assert r.events == h.events
    assert r.state is h.state is CaseState.CONCLUDED
    assert actions == [
        Action.SUBMIT, Action.REQUEST_CORRECTION, Action.SUPPLEMENT, Action.ACCEPT,
        Action.DECIDE, Action.ISSUE_LICENCE, Action.DELIVER, Action.STATUS_UPDATE,
        Action.RATING,
    ]  # fmt: skip
    assert r.view.licence_number == "JY32098200001"
    assert r.view.rating is not None
    assert r.view.rating["rating"] == "good"


def test_survey_required_blocks_decision_until_the_survey_is_reported():
    h = deliver(None, act(Case(header(survey=True), Office.RECEIVING), K.SUBMIT, 0)[1])
    h, _ = act(h, K.ACCEPT, 1)
    with pytest.raises(IllegalTransition) as info:
        act(h, K.DECIDE, 2)
    assert info.value.code == "survey-required"
    h, packets = act(h, K.REQUEST_SURVEY, 3, choice=1)  # the handling office surveys itself
    assert packets[0].action is Action.STATUS_UPDATE
    h, packets = act(h, K.SURVEY_REPORT, 4)
    assert packets[0].action is Action.STATUS_UPDATE
    h, packets = act(h, K.DECIDE, 5)
    assert h.state is CaseState.APPROVED
    assert packets[0].action is Action.DECIDE


def test_delegated_survey_travels_as_request_survey_and_survey_report():
    r, packets = act(Case(header(survey=True), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, packets)
    h, packets = act(h, K.ACCEPT, 1)
    r = deliver(r, packets)
    h, packets = act(h, K.REQUEST_SURVEY, 2, choice=0)  # delegated to the receiving office
    assert packets[0].action is Action.REQUEST_SURVEY
    r = deliver(r, packets)
    with pytest.raises(IllegalTransition) as info:
        act(h, K.SURVEY_REPORT, 3)
    assert info.value.code == "wrong-office"
    r, packets = act(r, K.SURVEY_REPORT, 3)
    assert packets[0].action is Action.SURVEY_REPORT
    h = deliver(h, packets)
    assert h.state is r.state is CaseState.SURVEY_REPORTED


@pytest.mark.parametrize(
    ("kind", "code"),
    [(K.ACCEPT, "wrong-office"), (K.DELIVER, "wrong-state"), (K.RATE, "wrong-state")],
)
def test_refused_local_commands_carry_stable_codes(kind, code):
    r = Case(header(), Office.RECEIVING)
    with pytest.raises(IllegalTransition) as info:
        act(r, kind, 0)
    assert info.value.code == code


def test_withdrawal_before_submission_sends_nothing_and_after_decision_is_refused():
    r, packets = act(Case(header(), Office.RECEIVING), K.WITHDRAW, 0)
    assert packets == ()
    assert r.state is CaseState.WITHDRAWN
    r, packets = act(Case(header(), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, packets)
    h, packets = act(h, K.ACCEPT, 1)
    h, packets2 = act(h, K.DECIDE, 2)
    r = deliver(r, packets + packets2)
    with pytest.raises(IllegalTransition):
        act(r, K.WITHDRAW, 3)


def test_concurrent_withdrawal_and_decision_converge_with_the_withdrawal_void():
    r, packets = act(Case(header(), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, packets)
    h, p_accept = act(h, K.ACCEPT, 1)
    r = deliver(r, p_accept)
    h, p_decide = act(h, K.DECIDE, 2)  # decision and withdrawal cross on the wire
    r, p_withdraw = act(r, K.WITHDRAW, 2)
    r = deliver(r, p_decide)
    h = deliver(h, p_withdraw)
    assert r.events == h.events
    assert r.state is h.state is CaseState.APPROVED
    assert [e.applied for e in r.view.timeline] == [True, True, True, False]


def test_duplicates_are_idempotent_and_gaps_or_rewrites_are_refused():
    r, p1 = act(Case(header(), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, p1)
    assert deliver(h, p1) == h  # the same packet again changes nothing
    h, p2 = act(h, K.REQUEST_CORRECTION, 1)
    r = deliver(r, p2)
    r, p3 = act(r, K.SUPPLEMENT, 3)
    gap = dict(p3[0].content, seq=5)
    with pytest.raises(OutOfOrder):
        transition(h, Received(Event.from_content(gap)), later(5))
    h = deliver(h, p3)
    rewritten = dict(p3[0].content, details={"supplied": ["别的"]})
    with pytest.raises(ConflictingEvent):
        transition(h, Received(Event.from_content(rewritten)), later(6))
    assert r.events == h.events


def test_partner_claiming_unseen_events_is_refused_with_bad_basis():
    r, p1 = act(Case(header(), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, p1)
    h, p2 = act(h, K.ACCEPT, 1)
    forged = dict(p2[0].content, seen=2)
    with pytest.raises(IllegalTransition) as info:
        transition(r, Received(Event.from_content(forged)), later(2))
    assert info.value.code == "bad-basis"


def test_malformed_details_and_content_are_refused():
    with pytest.raises(MalformedEvent):
        Event(K.REJECT, Office.HANDLING, 1, 1, T0, {})
    with pytest.raises(MalformedEvent):
        Event(K.DECIDE, Office.HANDLING, 1, 1, T0, {"decision": "maybe"})
    with pytest.raises(MalformedEvent):
        Event(K.DECIDE, Office.HANDLING, 1, 1, T0, {"decision": "deny"})  # no reason
    with pytest.raises(MalformedEvent):
        Event(K.ACCEPT, Office.HANDLING, 1, 1, T0, {"secret": "x"})
    with pytest.raises(MalformedEvent):
        Event.from_content({"format": "other"})
    with pytest.raises(MalformedEvent):
        CaseHeader("x", "m", "proxy_receipt", RECEIVING, RECEIVING, 20, False)


def test_complaint_answer_must_name_an_open_complaint():
    r, p1 = act(Case(header(), Office.RECEIVING), K.SUBMIT, 0)
    h = deliver(None, p1)
    with pytest.raises(IllegalTransition) as info:
        act(h, K.ANSWER_COMPLAINT, 1)
    assert info.value.code == "no-open-complaint"
    r, p2 = act(r, K.COMPLAIN, 2)
    assert p2[0].action is Action.COMPLAINT
    h = deliver(h, p2)
    h, p3 = act(h, K.ANSWER_COMPLAINT, 3)
    r = deliver(r, p3)
    assert r.view.complaints[0].answer == "已协调办理"
    assert r.view.open_complaints == ()


def test_event_times_are_whole_utc_seconds():
    e = Event(K.ACCEPT, Office.HANDLING, 1, 1, T0 + timedelta(microseconds=5))
    assert e.at == T0
    assert Event.from_content(e.to_content(header())) == e
