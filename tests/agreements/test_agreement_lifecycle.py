"""The lifecycle state machine: legal paths, refused transitions, history by instant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from agreement_support import T0, T_END, active, agreement, clause, event

from agreements.errors import IllegalTransition
from agreements.events import Event, EventKind, parse_event
from agreements.lifecycle import State, apply, from_signatures, start, supersede_check

A, B, C = "420106", "320982", "371422"
AG = agreement([A, B, C], [clause("m", handle=[B], receive_for={A: [B]})])
T1 = T0 + timedelta(days=1)


def test_draft_proposed_active_path() -> None:
    lc = start(AG, T0)
    assert lc.state is State.DRAFT
    lc = apply(lc, event(AG, EventKind.PROPOSE, A, T0))
    assert lc.state is State.PROPOSED
    lc = apply(lc, event(AG, EventKind.ACTIVATE, B, T1), signed_by=AG.party_ids)
    assert lc.state is State.ACTIVE
    assert lc.state_at(T1 - timedelta(seconds=1)) is State.PROPOSED
    assert lc.state_at(T_END) is State.EXPIRED


def test_activation_needs_every_party_signature() -> None:
    lc = apply(start(AG, T0), event(AG, EventKind.PROPOSE, A, T0))
    with pytest.raises(IllegalTransition, match=C):
        apply(lc, event(AG, EventKind.ACTIVATE, A, T1), signed_by=frozenset({A, B}))


@pytest.mark.parametrize(
    ("kind", "actor"),
    [
        (EventKind.ACTIVATE, A),  # draft cannot be activated
        (EventKind.SUSPEND, A),
        (EventKind.RESUME, A),
        (EventKind.WITHDRAW, A),
        (EventKind.SUPERSEDE, A),
        (EventKind.EXPIRE, A),  # window not over
        (EventKind.PROPOSE, "110101"),  # not a party
    ],
)
def test_illegal_transitions_from_draft_are_refused(kind: EventKind, actor: str) -> None:
    with pytest.raises(IllegalTransition):
        apply(start(AG, T0), event(AG, kind, actor, T1, superseded_by=2), signed_by=AG.party_ids)


def test_events_must_come_in_time_order() -> None:
    lc = apply(active(AG), event(AG, EventKind.SUSPEND, A, T1))
    with pytest.raises(IllegalTransition, match="time order"):
        apply(lc, event(AG, EventKind.RESUME, A, T1 - timedelta(seconds=1)))


def test_only_the_suspending_party_resumes() -> None:
    lc = apply(active(AG), event(AG, EventKind.SUSPEND, A, T1))
    with pytest.raises(IllegalTransition):
        apply(lc, event(AG, EventKind.RESUME, B, T1))
    assert apply(lc, event(AG, EventKind.RESUME, A, T1)).state is State.ACTIVE


def test_withdrawn_party_can_no_longer_act() -> None:
    lc = apply(active(AG), event(AG, EventKind.WITHDRAW, C, T1))
    assert lc.state is State.ACTIVE
    assert lc.remaining_parties() == {A, B}
    with pytest.raises(IllegalTransition, match="withdrawn"):
        apply(lc, event(AG, EventKind.SUSPEND, C, T1))
    ended = apply(lc, event(AG, EventKind.WITHDRAW, A, T1))
    assert ended.state is State.WITHDRAWN  # fewer than two parties remain
    with pytest.raises(IllegalTransition, match="ended"):
        apply(ended, event(AG, EventKind.SUSPEND, B, T1))


def test_withdrawing_suspender_lifts_its_suspension() -> None:
    lc = apply(active(AG), event(AG, EventKind.SUSPEND, C, T1))
    lc = apply(lc, event(AG, EventKind.WITHDRAW, C, T1))
    assert lc.state is State.ACTIVE


def test_event_for_other_document_bytes_is_refused() -> None:
    other = agreement([A, B, C], [clause("m", handle=[C], receive_for={A: [C]})])
    with pytest.raises(IllegalTransition, match="document bytes"):
        apply(active(AG), event(other, EventKind.SUSPEND, A, T1))


def test_supersede_needs_a_fully_signed_successor() -> None:
    v2 = agreement([A, B], [clause("m", handle=[B], receive_for={A: [B]})], version=2, supersedes=1)
    unsigned = apply(start(v2, T0), event(v2, EventKind.PROPOSE, A, T0))
    with pytest.raises(IllegalTransition, match="not active"):
        supersede_check(active(AG), unsigned)
    supersede_check(active(AG), active(v2))
    old = apply(active(AG), event(AG, EventKind.SUPERSEDE, A, T1, superseded_by=2))
    assert old.state is State.SUPERSEDED
    assert old.state_at(T1 - timedelta(seconds=1)) is State.ACTIVE


def test_lifecycle_from_signatures_is_proposed_until_the_last_signature() -> None:
    partial = from_signatures(AG, {A: T0, B: T1})
    assert partial.state is State.PROPOSED
    full = from_signatures(AG, {A: T0, B: T1, C: T1 + timedelta(hours=1)})
    assert full.state is State.ACTIVE
    assert full.state_at(T1) is State.PROPOSED
    assert from_signatures(AG, {}).state is State.DRAFT


def test_event_payload_round_trips() -> None:
    ev = Event.for_agreement(AG, EventKind.SUSPEND, party=A, at=T1, reason="系统维护")
    assert parse_event(ev.payload()) == ev
