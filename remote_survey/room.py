"""One running survey: its session, its evidence chain on disk, and what people do in it.

A :class:`SurveyRoom` is the shell around the pure core for one session. It owns the
:class:`~remote_survey.session.SurveySession`, the
:class:`~remote_survey.evidence.EvidenceChain` (each entry is appended to
``<media>/evidence.jsonl`` as it is recorded), the join ledger and the media directory.
Every time comes from the injected server clock, made non-decreasing here so the chain
never sees time go backwards. Actions (snapshot, challenge, geolocation fix, end,
report) are methods that check who may do them, record the evidence and return what
the signalling layer sends back; they raise :class:`RoomError` with a stable code when
refused. Media wiring lives in :mod:`remote_survey.peer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay.durable import write_durably
from remote_survey.entries import (
    EVIDENCE_FILE,
    Body,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    GeoFix,
    Note,
    Segment,
    Snapshot,
    epoch_ms,
    geofix,
)
from remote_survey.errors import (
    InvalidTransition,
    MalformedEvidence,
    MalformedReport,
    ReasonRequired,
    SurveyError,
)
from remote_survey.evidence import EvidenceChain, parse_evidence
from remote_survey.geo import GeoPoint
from remote_survey.join import JoinClaims, JoinLedger, admit, participant_for
from remote_survey.persist import load_state, save_state
from remote_survey.report import (
    ChecklistAnswer,
    Verdict,
    build_report,
    missing_proof,
    sign_report,
)
from remote_survey.report_model import PASSING, Answer
from remote_survey.reportjson import from_epoch_ms
from remote_survey.session import (
    Event,
    Participant,
    Role,
    SurveyPlan,
    SurveyState,
    can_apply,
    schedule,
    transition,
)
from remote_survey.turn import IceConfig
from remote_survey.vault import MediaVault
from signing.encoding import canonical_json
from signing.keys import Signer

__all__ = [
    "NOTICE_ACKNOWLEDGED",
    "REPORT_FILE",
    "REQUEST_FILE",
    "Clock",
    "ReportRequest",
    "RoomConfig",
    "RoomError",
    "SurveyRoom",
    "new_code",
]

Clock = Callable[[], datetime]
REPORT_FILE = "report.jws"
REQUEST_FILE = "report-request.json"
_REQUEST_TYPE = "tongban-survey-report-request"
_MIN_FIX_INTERVAL_MS = 1000
# the text of the note the site party's acknowledgement of the recording notice records
NOTICE_ACKNOWLEDGED = "recording-notice-acknowledged"


_log = logging.getLogger("tongban.survey")


def new_code() -> str:
    """A six-digit challenge code from the system's CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"


class RoomError(SurveyError):
    """An action refused in a running survey; ``code`` is stable (sent to the page).

    ``detail`` holds machine-readable members the page needs to explain the refusal in
    its own language (``item``: the checklist item concerned; ``missing``: the proofs a
    pass verdict lacks).
    """

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ReportRequest:
    """What an inspector asked to sign: kept in ``report-request.json`` from before the
    session is ended for it until its report is sealed, so a stop in between (or a
    report that could not be written) loses nothing: the room sealed again at the next
    start signs it (:meth:`SurveyRoom.restore`)."""

    by: str  # the inspector's person id
    answers: tuple[ChecklistAnswer, ...]
    verdict: Verdict
    remarks: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": _REQUEST_TYPE,
            "v": 1,
            "by": self.by,
            "verdict": self.verdict.value,
            "remarks": self.remarks,
            "reason": self.reason,
            "answers": [a.to_json() for a in self.answers],
        }

    @classmethod
    def from_json(cls, obj: Any) -> ReportRequest:
        """Raises MalformedReport."""
        try:
            if obj["type"] != _REQUEST_TYPE or obj["v"] != 1:
                raise MalformedReport("not a version 1 report request")
            answers = tuple(_answer(a) for a in obj["answers"])
            return cls(
                str(obj["by"]), answers, Verdict(obj["verdict"]),
                str(obj["remarks"]), str(obj["reason"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedReport(f"the report request is malformed: {exc}") from None


def _answer(obj: Any) -> ChecklistAnswer:
    return ChecklistAnswer(
        item_id=str(obj["item"]),
        answer=Answer(obj["answer"]),
        note=str(obj["note"]),
        snapshots=tuple(str(h) for h in obj["snapshots"]),
        from_ms=obj["from_ms"],
        until_ms=obj["until_ms"],
    )


@dataclass(frozen=True)
class RoomConfig:
    """What every room of a node shares: identity, keys, clock, storage and media knobs."""

    node_id: str
    join_key: Ed25519PublicKey
    seal: Signer
    media_root: Path
    clock: Clock
    ice_servers: tuple[dict[str, Any], ...] = ()
    segment_ms: int = 3000
    radius_mm: int = 50_000
    record: bool = True
    new_code: Callable[[], str] = field(default=new_code)
    # STUN/TURN for the pages (TURN with per-person time-limited credentials); the
    # node's own peer uses ``ice_servers`` only and must be reachable from the TURN server
    ice: IceConfig | None = None
    # media sealed at rest (segments and snapshots); None keeps them as plain files
    vault: MediaVault | None = None


class SurveyRoom:
    """The mutable shell state of one survey session (kept on disk: :meth:`restore`)."""

    def __init__(self, plan: SurveyPlan, config: RoomConfig, *, _restoring: bool = False) -> None:
        """A new session: an empty evidence file and its ``session.json``."""
        self.plan = plan
        self.config = config
        self.session = schedule(plan)
        self.chain = EvidenceChain(plan.session_id)
        self.ledger = JoinLedger()
        self.media_dir = config.media_root / plan.session_id
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._evidence = self.media_dir / EVIDENCE_FILE
        self._last_ms = 0
        self._last_fix_ms = -_MIN_FIX_INTERVAL_MS
        self._snapshots = 0
        self._challenges = 0
        self.notice_ms: int | None = None
        self.report_token: str | None = None
        self.resumed_from: SurveyState | None = None
        if not _restoring:
            self._evidence.write_bytes(b"")
            self._save()

    @classmethod
    def restore(cls, media_dir: Path, config: RoomConfig) -> SurveyRoom:
        """The session kept in ``media_dir``, as the node left it (raises SurveyError).

        The evidence file must be an intact chain. A session that was live when the node
        stopped is interrupted as of its last recorded moment; the site's rejoin closes
        that interruption with a ``gap`` entry, and the recording continues with the next
        segment number.
        """
        session, ledger = load_state(media_dir)
        room = cls(session.plan, config, _restoring=True)
        if room.media_dir != media_dir:
            raise SurveyError(f"{media_dir} does not hold session {session.plan.session_id}")
        try:
            entries = parse_evidence(room._whole_lines())
        except OSError as exc:
            raise SurveyError(f"cannot read {room._evidence}: {exc.strerror}") from None
        room.chain = EvidenceChain(session.plan.session_id, tuple(entries))  # checks it
        room.session, room.ledger = session, ledger
        room.resumed_from = session.state
        room._last_ms = entries[-1].t_ms if entries else 0
        for e in entries:
            if isinstance(e.body, Snapshot):
                room._snapshots += 1
            elif isinstance(e.body, ChallengeIssued):
                room._challenges += 1
            elif isinstance(e.body, GeoFix):
                room._last_fix_ms = e.t_ms
            elif isinstance(e.body, Note) and e.body.text == NOTICE_ACKNOWLEDGED:
                room.notice_ms = room.notice_ms if room.notice_ms is not None else e.t_ms
        if (media_dir / REPORT_FILE).exists():
            room.report_token = (media_dir / REPORT_FILE).read_text(encoding="ascii").strip()
        if session.state is SurveyState.LIVE:
            stopped = max(epoch_ms(session.last_change or room.now()), room._last_ms)
            room.session, _ = transition(session, Event.DROP, from_epoch_ms(stopped))
            room._save()
        room._seal_requested()
        return room

    def _whole_lines(self) -> bytes:
        """The evidence file, cut back to its last whole line: an entry is one line ended
        by a newline, so a line without one is a write a crash or a full disk stopped
        half-way (nothing acted on it: :meth:`record` returns after the write). A
        complete line that does not parse is still refused as it is."""
        data = self._evidence.read_bytes()
        if data and not data.endswith(b"\n"):
            whole = data[: data.rfind(b"\n") + 1]
            _log.warning(
                "survey %s: the last %d bytes of %s are half an entry (a write cut short); removed",
                self.plan.session_id,
                len(data) - len(whole),
                self._evidence,
            )
            with self._evidence.open("r+b") as f:
                f.truncate(len(whole))
                os.fsync(f.fileno())
            data = whole
        return data

    def _seal_requested(self) -> None:
        """Seal the report an inspector asked for before a stop (or a failed write) that
        the session ended for and that was never sealed; drop a request the session did
        not end for (the survey went on: the inspector signs again at its end)."""
        path = self.media_dir / REQUEST_FILE
        if not path.exists():
            return
        if not self.state.is_final or self.report_token is not None:
            path.unlink()
            return
        try:
            request = ReportRequest.from_json(json.loads(path.read_bytes()))
            self.report(
                self._person(request.by), request.answers, request.verdict,
                request.remarks, request.reason,
            )  # fmt: skip
        except (OSError, ValueError, SurveyError) as exc:
            _log.error("survey %s: the report asked for not sealed: %s", self.media_dir.name, exc)
            return
        _log.warning("survey %s: sealed the report a stop had left unsealed", self.media_dir.name)

    def _person(self, person_id: str) -> Participant:
        for person in self.plan.inspectors:
            if person.person_id == person_id:
                return person
        raise RoomError("not-a-participant", f"{person_id} is not an inspector of the survey")

    def _save(self) -> None:
        save_state(self.media_dir, self.session, self.ledger)

    @property
    def segment_count(self) -> int:
        """How many segments the chain holds (the recording continues after them)."""
        return sum(isinstance(e.body, Segment) for e in self.chain.entries)

    # -- time and evidence -------------------------------------------------------------

    def now(self) -> datetime:
        at = self.config.clock()
        if at.tzinfo is None:
            raise ValueError("the survey clock must give timezone-aware times")
        last = self.session.last_change
        return at if last is None or at >= last else last

    def now_ms(self) -> int:
        self._last_ms = max(self._last_ms, epoch_ms(self.now()))
        return self._last_ms

    def record(self, body: Body) -> int:
        """Append ``body`` to the chain and to the evidence file (fsynced); return its time.

        Refused once the report is sealed: the report pins the chain's length and head, so
        a later entry would make it fail verification for good. A write that fails (a full
        disk) is cut back off the file, so the file never holds half an entry."""
        if self.report_token is not None:
            raise RoomError("session-ended", "the report is sealed: nothing more is recorded")
        t_ms = self.now_ms()
        chain = self.chain.append(body, t_ms)
        line = memoryview(canonical_json(chain.entries[-1].to_json()) + b"\n")
        with self._evidence.open("ab", buffering=0) as f:  # unbuffered: no write left over
            size = f.seek(0, os.SEEK_END)
            try:
                while line:
                    line = line[f.write(line) or 0 :]
                os.fsync(f.fileno())
            except OSError:
                os.ftruncate(f.fileno(), size)
                raise
        self.chain = chain
        return t_ms

    # -- joining and state -------------------------------------------------------------

    def admit(self, token: str, role: Role, device_id: str) -> tuple[JoinClaims, Participant]:
        """Check a join link for ``role`` on ``device_id`` (raises JoinRefused)."""
        claims, ledger = admit(
            token,
            self.config.join_key,
            self.ledger,
            node_id=self.config.node_id,
            session_id=self.plan.session_id,
            role=role,
            device_id=device_id,
            at=self.config.clock(),
        )
        person = participant_for(self.plan, claims)
        if self.session.state.is_final:
            raise RoomError("session-ended", f"the survey is {self.session.state.value}")
        if ledger is not self.ledger:
            self.ledger = ledger
            self._save()
        return claims, person

    @property
    def state(self) -> SurveyState:
        return self.session.state

    def apply(self, event: Event) -> SurveyState:
        """Run ``event`` through the state machine; record the gap it may close."""
        try:
            session, effects = transition(self.session, event, self.now())
        except InvalidTransition as exc:
            raise RoomError("bad-state", str(exc)) from None
        for gap in effects:  # chained first: a failed write leaves the state as it was
            self.record(gap)
        self.session = session
        self._save()
        return self.session.state

    def site_live(self) -> SurveyState | None:
        """The site's media flows: start the session, or end its interruption."""
        if self.state is SurveyState.SCHEDULED:
            return self.apply(Event.START)
        if self.state is SurveyState.INTERRUPTED:
            return self.apply(Event.REJOIN)
        return None

    def site_lost(self) -> SurveyState | None:
        if self.state is SurveyState.LIVE:
            return self.apply(Event.DROP)
        return None

    # -- actions -----------------------------------------------------------------------

    def _require(self, person: Participant, *roles: Role) -> None:
        if self.plan.role_of(person.person_id) not in roles:
            raise RoomError("not-allowed", f"{person.person_id} may not do this")

    def _require_open(self) -> None:
        """Refuse an action that adds evidence once the survey has ended."""
        if self.state.is_final:
            raise RoomError("session-ended", f"the survey is {self.state.value}")

    def _require_live(self) -> None:
        if self.state is not SurveyState.LIVE:
            raise RoomError("not-live", f"the survey is {self.state.value}, not live")

    def check_snapshot(self, person: Participant) -> None:
        """Refuse early (before encoding a frame) a snapshot that would be refused."""
        self._require(person, Role.INSPECTOR)
        self._require_live()

    def snapshot(self, person: Participant, png: bytes) -> dict[str, Any]:
        self.check_snapshot(person)
        self._snapshots += 1
        name = f"snap-{self._snapshots:04d}.png"
        if self.config.vault is not None:
            self.config.vault.seal_chunks([png], self.media_dir / name)
        else:  # on disk before the chain names it
            write_durably(self.media_dir / name, png)
        body = Snapshot(name, len(png), hashlib.sha256(png).hexdigest(), person.person_id)
        t_ms = self.record(body)
        return {"type": "snapshot", "name": name, "sha256": body.sha256, "t_ms": t_ms}

    def issue_challenge(self, person: Participant, instruction: str = "") -> dict[str, Any]:
        self._require(person, Role.INSPECTOR)
        self._require_live()
        self._challenges += 1
        challenge_id = f"ch-{self._challenges}"
        text = self.config.new_code()
        if instruction.strip():
            text = f"{text} {instruction.strip()[:200]}"
        t_ms = self.record(ChallengeIssued(challenge_id, text, person.person_id))
        return {"type": "challenge", "id": challenge_id, "challenge": text, "t_ms": t_ms}

    def acknowledge_notice(self, person: Participant) -> int:
        """The site party acknowledged the recording notice (chained once, as a note)."""
        self._require(person, Role.SITE)
        self._require_open()
        if self.notice_ms is None:
            self.notice_ms = self.record(Note(NOTICE_ACKNOWLEDGED, person.person_id))
        return self.notice_ms

    def challenge_shown(self, person: Participant, challenge_id: str) -> dict[str, Any]:
        """The site party acknowledged (on the phone) that the code was shown."""
        self._require(person, Role.SITE)
        self._require_open()
        try:
            t_ms = self.record(ChallengeShown(challenge_id, person.person_id))
        except MalformedEvidence as exc:
            raise RoomError("bad-challenge", str(exc)) from None
        return {"type": "challenge-shown", "id": challenge_id, "t_ms": t_ms}

    def confirm_challenge(
        self, person: Participant, challenge_id: str, result: str
    ) -> dict[str, Any]:
        self._require(person, Role.INSPECTOR)
        self._require_open()
        try:
            t_ms = self.record(ChallengeConfirmed(challenge_id, person.person_id, result))
        except MalformedEvidence as exc:
            raise RoomError("bad-challenge", str(exc)) from None
        return {"type": "challenge-confirmed", "id": challenge_id, "result": result, "t_ms": t_ms}

    def fix(self, person: Participant, lat: float, lon: float, accuracy_m: float) -> int | None:
        """Record a geolocation fix of the site device (at most one a second)."""
        self._require(person, Role.SITE)
        self._require_live()
        if self.now_ms() - self._last_fix_ms < _MIN_FIX_INTERVAL_MS:
            return None
        try:
            point = GeoPoint.from_degrees(lat, lon)
            accuracy_mm = round(accuracy_m * 1000)
            body = geofix(self.plan.site.location, point, max(0, accuracy_mm))
        except (SurveyError, ValueError, OverflowError) as exc:
            raise RoomError("bad-geofix", str(exc)) from None
        t_ms = self.record(body)
        self._last_fix_ms = t_ms
        return body.distance_mm

    def check_end(self, person: Participant, event: Event) -> None:
        """Refuse, before the recording is stopped for it, an end that would be refused."""
        self._require(person, Role.INSPECTOR)
        if event not in (Event.COMPLETE, Event.ABANDON, Event.CONVERT):
            raise RoomError("bad-request", f"{event.value} is not a way to end a survey")
        if not can_apply(self.session, event):
            state = self.state.value
            raise RoomError("bad-state", f"cannot {event.value} a survey that is {state}")

    def check_office_end(self) -> None:
        """Refuse an office's abandon the state does not allow (before anything stops)."""
        if not can_apply(self.session, Event.ABANDON):
            raise RoomError("bad-state", f"cannot abandon a survey that is {self.state.value}")

    def end_by_office(self) -> SurveyState:
        """The office abandons the survey (no participant can: the window passed, the
        inspector is gone); a report asked for and not sealed is dropped."""
        self.check_office_end()
        (self.media_dir / REQUEST_FILE).unlink(missing_ok=True)
        return self.apply(Event.ABANDON)

    def end(
        self, person: Participant, event: Event, report: ReportRequest | None = None
    ) -> SurveyState:
        """End the survey; ``report``: what the inspector signs at its end, kept before
        the session is ended (see :class:`ReportRequest`)."""
        self.check_end(person, event)
        if report is None:
            (self.media_dir / REQUEST_FILE).unlink(missing_ok=True)  # not this end's
        else:
            self._keep(report)
        return self.apply(event)

    def _keep(self, request: ReportRequest) -> None:
        """Put ``request`` in ``report-request.json`` durably (once: kept at the end, it
        is not written again to be sealed)."""
        path = self.media_dir / REQUEST_FILE
        data = json.dumps(request.to_json(), ensure_ascii=False).encode("utf-8")
        try:
            if path.read_bytes() == data:
                return
        except FileNotFoundError:
            pass
        write_durably(path, data)

    def check_report(
        self,
        person: Participant,
        answers: Sequence[ChecklistAnswer],
        verdict: Verdict,
        remarks: str = "",
        reason: str = "",
    ) -> None:
        """Refuse, before the session is ended for it, a report that could not be sealed."""
        self._require(person, Role.INSPECTOR)
        if self.report_token is not None:
            raise RoomError("already-reported", "the report has already been signed")
        leaf, now = self.config.seal.chain[0], self.now()
        if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
            # sealed anyway, the report would never verify, and the ended survey could not
            # be reported again: refused while the survey can still wait for a renewal
            raise RoomError(
                "seal-invalid",
                f"the node's seal certificate is not valid now (valid until "
                f"{leaf.not_valid_after_utc.isoformat()}): renew it, then sign the report",
            )
        items = [i.item_id for i in self.plan.checklist]
        answered = [a.item_id for a in answers]
        if answered != items:
            absent = [i for i in items if i not in answered]
            raise RoomError(
                "unanswered",
                f"every checklist item is answered once, in order: expected {items}",
                item=absent[0] if absent else items[0],
            )
        if verdict is Verdict.PASS:
            failed = [a.item_id for a in answers if a.answer is Answer.FAIL]
            if failed:
                raise RoomError(
                    "pass-with-failed-item",
                    "a pass verdict cannot have a failed checklist item",
                    item=failed[0],
                )
        if len(remarks) > 4096 or len(reason) > 4096:
            raise RoomError("bad-report", "remarks and reason are at most 4096 characters")
        if verdict in PASSING and not reason.strip():
            started = self.session.started_at
            end_ms = self.now_ms()
            lacking = missing_proof(
                self.chain.entries,
                radius_mm=self.config.radius_mm,
                start_ms=epoch_ms(started) if started else end_ms,
                end_ms=end_ms,
            )
            if lacking:
                raise RoomError(
                    "reason-required",
                    f"a pass verdict without {' and '.join(lacking)} proof needs a reason",
                    missing=list(lacking),
                )
        convert = verdict is Verdict.CONVERT_TO_ONSITE
        if self.state in (SurveyState.SCHEDULED, SurveyState.INTERRUPTED) and not convert:
            raise RoomError(
                "site-not-live",
                f"the survey is {self.state.value}: it is completed only while the site party"
                " is connected; wait for them to rejoin, or convert it to an on-site visit",
            )

    def report(
        self,
        person: Participant,
        answers: Sequence[ChecklistAnswer],
        verdict: Verdict,
        remarks: str = "",
        reason: str = "",
    ) -> str:
        """Build and seal the report of the ended session; write it beside the evidence.
        What was asked is kept until the report is written (see :class:`ReportRequest`)."""
        request = ReportRequest(person.person_id, tuple(answers), verdict, remarks, reason)
        self._require(person, Role.INSPECTOR)
        if self.report_token is not None:
            raise RoomError("already-reported", "the report has already been signed")
        at = self.now()
        try:
            report = build_report(
                self.session,
                self.chain,
                request.answers,
                request.verdict,
                radius_mm=self.config.radius_mm,
                at=at,
                remarks=request.remarks,
                reason=request.reason,
            )
        except ReasonRequired as exc:
            raise RoomError("reason-required", str(exc), missing=list(exc.missing)) from None
        except MalformedReport as exc:
            raise RoomError("bad-report", str(exc)) from None
        token = sign_report(report, self.config.seal, at=at)
        self._keep(request)  # a stop before report.jws is in place has the start seal it
        # whole or not at all: a restart reads a report.jws it finds as the signed report
        write_durably(self.media_dir / REPORT_FILE, (token + "\n").encode("ascii"))
        self.report_token = token
        (self.media_dir / REQUEST_FILE).unlink(missing_ok=True)
        return token

    def _ice_for(self, person: Participant) -> list[dict[str, Any]]:
        if self.config.ice is None:
            return []
        user = f"{self.plan.session_id}.{person.person_id}".replace(":", "_")
        return self.config.ice.servers_for(user, self.config.clock())

    def welcome(self, person: Participant, role: Role) -> dict[str, Any]:
        """What a page needs to show on joining (no secrets)."""
        plan = self.plan
        return {
            "type": "welcome",
            "session": plan.session_id,
            "role": role.value,
            "person": {"id": person.person_id, "name": person.name},
            "state": self.state.value,
            "case": plan.case_id,
            "matter": plan.matter,
            "offices": {
                "surveying": plan.surveying_office,
                "requesting": plan.requesting_office,
            },
            "window": {
                "start_ms": epoch_ms(plan.window.start),
                "end_ms": epoch_ms(plan.window.end),
            },
            "inspectors": [p.name for p in plan.inspectors],
            "site_party": plan.site_party.name,
            "notice": self.notice_ms is not None,
            "radius_m": self.config.radius_mm / 1000,
            "site": {
                "address": plan.site.address,
                "lat": plan.site.location.lat,
                "lon": plan.site.location.lon,
            },
            "checklist": [{"id": i.item_id, "text": i.text} for i in plan.checklist],
            "iceServers": [*self.config.ice_servers, *self._ice_for(person)],
        }
