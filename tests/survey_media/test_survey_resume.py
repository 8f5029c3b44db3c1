"""A node restart during a survey resumes it: the same links and devices, a gap in the
chain for the time it was down, the numbering of snapshots and segments continued, and a
report that verifies; a session file or chain that is damaged is left alone."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import pytest
from media_support import World, make_plan, make_world

from remote_survey.entries import Gap, Segment
from remote_survey.errors import JoinRefused
from remote_survey.persist import STATE_FILE
from remote_survey.report import Answer, ChecklistAnswer, Verdict, verify_report
from remote_survey.room import REQUEST_FILE, ReportRequest, RoomConfig, SurveyRoom
from remote_survey.session import Event, Participant, Role, SurveyState
from remote_survey.web import SurveyHub
from signing.certificates import TrustBundle

INSPECTOR = Participant("insp-1", "李勘查")
SITE_PARTY = Participant("site-1", "张店主")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def _config(world: World, clock: Clock) -> RoomConfig:
    base = world.hub.config
    return RoomConfig(
        node_id=base.node_id,
        join_key=base.join_key,
        seal=base.seal,
        media_root=base.media_root,
        clock=clock,
    )


def test_a_restarted_node_resumes_a_live_survey_with_a_gap_and_continues(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    before = SurveyHub(_config(world, clock))
    room = before.open(make_plan(clock.at)).room
    site_token = world.token(Role.SITE, "site-1")
    room.admit(site_token, Role.SITE, "phone-1")
    assert room.site_live() is SurveyState.LIVE
    clock.advance(2)
    room.snapshot(INSPECTOR, b"\x89PNG first")
    room.fix(SITE_PARTY, 30.54282, 114.3162, 6.0)
    issued = room.issue_challenge(INSPECTOR)
    room.challenge_shown(SITE_PARTY, issued["id"])
    room.confirm_challenge(INSPECTOR, issued["id"], "confirmed")
    room.acknowledge_notice(SITE_PARTY)
    last_t = room.chain.entries[-1].t_ms
    chain_before = room.chain.entries

    # the process dies here (nothing is closed); a new hub starts 30 s later
    clock.advance(30)
    after = SurveyHub(_config(world, clock))
    assert after.resume() == ["sv-media-0001"]
    again = after.rooms["sv-media-0001"].room
    assert again.resumed_from is SurveyState.LIVE
    assert again.state is SurveyState.INTERRUPTED
    assert again.chain.entries == chain_before
    assert again.notice_ms is not None
    # the same phone is admitted with its link, another phone still is not
    again.admit(site_token, Role.SITE, "phone-1")
    with pytest.raises(JoinRefused) as refused:
        again.admit(site_token, Role.SITE, "phone-2")
    assert refused.value.reason == "used-on-other-device"
    clock.advance(3)
    assert again.site_live() is SurveyState.LIVE
    gap = again.chain.entries[-1].body
    assert isinstance(gap, Gap)
    assert (gap.start_ms, gap.end_ms) == (last_t, last_t + 33_000)
    assert again.snapshot(INSPECTOR, b"\x89PNG second")["name"] == "snap-0002.png"
    assert again.issue_challenge(INSPECTOR)["id"] == "ch-2"
    assert after.rooms["sv-media-0001"].media.recorder._count == 0  # no segment yet
    again.end(INSPECTOR, Event.COMPLETE)
    answers = [
        ChecklistAnswer("kitchen-layout", Answer.PASS),
        ChecklistAnswer("fire-exit", Answer.PASS),
    ]
    token = again.report(INSPECTOR, answers, Verdict.PASS)
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    result = verify_report(token, bundle, again.media_dir, clock())
    assert result.ok, result.failures
    assert result.report is not None
    assert [(i.start_ms, i.end_ms) for i in result.report.evidence.interruptions] == [
        (last_t, last_t + 33_000)
    ]
    # and once more: the survey ended, so a start only notes it (its evidence is not
    # read: a node holds every survey it ever ran); asked for, it comes back with its
    # signed report, ready to be sent, and still refuses to be joined
    third = SurveyHub(_config(world, clock))
    assert third.resume() == []
    assert "sv-media-0001" not in third.rooms
    assert third.ended == {"sv-media-0001": SurveyState.COMPLETED}
    assert third.state_counts() == {"completed": 1}
    opened = third.get("sv-media-0001")
    assert opened is not None
    kept = opened.room
    assert kept.state is SurveyState.COMPLETED
    assert kept.report_token == token
    assert third.get("sv-media-0001") is opened  # kept while asked for
    assert third.get("sv-media-0099") is None
    with pytest.raises(Exception, match="completed"):
        kept.admit(site_token, Role.SITE, "phone-1")
    with pytest.raises(ValueError, match="already open"):  # never scheduled over
        third.open(make_plan(clock.at))


def test_segment_numbering_continues_after_a_restart(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    room = SurveyHub(_config(world, clock)).open(make_plan(clock.at)).room
    room.site_live()
    for n in (1, 2):
        data = f"segment {n}".encode()
        (room.media_dir / f"seg-{n:06d}.mkv").write_bytes(data)
        start = room.now_ms()
        clock.advance(3)
        end = room.now_ms()
        room.record(Segment(f"seg-{n:06d}.mkv", len(data), sha256(data).hexdigest(), start, end))
    after = SurveyHub(_config(world, clock))
    after.resume()
    assert after.rooms["sv-media-0001"].media.recorder._count == 2  # the next is seg-000003


def test_a_damaged_session_is_logged_and_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC))
    hub = SurveyHub(_config(world, clock))
    one = hub.open(make_plan(clock.at)).room
    two = hub.open(make_plan(clock.at, session_id="sv-media-0002")).room
    one.site_live()
    one.issue_challenge(INSPECTOR)
    one.issue_challenge(INSPECTOR)
    lines = (one.media_dir / "evidence.jsonl").read_bytes().splitlines(keepends=True)
    (one.media_dir / "evidence.jsonl").write_bytes(lines[1] + lines[0])  # reordered
    state = json.loads((two.media_dir / STATE_FILE).read_text())
    state["state"] = "dancing"
    (two.media_dir / STATE_FILE).write_text(json.dumps(state))
    damaged = (one.media_dir / "evidence.jsonl").read_bytes()
    caplog.set_level(logging.ERROR)
    restarted = SurveyHub(_config(world, clock))
    assert restarted.resume() == []
    assert "sv-media-0001 not resumed" in caplog.text
    assert "sv-media-0002 not resumed" in caplog.text
    with pytest.raises(ValueError, match="already open"):  # scheduling it again overwrites nothing
        restarted.open(make_plan(clock.at))
    assert (one.media_dir / "evidence.jsonl").read_bytes() == damaged


def test_a_survey_that_ended_leaves_the_rooms_and_is_counted_once(tmp_path: Path) -> None:
    """A running node holds in memory the surveys going on: one that ended, with nobody
    in it, moves from ``rooms`` to ``ended`` at the next count or opening, is counted in
    its final state, and is still the same room when asked for."""
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    hub = SurveyHub(_config(world, clock))
    plans = [make_plan(clock.at, f"sv-media-{n:04d}") for n in range(1, 4)]
    lives = [hub.open(plan) for plan in plans]
    for live in lives[:2]:
        live.room.admit(world.token(Role.SITE, "site-1", session_id=live.room.plan.session_id),
                        Role.SITE, "phone-1")  # fmt: skip
        assert live.room.site_live() is SurveyState.LIVE
    assert hub.state_counts() == {"live": 2, "scheduled": 1}
    lives[0].room.end(INSPECTOR, Event.ABANDON)
    lives[1].room.end(INSPECTOR, Event.CONVERT)
    assert hub.state_counts() == {"abandoned": 1, "converted_to_onsite": 1, "scheduled": 1}
    assert set(hub.rooms) == {"sv-media-0003"}
    assert hub.ended == {
        "sv-media-0001": SurveyState.ABANDONED, "sv-media-0002": SurveyState.CONVERTED_TO_ONSITE,
    }  # fmt: skip
    assert hub.get("sv-media-0001") is lives[0]  # the same room, not read again
    assert hub.state_counts() == {"abandoned": 1, "converted_to_onsite": 1, "scheduled": 1}
    # one with somebody still in it stays until they leave
    lives[2].connections.add(object())  # type: ignore[arg-type]
    lives[2].room.end(INSPECTOR, Event.ABANDON)
    hub.open(make_plan(clock.at, "sv-media-0004"))
    assert set(hub.rooms) == {"sv-media-0003", "sv-media-0004"}
    lives[2].connections.clear()
    assert hub.state_counts() == {"abandoned": 2, "converted_to_onsite": 1, "scheduled": 1}
    assert set(hub.rooms) == {"sv-media-0004"}
    with pytest.raises(ValueError, match="already open"):
        hub.open(plans[0])
    # a new process counts them the same from the disk
    again = SurveyHub(_config(world, clock))
    assert again.resume() == ["sv-media-0004"]
    assert again.state_counts() == hub.state_counts()


def test_a_report_that_could_not_be_written_is_not_taken_as_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report.jws`` is put in place whole or not at all: a write that fails (here its
    sync) leaves no file, the room and a restart know no report, and the inspector's
    next try seals one that verifies."""
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    hub = SurveyHub(_config(world, clock))
    live = hub.open(make_plan(clock.at, "sv-media-0009"))
    room = live.room
    room.admit(world.token(Role.SITE, "site-1", session_id="sv-media-0009"), Role.SITE, "p-1")
    room.site_live()
    clock.advance(60)
    room.end(INSPECTOR, Event.COMPLETE)
    answers = [ChecklistAnswer(i.item_id, Answer.FAIL, note="未见") for i in room.plan.checklist]

    def failing_sync(fd: int) -> None:
        raise OSError("I/O error")

    with monkeypatch.context() as patch:
        patch.setattr("relay.durable.os.fsync", failing_sync)
        with pytest.raises(OSError, match="I/O error"):
            room.report(INSPECTOR, answers, Verdict.FAIL)
    assert room.report_token is None
    assert sorted(p.name for p in room.media_dir.glob("*report*")) == []
    assert SurveyRoom.restore(room.media_dir, _config(world, clock)).report_token is None

    token = room.report(INSPECTOR, answers, Verdict.FAIL)
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    assert verify_report(token, bundle, room.media_dir, clock()).ok


class NodeStopped(BaseException):
    """The node stops here (a kill: no handler runs)."""


def _live_room(world: World, clock: Clock, session_id: str) -> SurveyRoom:
    room = SurveyHub(_config(world, clock)).open(make_plan(clock.at, session_id)).room
    room.admit(world.token(Role.SITE, "site-1", session_id=session_id), Role.SITE, "p-1")
    room.site_live()
    clock.advance(60)
    return room


def _failed(room: SurveyRoom) -> tuple[ChecklistAnswer, ...]:
    return tuple(ChecklistAnswer(i.item_id, Answer.FAIL, note="未见") for i in room.plan.checklist)


@pytest.mark.parametrize("stop_at", ["after the end", "while the report is written"])
def test_a_report_a_stop_left_unsealed_is_sealed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    """The session ended for the inspector's report and the node stopped before the report
    was in place: the next start seals what the inspector signed, and it verifies."""
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    room = _live_room(world, clock, "sv-media-0010")
    answers = _failed(room)
    request = ReportRequest(INSPECTOR.person_id, answers, Verdict.FAIL, remarks="复查")
    room.end(INSPECTOR, Event.COMPLETE, request)
    if stop_at == "while the report is written":

        def stopped(path: Path, data: bytes) -> None:
            raise NodeStopped

        with monkeypatch.context() as patch:
            patch.setattr("remote_survey.room.write_durably", stopped)
            with pytest.raises(NodeStopped):
                room.report(INSPECTOR, answers, Verdict.FAIL, remarks="复查")
    assert not (room.media_dir / "report.jws").exists()

    clock.advance(3600)
    again = SurveyHub(_config(world, clock))
    assert again.resume() == []  # ended: nothing to run again
    token = (room.media_dir / "report.jws").read_text(encoding="ascii").strip()
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    result = verify_report(token, bundle, room.media_dir, clock())
    assert result.ok
    assert result.report is not None
    assert result.report.verdict is Verdict.FAIL
    assert result.report.remarks == "复查"
    assert result.report.answers == answers
    assert not (room.media_dir / REQUEST_FILE).exists()
    assert again.get("sv-media-0010").room.report_token == token


def test_a_report_asked_for_whose_end_never_came_is_dropped_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node stopped after keeping the inspector's request and before ending the
    session: the survey resumes interrupted, with no report and no request left (the
    inspector signs again at its end)."""
    world = make_world(tmp_path)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    room = _live_room(world, clock, "sv-media-0011")
    answers = _failed(room)

    def stopped(event: Event) -> SurveyState:
        raise NodeStopped

    monkeypatch.setattr(room, "apply", stopped)
    request = ReportRequest(INSPECTOR.person_id, answers, Verdict.FAIL)
    with pytest.raises(NodeStopped):
        room.end(INSPECTOR, Event.COMPLETE, request)
    assert (room.media_dir / REQUEST_FILE).exists()

    again = SurveyHub(_config(world, clock))
    assert again.resume() == ["sv-media-0011"]
    resumed = again.rooms["sv-media-0011"].room
    assert resumed.state is SurveyState.INTERRUPTED
    assert resumed.report_token is None
    assert not (room.media_dir / REQUEST_FILE).exists()
    assert not (room.media_dir / "report.jws").exists()
