"""The room: who may do what, evidence written as it happens, server time only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from media_support import World, make_plan, make_world

from remote_survey.entries import (
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    Gap,
    Note,
)
from remote_survey.errors import MalformedReport, SurveyError
from remote_survey.evidence import parse_evidence, verify_chain
from remote_survey.report import Answer, ChecklistAnswer, Verdict, verify_report
from remote_survey.report_model import Guard, SurveyReport
from remote_survey.room import NOTICE_ACKNOWLEDGED, RoomConfig, RoomError, SurveyRoom
from remote_survey.session import Event, Participant, Role, SurveyState
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode

INSPECTOR = Participant("insp-1", "李勘查")
SITE_PARTY = Participant("site-1", "张店主")
OBSERVER = Participant("obs-1", "观察员")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _room(world: World, clock: Clock) -> SurveyRoom:
    config = world.hub.config
    fixed = RoomConfig(
        node_id=config.node_id,
        join_key=config.join_key,
        seal=config.seal,
        media_root=config.media_root,
        clock=clock,
        new_code=lambda: "424242",
    )
    return SurveyRoom(make_plan(clock.at), fixed)


def test_actions_need_the_right_role_and_a_live_session(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    with pytest.raises(RoomError) as refused:
        room.snapshot(INSPECTOR, b"png")
    assert refused.value.code == "not-live"
    room.site_live()
    for person in (SITE_PARTY, OBSERVER):
        with pytest.raises(RoomError) as refused:
            room.issue_challenge(person)
        assert refused.value.code == "not-allowed"
    with pytest.raises(RoomError) as refused:
        room.fix(INSPECTOR, 30.5, 114.3, 5)
    assert refused.value.code == "not-allowed"
    with pytest.raises(RoomError) as refused:
        room.challenge_shown(SITE_PARTY, "ch-9")
    assert refused.value.code == "bad-challenge"
    assert room.chain.entries == ()


def test_challenge_times_and_fixes_come_from_the_server_clock(world: World) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    room = _room(world, clock)
    room.site_live()
    issued = room.issue_challenge(INSPECTOR, "请举起三根手指")
    assert issued["challenge"] == "424242 请举起三根手指"
    clock.advance(1.5)
    room.challenge_shown(SITE_PARTY, issued["id"])
    clock.advance(2)
    room.confirm_challenge(INSPECTOR, issued["id"], "confirmed")
    distance = room.fix(SITE_PARTY, 30.54282, 114.3162, 6.0)
    assert distance is not None
    assert 2_000 < distance < 2_500  # about 2.2 m north of the site
    assert room.fix(SITE_PARTY, 30.54282, 114.3162, 6.0) is None  # at most one a second
    bodies = [e.body for e in room.chain.entries]
    assert [type(b) for b in bodies[:3]] == [ChallengeIssued, ChallengeShown, ChallengeConfirmed]
    times = [e.t_ms for e in room.chain.entries]
    assert times[1] - times[0] == 1500
    assert times[2] - times[1] == 2000
    # the evidence file is the chain, written entry by entry
    written = (room.media_dir / "evidence.jsonl").read_bytes()
    assert written == room.chain.to_jsonl()


def test_a_clock_that_steps_back_never_makes_time_go_backwards(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    room.issue_challenge(INSPECTOR)
    clock.advance(-30)  # NTP step
    room.issue_challenge(INSPECTOR)
    first, second = room.chain.entries
    assert second.t_ms == first.t_ms
    assert verify_chain(room.chain.entries).ok


def test_drop_and_rejoin_record_the_gap_and_the_report_verifies(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    assert room.site_live() is SurveyState.LIVE
    clock.advance(10)
    assert room.site_lost() is SurveyState.INTERRUPTED
    clock.advance(7)
    assert room.site_live() is SurveyState.LIVE
    gap = room.chain.entries[-1].body
    assert isinstance(gap, Gap)
    assert gap.end_ms - gap.start_ms == 7000
    clock.advance(5)
    with pytest.raises(RoomError) as refused:
        room.report(INSPECTOR, [], Verdict.PASS)
    assert refused.value.code == "bad-report"
    room.end(INSPECTOR, Event.COMPLETE)
    answers = [
        ChecklistAnswer("kitchen-layout", Answer.PASS),
        ChecklistAnswer("fire-exit", Answer.PASS),
    ]
    token = room.report(INSPECTOR, answers, Verdict.FAIL)
    with pytest.raises(RoomError):
        room.report(INSPECTOR, answers, Verdict.FAIL)
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    result = verify_report(token, bundle, room.media_dir, clock())
    assert result.ok, result.failures
    assert parse_evidence((room.media_dir / "evidence.jsonl").read_bytes()) == room.chain.entries


ANSWERS = [
    ChecklistAnswer("kitchen-layout", Answer.PASS),
    ChecklistAnswer("fire-exit", Answer.PASS),
]


def _payload(token: str) -> SurveyReport:
    return SurveyReport.from_payload(b64url_decode(token.split(".")[1]))


def test_a_pass_without_location_or_acknowledged_challenge_needs_a_sealed_reason(
    world: World,
) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    clock.advance(3)
    room.fix(SITE_PARTY, 30.5438, 114.3162, 5.0)  # about 110 m away: not within 50 m
    issued = room.issue_challenge(INSPECTOR)
    room.confirm_challenge(INSPECTOR, issued["id"], "confirmed")  # never acknowledged on site
    # refused while live, before the session is ended for it: the inspector can still act
    for verdict in (Verdict.PASS, Verdict.PASS_WITH_CORRECTIONS):
        with pytest.raises(RoomError) as refused:
            room.check_report(INSPECTOR, ANSWERS, verdict)
        assert refused.value.code == "reason-required"
        assert refused.value.detail == {"missing": ["location", "challenge"]}
    assert room.state is SurveyState.LIVE
    room.check_report(INSPECTOR, ANSWERS, Verdict.FAIL)  # no proof needed to refuse
    room.end(INSPECTOR, Event.COMPLETE)
    with pytest.raises(RoomError) as refused:
        room.report(INSPECTOR, ANSWERS, Verdict.PASS, reason="   ")
    assert refused.value.code == "reason-required"
    reason = "店主手机定位失灵；营业执照与门牌已在截图中核对"
    token = room.report(INSPECTOR, ANSWERS, Verdict.PASS, reason=reason)
    report = _payload(token)
    assert report.guard == Guard(("location", "challenge"), reason)
    assert report.to_json()["v"] == 2
    assert report.to_json()["guard"] == {"missing": ["location", "challenge"], "reason": reason}
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    assert verify_report(token, bundle, room.media_dir, clock()).ok


def test_a_pass_with_a_fix_on_site_and_an_acknowledged_challenge_needs_no_reason(
    world: World,
) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    clock.advance(2)
    room.fix(SITE_PARTY, 30.54282, 114.3162, 6.0)
    issued = room.issue_challenge(INSPECTOR)
    room.challenge_shown(SITE_PARTY, issued["id"])
    room.confirm_challenge(INSPECTOR, issued["id"], "confirmed")
    room.check_report(INSPECTOR, ANSWERS, Verdict.PASS)
    room.end(INSPECTOR, Event.COMPLETE)
    report = _payload(room.report(INSPECTOR, ANSWERS, Verdict.PASS))
    assert report.guard is None
    assert report.to_json()["v"] == 1  # unchanged format when nothing is waived


def test_unanswered_items_and_a_pass_over_a_failed_item_are_refused_by_item(
    world: World,
) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    with pytest.raises(RoomError) as refused:
        room.check_report(INSPECTOR, ANSWERS[:1], Verdict.FAIL)
    assert (refused.value.code, refused.value.detail) == ("unanswered", {"item": "fire-exit"})
    failed = [ANSWERS[0], ChecklistAnswer("fire-exit", Answer.FAIL, note="堵塞")]
    with pytest.raises(RoomError) as refused:
        room.check_report(INSPECTOR, failed, Verdict.PASS)
    assert refused.value.code == "pass-with-failed-item"
    assert refused.value.detail == {"item": "fire-exit"}


def test_the_recording_notice_acknowledgement_is_chained_once_as_the_site_partys_note(
    world: World,
) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    with pytest.raises(RoomError):
        room.acknowledge_notice(INSPECTOR)
    first = room.acknowledge_notice(SITE_PARTY)
    clock.advance(5)
    assert room.acknowledge_notice(SITE_PARTY) == first  # a reload does not chain it again
    (entry,) = room.chain.entries
    assert entry.body == Note(NOTICE_ACKNOWLEDGED, "site-1")
    assert room.welcome(SITE_PARTY, Role.SITE)["notice"] is True
    written = parse_evidence((room.media_dir / "evidence.jsonl").read_bytes())
    assert written == room.chain.entries


def test_a_guarded_report_without_its_reason_does_not_parse() -> None:
    with pytest.raises(MalformedReport):
        Guard(("location",), " ")
    with pytest.raises(MalformedReport):
        Guard(("challenge", "location"), "顺序不对")
    with pytest.raises(MalformedReport):
        Guard((), "无")


def test_an_abandoned_survey_cannot_be_reported_and_refuses_new_joins(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    room.site_lost()
    assert room.end(INSPECTOR, Event.ABANDON) is SurveyState.ABANDONED
    with pytest.raises(RoomError) as refused:
        room.report(INSPECTOR, [], Verdict.FAIL)
    assert refused.value.code == "bad-report"
    with pytest.raises(RoomError) as refused:
        room.end(SITE_PARTY, Event.COMPLETE)
    assert refused.value.code == "not-allowed"
    token = world.token(Role.SITE, "site-1")
    with pytest.raises(RoomError) as refused:
        room.admit(token, Role.SITE, "phone-1")
    assert refused.value.code == "session-ended"


def test_an_interrupted_survey_converted_to_onsite_is_reported_as_such(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    clock.advance(20)
    room.site_lost()  # the phone lost its signal and never came back
    clock.advance(60)
    assert room.end(INSPECTOR, Event.CONVERT) is SurveyState.CONVERTED_TO_ONSITE
    gap = room.chain.entries[-1].body
    assert isinstance(gap, Gap)
    assert gap.end_ms - gap.start_ms == 60_000
    note = "现场信号不足, 转现场勘查"
    answers = [
        ChecklistAnswer("kitchen-layout", Answer.NOTE, note),
        ChecklistAnswer("fire-exit", Answer.NOTE, note),
    ]
    with pytest.raises(RoomError):
        room.report(INSPECTOR, answers, Verdict.PASS)
    token = room.report(INSPECTOR, answers, Verdict.CONVERT_TO_ONSITE)
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    result = verify_report(token, bundle, room.media_dir, clock())
    assert result.ok, result.failures
    assert result.report is not None
    assert result.report.outcome is SurveyState.CONVERTED_TO_ONSITE


def test_a_survey_the_site_never_joined_is_converted_with_its_report(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    notes = [ChecklistAnswer(a.item_id, Answer.NOTE, note="现场方未上线") for a in ANSWERS]
    with pytest.raises(RoomError) as refused:
        room.check_report(INSPECTOR, notes, Verdict.FAIL)
    assert refused.value.code == "site-not-live"
    room.check_report(INSPECTOR, notes, Verdict.CONVERT_TO_ONSITE)
    room.end(INSPECTOR, Event.CONVERT)
    report = _payload(room.report(INSPECTOR, notes, Verdict.CONVERT_TO_ONSITE))
    assert report.outcome is SurveyState.CONVERTED_TO_ONSITE
    assert report.evidence.segments == ()


def test_nothing_is_added_to_the_evidence_once_the_report_is_sealed(world: World) -> None:
    """A second inspector's page, or a site page still showing the recording notice,
    added entries after the report: the chain no longer matched the report's pinned
    length and head, and the report could neither be sent nor signed again."""
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    room.issue_challenge(INSPECTOR)
    room.site_lost()
    room.end(INSPECTOR, Event.CONVERT)
    notes = [ChecklistAnswer(a.item_id, Answer.NOTE, note="转现场") for a in ANSWERS]
    token = room.report(INSPECTOR, notes, Verdict.CONVERT_TO_ONSITE)
    before = room._evidence.read_bytes()
    for late in (
        lambda: room.acknowledge_notice(SITE_PARTY),
        lambda: room.challenge_shown(SITE_PARTY, "ch-1"),
        lambda: room.confirm_challenge(INSPECTOR, "ch-1", "confirmed"),
        lambda: room.record(Note("late", "insp-1")),
    ):
        with pytest.raises(RoomError) as refused:
            late()
        assert refused.value.code == "session-ended"
    assert room._evidence.read_bytes() == before
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    assert verify_report(token, bundle, room.media_dir, clock()).ok


def test_an_end_that_would_be_refused_is_refused_before_anything_stops(world: World) -> None:
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    for event in (Event.START, Event.REJOIN, Event.DROP):
        with pytest.raises(RoomError) as refused:
            room.check_end(INSPECTOR, event)
        assert refused.value.code == "bad-request"
    with pytest.raises(RoomError) as refused:
        room.check_end(SITE_PARTY, Event.COMPLETE)
    assert refused.value.code == "not-allowed"
    room.check_end(INSPECTOR, Event.COMPLETE)
    assert room.state is SurveyState.LIVE  # a check changes nothing
    room.end(INSPECTOR, Event.ABANDON)
    with pytest.raises(RoomError) as refused:
        room.check_end(INSPECTOR, Event.COMPLETE)
    assert refused.value.code == "bad-state"


def _small_file_limit(room: SurveyRoom) -> int:
    """Lets the evidence file grow by 10 bytes at most (a disk that fills mid-write)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = room._evidence.stat().st_size + 10
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    return old[0]


def test_a_write_the_disk_cut_short_leaves_no_half_entry_and_the_survey_goes_on(
    world: World,
) -> None:
    """Half a line stayed in evidence.jsonl; later entries followed it, the file no
    longer parsed, and the survey could not be opened again."""
    import resource

    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    before = room._evidence.read_bytes()
    soft = _small_file_limit(room)
    try:
        with pytest.raises(OSError, match="too large"):
            room.issue_challenge(INSPECTOR)
    finally:
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (soft, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )
    assert room._evidence.read_bytes() == before
    clock.advance(5)
    room.issue_challenge(INSPECTOR)  # the disk has room again
    assert verify_chain(parse_evidence(room._evidence.read_bytes())).ok


def test_a_half_written_last_entry_is_cut_off_when_the_survey_is_opened_again(
    world: World,
) -> None:
    """A crash mid-write (power lost) left half a line: the survey was not resumed, its
    status was gone and it could not be scheduled again."""
    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    room.issue_challenge(INSPECTOR)
    whole = room._evidence.read_bytes()
    with room._evidence.open("ab") as f:
        f.write(b'{"seq":9,"t_ms":17')
    again = SurveyRoom.restore(room.media_dir, room.config)
    assert room._evidence.read_bytes() == whole
    assert again.chain.head == room.chain.head
    with room._evidence.open("ab") as f:
        f.write(b'{"not": "an entry"}\n')  # a whole line that does not parse: refused
    with pytest.raises(SurveyError):
        SurveyRoom.restore(room.media_dir, room.config)


def test_a_report_is_refused_before_the_end_while_the_seal_certificate_is_not_valid(
    world: World,
) -> None:
    """Sealed with an expired certificate, the report never verified, and the survey,
    ended for it, could not be reported again."""
    leaf = world.hub.config.seal.chain[0]
    clock = Clock(leaf.not_valid_after_utc + timedelta(days=1))
    room = _room(world, clock)
    room.site_live()
    with pytest.raises(RoomError) as refused:
        room.check_report(INSPECTOR, ANSWERS, Verdict.PASS, reason="现场核实")
    assert refused.value.code == "seal-invalid"
    assert room.state is SurveyState.LIVE  # the survey waits for a renewed seal


def test_a_rejoin_whose_gap_cannot_be_written_leaves_the_survey_interrupted(
    world: World,
) -> None:
    """The state changed in memory before the gap was chained: on a full disk the room
    was live while its file said interrupted, and the gap was never in the evidence."""
    import resource

    clock = Clock(datetime.now(UTC))
    room = _room(world, clock)
    room.site_live()
    room.site_lost()
    clock.advance(30)
    soft = _small_file_limit(room)
    try:
        with pytest.raises(OSError, match="too large"):
            room.site_live()
    finally:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert room.state is SurveyState.INTERRUPTED
    assert room.site_live() is SurveyState.LIVE  # the disk has room again
    gaps = [e.body for e in room.chain.entries if isinstance(e.body, Gap)]
    assert len(gaps) == 1
