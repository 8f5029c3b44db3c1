"""The survey state machine: checked transitions, time passed in, gaps recorded."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from remote_survey.entries import Gap, epoch_ms
from remote_survey.errors import InvalidSession, InvalidTransition
from remote_survey.session import (
    Event,
    Interruption,
    Participant,
    Role,
    SurveyPlan,
    SurveyState,
    TimeWindow,
    schedule,
    transition,
)


def _started(plan: SurveyPlan) -> tuple[object, datetime]:
    at = plan.window.start + timedelta(minutes=5)
    session, effects = transition(schedule(plan), Event.START, at)
    assert effects == ()
    return session, at


def test_start_complete_happy_path(plan: SurveyPlan) -> None:
    session = schedule(plan)
    assert session.state is SurveyState.SCHEDULED
    at = plan.window.start + timedelta(minutes=1)
    live, _ = transition(session, Event.START, at)
    done, effects = transition(live, Event.COMPLETE, at + timedelta(minutes=20))
    assert (live.state, done.state) == (SurveyState.LIVE, SurveyState.COMPLETED)
    assert done.started_at == at
    assert done.ended_at == at + timedelta(minutes=20)
    assert effects == ()
    assert [c.event for c in done.history] == [Event.START, Event.COMPLETE]
    assert session.state is SurveyState.SCHEDULED  # the input is never mutated


def test_drop_and_rejoin_records_the_gap_as_evidence(plan: SurveyPlan) -> None:
    session, at = _started(plan)
    dropped, effects = transition(session, Event.DROP, at + timedelta(seconds=30))
    assert dropped.state is SurveyState.INTERRUPTED
    assert effects == ()
    assert dropped.interruptions == (Interruption(at + timedelta(seconds=30)),)
    back, effects = transition(dropped, Event.REJOIN, at + timedelta(seconds=47))
    assert back.state is SurveyState.LIVE
    assert back.interruptions == (
        Interruption(at + timedelta(seconds=30), at + timedelta(seconds=47)),
    )
    expected = Gap(epoch_ms(at) + 30_000, epoch_ms(at) + 47_000)
    assert effects == (expected,)


def test_second_interruption_is_recorded_separately(plan: SurveyPlan) -> None:
    session, at = _started(plan)
    for offset in (10, 40):
        session, _ = transition(session, Event.DROP, at + timedelta(seconds=offset))
        session, gaps = transition(session, Event.REJOIN, at + timedelta(seconds=offset + 5))
        assert len(gaps) == 1
    assert len(session.interruptions) == 2
    assert all(i.end is not None for i in session.interruptions)


@pytest.mark.parametrize(
    ("event", "final"),
    [(Event.ABANDON, SurveyState.ABANDONED), (Event.CONVERT, SurveyState.CONVERTED_TO_ONSITE)],
)
def test_ending_an_interrupted_session_closes_the_gap(
    plan: SurveyPlan, event: Event, final: SurveyState
) -> None:
    session, at = _started(plan)
    session, _ = transition(session, Event.DROP, at + timedelta(seconds=10))
    ended, effects = transition(session, event, at + timedelta(minutes=3))
    assert ended.state is final
    assert ended.state.is_final
    assert effects == (Gap(epoch_ms(at) + 10_000, epoch_ms(at) + 180_000),)
    assert ended.ended_at == at + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("state_events", "event"),
    [
        ((), Event.DROP),
        ((), Event.REJOIN),
        ((), Event.COMPLETE),
        ((Event.START,), Event.START),
        ((Event.START,), Event.REJOIN),
        ((Event.START, Event.DROP), Event.COMPLETE),
        ((Event.START, Event.DROP), Event.DROP),
        ((Event.START, Event.COMPLETE), Event.DROP),
        ((Event.START, Event.COMPLETE), Event.ABANDON),
        ((Event.ABANDON,), Event.START),
        ((Event.CONVERT,), Event.START),
    ],
)
def test_refused_transitions_raise_and_change_nothing(
    plan: SurveyPlan, state_events: tuple[Event, ...], event: Event
) -> None:
    session = schedule(plan)
    at = plan.window.start + timedelta(minutes=1)
    for e in state_events:
        session, _ = transition(session, e, at)
    with pytest.raises(InvalidTransition):
        transition(session, event, at + timedelta(seconds=1))


def test_start_outside_the_window_is_refused(plan: SurveyPlan) -> None:
    with pytest.raises(InvalidTransition, match="outside the window"):
        transition(schedule(plan), Event.START, plan.window.start - timedelta(seconds=1))
    with pytest.raises(InvalidTransition, match="outside the window"):
        transition(schedule(plan), Event.START, plan.window.end + timedelta(seconds=1))


def test_time_going_backwards_is_refused(plan: SurveyPlan) -> None:
    session, at = _started(plan)
    with pytest.raises(InvalidTransition, match="earlier"):
        transition(session, Event.DROP, at - timedelta(seconds=1))


def test_naive_time_is_refused(plan: SurveyPlan) -> None:
    with pytest.raises(InvalidTransition, match="timezone"):
        transition(schedule(plan), Event.START, plan.window.start.replace(tzinfo=None))


def test_roles_of_participants(plan: SurveyPlan) -> None:
    assert plan.role_of("insp-2") is Role.INSPECTOR
    assert plan.role_of("site-1") is Role.SITE
    assert plan.role_of("obs-1") is Role.OBSERVER
    assert plan.role_of("stranger") is None


@pytest.mark.parametrize(
    "change",
    [
        {"surveying_office": "42010"},
        {"requesting_office": "000000"},
        {"inspectors": ()},
        {"checklist": ()},
        {"observers": (Participant("insp-1", "重复的人"),)},
        {"session_id": "has space"},
    ],
)
def test_invalid_plans_cannot_be_built(plan: SurveyPlan, change: dict[str, object]) -> None:
    with pytest.raises(InvalidSession):
        replace(plan, **change)


def test_window_must_be_aware_and_ordered(plan: SurveyPlan) -> None:
    with pytest.raises(InvalidSession):
        TimeWindow(plan.window.end, plan.window.start)
    with pytest.raises(InvalidSession):
        TimeWindow(plan.window.start.replace(tzinfo=None), plan.window.end.replace(tzinfo=None))
