"""Survey reports in the case flow: the sealed report and its media travel as the case's
``survey-report`` packet, and the receiving office keeps a copy it has verified.

Sending (the surveying office, staff ``POST /staff/v1/surveys/{session}/send``, role
clerk): the session's ``report.jws`` is verified against its own media first
(:func:`remote_survey.report.verify_report`; a report that does not verify is never
sent), then ``evidence.jsonl`` and every segment and snapshot the chain names are
staged with the relay core (streamed, sealed at rest) and the case's ``survey-report``
event is taken with details ``{"outcome", "verdict", "report": <the JWS>}`` and those
files as packet attachments, so they travel resumably to the requesting office only.
``outcome`` is ``pass`` for the verdicts ``pass`` and ``pass_with_corrections``,
``fail`` for ``fail``; a survey converted to an on-site visit is not reported here.

The report is sent only when its requesting office is the case's other office (the
one that requested the survey and receives the packet): otherwise the partner would
refuse it after our own copy of the case had moved on (``wrong-offices``). A report
the partner refuses all the same (a ``rejected`` receipt ``content-refused:survey-*``)
raises a staff alert ``survey-report-refused`` (:func:`refused_report_alerts`).

Receiving (the requesting office, after every accepted federation batch): each
accepted case packet carrying a survey-report event with a sealed report is collected
once into ``<data dir>/survey-reports/<case>/<session>/`` (its attachments decrypted
there under their names, and ``report.jws``; ``<session>-<packet id>`` when that
survey was reported before, the packet id when the report names no usable session;
``.<packet id>.done`` marks a packet collected, or opened and found to carry no sealed
report; a copy put in place before a stop, its packet not marked yet, is made again in
its place), so ``tongban survey verify`` works on that folder. The copy is accepted when
the report verifies against those files, names this case, was sealed by the sender as
surveying office for us as requesting office, and the files are exactly the evidence
and the media the chain names; otherwise the folder gets ``refused.json`` with every
failure. At start the layer catches up with what was accepted while it was not running:
the inbox after its cursor (``survey-reports/.inbox-cursor``), a page at a time, so a
start costs what arrived since the last one, not the whole history.

Both sides append a ``survey-report`` audit leaf (:mod:`relay.audit.leaves`) for a
report sent or accepted. The sending side logs it in the transaction that queues the
packet (a packet the relay refuses logs none). The receiving side logs it in a
transaction of its own on the node's database (SQLite or PostgreSQL: a new connection
from :func:`relay.db.open.open_connection`) before the copy's folder appears, once per
packet (``audit_once``): a node stopped in between collects the packet again at its
next start and logs nothing more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from agreements.actions import Action
from relay.alerts import ALERTS, Severity, StaffAlert
from relay.audit.leaves import AuditLeaf, LeafKind, SurveyReportLeaf, encode_leaf
from relay.cases.desk import CaseDesk
from relay.cases.errors import CaseError
from relay.cases.model import EventKind
from relay.config import NodeConfig
from relay.core.errors import RelayError
from relay.core.model import PacketSummary
from relay.core.ports import PeerLink, ReceivedBatch
from relay.core.sqlite_store import append_leaf_once
from relay.db.migrations import Connection
from relay.db.open import open_connection, write_transaction
from relay.durable import sync_folder, write_durably
from relay.http.api import problem_from_core
from relay.http.case_services import CaseLayer
from relay.http.cases import problem_from_case
from relay.http.staff import SURVEY_REPORT_REFUSED
from relay.http.survey_admission import sealed_report
from relay.http.survey_view import add_survey_view_routes
from relay.node import CoreHandle
from relay.permissions import StaffAction, require
from relay.problem import Problem, ProblemCode
from relay.tls import BundleSource
from remote_survey.entries import EVIDENCE_FILE, Segment, Snapshot
from remote_survey.errors import SurveyError
from remote_survey.evidence import parse_evidence
from remote_survey.report import ReportVerification, verify_report
from remote_survey.report_model import SurveyReport, Verdict
from remote_survey.room import REPORT_FILE
from remote_survey.vault import MediaVault
from remote_survey.web import SurveyHub
from signing.certificates import TrustBundle
from signing.encoding import canonical_json
from signing.errors import SigningError
from signing.files import file_digest

__all__ = [
    "REPORTS_DIR",
    "Collected",
    "SurveyCaseLayer",
    "collect_reports",
    "refused_report_alerts",
    "report_files",
    "send_report",
    "survey_leaf",
]

_log = logging.getLogger("tongban.relay.survey")

REPORTS_DIR = "survey-reports"
REFUSED_FILE = "refused.json"
_CHUNK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_OUTCOME = {Verdict.PASS: "pass", Verdict.PASS_WITH_CORRECTIONS: "pass", Verdict.FAIL: "fail"}
_REFUSED = SURVEY_REPORT_REFUSED
_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webm": "video/webm", ".mp4": "video/mp4"}


class SurveyCaseError(Exception):
    """A report that cannot be sent; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _media_names(evidence: bytes) -> list[str]:
    entries = parse_evidence(evidence)
    return [e.body.name for e in entries if isinstance(e.body, Segment | Snapshot)]


def report_files(
    media_dir: Path, bundle: TrustBundle, at: datetime, vault: MediaVault | None = None
) -> tuple[str, SurveyReport, list[Path]]:
    """The sealed report of a session folder, verified against its files, and the files
    that travel with it (evidence first, then the media in chain order). ``vault`` opens
    media sealed at rest."""
    try:
        token = (media_dir / REPORT_FILE).read_text(encoding="ascii").strip()
    except OSError:
        raise SurveyCaseError("no-report", "the survey has no signed report yet") from None
    result = verify_report(token, bundle, media_dir, at, vault)
    if not result.ok or result.report is None:
        failures = "; ".join(f"{f.code}: {f.message}" for f in result.failures)
        raise SurveyCaseError("report-invalid", f"the report does not verify: {failures}")
    names = _media_names((media_dir / EVIDENCE_FILE).read_bytes())
    return token, result.report, [media_dir / n for n in (EVIDENCE_FILE, *names)]


def survey_leaf(token: str, report: SurveyReport, *, node: str, at: datetime) -> bytes:
    """The ``survey-report`` audit leaf of a sealed report."""
    body = SurveyReportLeaf(
        id=report.plan.session_id,
        case=report.plan.case_id,
        surveyor=report.plan.surveying_office,
        requested_by=report.plan.requesting_office,
        report_digest=hashlib.sha256(token.encode("ascii")).hexdigest(),
        manifest_digest=hashlib.sha256(canonical_json(report.evidence.to_json())).hexdigest(),
    )
    return encode_leaf(AuditLeaf(LeafKind.SURVEY_REPORT, node, int(at.timestamp()), body))


Database = Callable[[], Connection]
"""Opens a new connection to the node's database (:func:`relay.db.open.open_connection`)."""


def _received_key(packet_id: str) -> str:
    """The ``audit_once`` key of the leaf of the report received in ``packet_id``."""
    return hashlib.sha256(b"survey-report-received\x00" + packet_id.encode()).hexdigest()


def _append_leaf_once(database: Database, key: str, leaf: bytes) -> bool:
    """Append ``leaf`` unless a leaf under ``key`` was appended before (the same
    ``audit_once`` record as :meth:`relay.core.sqlite_store.SqlStore.audit_append_once`),
    in one transaction. Returns whether it was appended."""
    conn = database()
    try:
        with write_transaction(conn):
            return append_leaf_once(conn, key, leaf) is not None
    finally:
        conn.close()


async def _chunks(path: Path, offset: int) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        while chunk := await asyncio.to_thread(fh.read, _CHUNK):
            yield chunk


async def _plain_chunks(vault: MediaVault, path: Path, offset: int) -> AsyncIterator[bytes]:
    """The plaintext of a sealed media file from ``offset``, decrypted chunk by chunk."""
    chunks = vault.open_chunks(path)
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        if offset >= len(chunk):
            offset -= len(chunk)
            continue
        yield chunk[offset:]
        offset = 0


def _sealed_digest(vault: MediaVault, path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in vault.open_chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def _stage(core: Any, path: Path, vault: MediaVault | None = None) -> str:
    """Stage one file with the relay core (plaintext: a sealed media file is opened)."""
    if vault is not None and path.name != EVIDENCE_FILE:
        size, digest = await asyncio.to_thread(_sealed_digest, vault, path)
        offset = core.attachment_offset(digest)
        media_type = _TYPES.get(path.suffix, "application/octet-stream")
        info = await core.write_attachment(
            digest, size, offset, _plain_chunks(vault, path, offset), media_type=media_type,
            name=path.name,
        )  # fmt: skip
        if info is None:
            raise SurveyCaseError("stage-failed", f"{path.name} was not staged completely")
        return str(digest)
    with path.open("rb") as fh:
        size, digest = await asyncio.to_thread(file_digest, fh)
    offset = core.attachment_offset(digest)
    media_type = _TYPES.get(path.suffix, "application/octet-stream")
    if path.name == EVIDENCE_FILE:
        media_type = "application/x-ndjson"
    info = await core.write_attachment(
        digest, size, offset, _chunks(path, offset), media_type=media_type, name=path.name
    )
    if info is None:
        raise SurveyCaseError("stage-failed", f"{path.name} was not staged completely")
    return str(digest)


async def send_report(
    desk: CaseDesk,
    core: Any,
    media_dir: Path,
    bundle: TrustBundle,
    vault: MediaVault | None = None,
) -> tuple[SurveyReport, list[str]]:
    """Send the session's sealed report and media as its case's survey-report event,
    its survey-report leaf logged with the packet's queueing. Raises
    :class:`SurveyCaseError`, ``CaseError``, ``RelayError``. ``vault`` opens the media
    sealed at rest (they travel as plaintext, sealed by the relay core)."""
    # every media file is hashed again: off the event loop, which every listener shares
    token, report, files = await asyncio.to_thread(
        report_files, media_dir, bundle, desk.now(), vault
    )
    outcome = _OUTCOME.get(report.verdict)
    if outcome is None:
        raise SurveyCaseError("convert-to-onsite", "an on-site visit reports this case")
    if report.plan.surveying_office != desk.node_id:
        raise SurveyCaseError("not-surveyor", "this node did not run the survey")
    header = desk.get(report.plan.case_id).case.header
    partner = header.node(header.office_of(desk.node_id).other)
    if report.plan.requesting_office != partner:
        # the partner would refuse it (survey-wrong-case) after our copy had moved on
        raise SurveyCaseError(
            "wrong-offices",
            f"the report names {report.plan.requesting_office} as requesting office; it can "
            f"only be sent to this case's other office {partner}, which requested the survey",
        )
    digests = [await _stage(core, path, vault) for path in files]
    details = {"outcome": outcome, "verdict": report.verdict.value, "report": token}
    leaf = survey_leaf(token, report, node=desk.node_id, at=desk.now())
    await desk.act(report.plan.case_id, EventKind.SURVEY_REPORT, details, attachments=digests,
                   logged_when_sent=[leaf])  # fmt: skip
    return report, [p.name for p in files]


@dataclass(frozen=True)
class Collected:
    """A received report: where its copy is and what the check found."""

    packet_id: str
    case_id: str
    folder: Path
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def _judge(
    result: ReportVerification, summary: Any, me: str, received: set[str], evidence: bytes
) -> list[str]:
    failures = [f"{f.code}: {f.message}" for f in result.failures]
    report = result.report
    if report is None:
        return failures or ["report-malformed: no report"]
    plan = report.plan
    if plan.case_id != summary.case_id:
        failures.append(f"wrong-case: the report is for case {plan.case_id}")
    if plan.surveying_office != summary.sender or plan.requesting_office != me:
        failures.append("wrong-offices: not surveyed by the sender for this office")
    try:
        expected = {EVIDENCE_FILE, *_media_names(evidence)}
    except SurveyError:
        expected = {EVIDENCE_FILE}
    if received != expected:
        failures.append("files-mismatch: the attachments are not the evidence and its media")
    return failures


# the actions a packet carrying a survey report travels as (relay.cases.workflow.action_for)
_REPORT_ACTIONS = frozenset({Action.SURVEY_REPORT, Action.STATUS_UPDATE})


def _holds_report(folder: Path, token: str) -> bool:
    try:
        return (folder / REPORT_FILE).read_text(encoding="ascii").strip() == token
    except (OSError, UnicodeDecodeError):
        return False


def _mark_no_report(done: Path) -> None:
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("\n", encoding="utf-8")  # no folder: the packet carries no report


async def _collect_one(
    core: Any,
    packet_id: str,
    root: Path,
    me: str,
    bundle: TrustBundle,
    at: datetime,
    database: Database,
) -> Collected | None:
    opened = core.read_packet(packet_id)
    content, summary = opened.content, opened.summary
    base = root / summary.case_id
    done = base / f".{packet_id}.done"
    if done.exists():
        return None  # collected before
    sealed = sealed_report(content)
    if sealed is None or not summary.attachments:
        # no sealed report (another step, or a survey result typed in by staff): marked
        # too, so that no later start opens this packet again
        await asyncio.to_thread(_mark_no_report, done)
        return None
    token = sealed[0]
    tmp = base / f".{packet_id}.part"
    tmp.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    for a in summary.attachments:
        if not _NAME.fullmatch(a.name) or a.name in names or a.name == REPORT_FILE:
            names.add("\x00bad-name")
            continue
        names.add(a.name)
        with (tmp / a.name).open("wb") as fh:
            async for chunk in core.open_attachment(a.digest):
                await asyncio.to_thread(fh.write, chunk)
            fh.flush()
            await asyncio.to_thread(os.fsync, fh.fileno())  # before it is marked collected
    write_durably(tmp / REPORT_FILE, (token + "\n").encode("ascii"))
    result = await asyncio.to_thread(verify_report, token, bundle, tmp, at)
    evidence = (tmp / EVIDENCE_FILE).read_bytes() if EVIDENCE_FILE in names else b""
    failures = _judge(result, summary, me, names, evidence)
    if failures:
        (tmp / REFUSED_FILE).write_text(json.dumps(failures, indent=1) + "\n", encoding="utf-8")
        _log.warning("survey report in packet %s refused: %s", packet_id, failures)
    elif result.report is not None:
        # logged before the folder appears and the packet is marked collected, once per
        # packet: a stop in between collects it again at the next start, and that logs
        # nothing more
        leaf = survey_leaf(token, result.report, node=me, at=at)
        await asyncio.to_thread(_append_leaf_once, database, _received_key(packet_id), leaf)
    session = result.report.plan.session_id if result.report is not None else packet_id
    if not _NAME.fullmatch(session) or session.startswith("."):
        session = packet_id
    folder = base / session
    if folder.exists() and not _holds_report(folder, token):
        folder = base / f"{session}-{packet_id}"  # another report of the same survey: both
    if folder.exists():  # this report's copy, put in place before a stop: made again
        await asyncio.to_thread(shutil.rmtree, folder)
    tmp.rename(folder)
    sync_folder(base)  # the folder's name lasts before the marker says it is there
    write_durably(done, (folder.name + "\n").encode())
    return Collected(packet_id, summary.case_id, folder, tuple(failures))


CURSOR_FILE = ".inbox-cursor"
"""In the reports folder: ``<number> <packet id>`` of the last inbox packet a start's
catch-up looked at, every packet before it included (:func:`collect_reports`)."""

SETTLE = timedelta(minutes=10)
"""The cursor stops before the first packet accepted less than this long ago: on
PostgreSQL a packet with a lower number may still be committing in another worker, and
a later start must look at it if that worker ends before collecting it."""

_PAGE = 512


async def collect_reports(
    core: Any,
    root: Path,
    *,
    me: str,
    bundle: TrustBundle,
    at: datetime,
    database: Database,
    seen: set[str] | None = None,
    only: Sequence[PacketSummary] | None = None,
) -> list[Collected]:
    """Collect every accepted survey-report packet not collected yet (see the module
    note); log a survey-report leaf for each report accepted. ``only``: the packets a
    batch just accepted; without it (at start) the inbox after the cursor
    (:data:`CURSOR_FILE`), a page at a time, so that a start reads what arrived since
    the last one and not the whole history. The cursor moves over the packets looked at,
    never past one whose collection failed (the next start tries it again) nor past one
    younger than :data:`SETTLE`. ``seen`` (kept by the caller) holds the packets opened
    in this process, so each is opened once; a packet judged from its routing facts or
    its marker alone is not kept there."""
    seen = set() if seen is None else seen
    if only is not None:
        done, _ = await _collect_from(core, root, only, me, bundle, at, database, seen)
        return done
    after, cursor = _read_cursor(core, root)
    start, done, moving = cursor, [], True
    while page := core.inbox_after(after, _PAGE):
        summaries = [item.summary for _, item in page]
        got, failed = await _collect_from(core, root, summaries, me, bundle, at, database, seen)
        done += got
        for number, item in page:
            moving = moving and item.summary.packet_id not in failed
            moving = moving and item.received_at <= at - SETTLE
            if moving:
                cursor = (number, item.summary.packet_id)
        after = page[-1][0]
        await asyncio.sleep(0)  # a long history: the node answers between pages
    if cursor != start and cursor is not None:
        _write_cursor(root, cursor)
    return done


def _read_cursor(core: Any, root: Path) -> tuple[int, tuple[int, str] | None]:
    """Where the catch-up starts: after the cursor's packet, when the inbox still has
    that packet under that number; else (no cursor yet, or another database since, as
    after a restore) from the first packet."""
    path = root / CURSOR_FILE
    try:
        number_text, packet_id = path.read_text(encoding="ascii").split()
        number = int(number_text)
    except FileNotFoundError:
        return 0, None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        _log.warning(
            "survey report cursor %s unreadable (%s): looking at the whole inbox", path, exc
        )
        return 0, None
    there = core.inbox_after(number - 1, 1)
    if not there or there[0][0] != number or there[0][1].summary.packet_id != packet_id:
        _log.warning(
            "survey report cursor %s names packet %s at %d, which the inbox does not hold"
            " there: looking at the whole inbox", path, packet_id, number,
        )  # fmt: skip
        return 0, None
    return number, (number, packet_id)


def _write_cursor(root: Path, cursor: tuple[int, str]) -> None:
    """Replace the cursor file (:func:`~relay.durable.write_durably`: a temporary file
    of this process's own, as PostgreSQL workers of one node share the folder). A
    cursor that cannot be written only means more to read at the next start."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_durably(root / CURSOR_FILE, f"{cursor[0]} {cursor[1]}\n".encode("ascii"))
    except OSError as exc:
        _log.warning("survey report cursor not written (%s): the next start reads more", exc)


async def _collect_from(
    core: Any,
    root: Path,
    summaries: Sequence[PacketSummary],
    me: str,
    bundle: TrustBundle,
    at: datetime,
    database: Database,
    seen: set[str],
) -> tuple[list[Collected], set[str]]:
    """The reports collected from ``summaries``, and the packets whose collection failed."""
    done, failed = [], set()
    for summary in summaries:
        packet_id = summary.packet_id
        if not summary.attachments or packet_id in seen:
            continue
        # judged from the routing facts, before opening anything: only a survey-report
        # or status-update packet can carry a report, and one opened before has its
        # marker, with or without a report (nothing of history is decrypted)
        if summary.action not in _REPORT_ACTIONS:
            continue
        if (root / summary.case_id / f".{packet_id}.done").exists():
            continue
        try:
            collected = await _collect_one(core, packet_id, root, me, bundle, at, database)
        except (RelayError, SigningError, SurveyError, OSError) as exc:
            _log.warning("survey report in %s not collected: %s", packet_id, exc)
            failed.add(packet_id)
            continue
        seen.add(packet_id)
        if collected is not None:
            done.append(collected)
    return done, failed


def refused_report_alerts(core: Any, now: datetime) -> list[StaffAlert]:
    """An alert per survey-report packet the partner refused (``content-refused:survey-*``):
    our copy of the case shows the report sent, the partner's and the applicant's do not.
    It stands until a later packet of the case goes to that partner (the corrected report
    the alert asks for)."""
    alerts = []
    for item in core.standing_rejections():  # indexed: the refusals standing now only
        reason = item.reason or ""
        if not reason.startswith(_REFUSED):
            continue
        s = item.summary
        alerts.append(
            StaffAlert(
                id=f"survey:refused:{s.packet_id}",
                source="survey",
                code="survey-report-refused",
                severity=Severity.CRITICAL,
                at=now,
                title_zh="对方机关拒收了勘查报告，双方案卷状态不一致",
                title_en="The partner refused a survey report; the two copies of the case differ",
                detail=f"Node {s.receiver} refused the survey report of case {s.case_id} "
                f"(packet {s.packet_id}: {reason}). Our copy shows the report as sent, the "
                "partner's and the applicant's do not. Check the report with `tongban survey "
                "verify`, agree the next step with the partner, then send a corrected report",
                subject=s.packet_id,
                extra={"reason": reason, "peer": s.receiver, "case_id": s.case_id},
            )
        )
    return alerts


class _CollectingCore:
    """The case layer's core, collecting survey reports after each accepted batch."""

    def __init__(self, core: Any, collect: Callable[[Sequence[PacketSummary]], Any]) -> None:
        self._core = core
        self._collect = collect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        return list((await self.receive_batch_opened(peer_id, packets)).receipts)

    async def receive_batch_opened(self, peer_id: str, packets: Sequence[str]) -> ReceivedBatch:
        batch: ReceivedBatch = await self._core.receive_batch_opened(peer_id, packets)
        carrying = [p.summary for p in batch.accepted if p.summary.attachments]
        if carrying:  # only what this batch accepted: flat however big the inbox grew
            await self._collect(carrying)
        return batch


def _log_catch_up_end(task: asyncio.Task[list[Collected]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("survey reports not collected at start", exc_info=task.exception())


class SurveyCaseLayer:
    """Survey reports in the case flow, for ``Node(core_factory=…, extensions=[…])``
    around a :class:`~relay.http.case_services.CaseLayer` and the node's survey hub."""

    def __init__(self, cases: CaseLayer, hub: SurveyHub) -> None:
        self._cases = cases
        self._hub = hub
        self._lock = asyncio.Lock()
        self._seen: set[str] = set()
        self._config: NodeConfig | None = None
        self._bundle: BundleSource | None = None
        self._core: Any = None

    def core_factory(
        self,
        config: NodeConfig,
        link: PeerLink,
        bundle: BundleSource,
        clock: Callable[[], datetime],
    ) -> CoreHandle:
        handle = self._cases.core_factory(config, link, bundle, clock)
        self._config, self._bundle, self._core = config, bundle, handle.core
        self._clock = clock
        core = _CollectingCore(handle.core, self.collect)
        # reports accepted while this layer was not running are collected now
        catch_up = asyncio.get_running_loop().create_task(self.collect())
        catch_up.add_done_callback(_log_catch_up_end)

        def close() -> None:
            catch_up.cancel()
            handle.close()

        return dataclasses.replace(handle, core=core, close=close)

    @property
    def reports_dir(self) -> Path:
        assert self._config is not None, "the core factory has not run"
        return self._config.data_dir / REPORTS_DIR

    def _database(self) -> Database:
        assert self._config is not None
        return functools.partial(open_connection, self._config, "survey_cases")

    async def collect(self, only: Sequence[PacketSummary] | None = None) -> list[Collected]:
        """Collect reports: from ``only`` (a batch's accepted packets) or the whole inbox."""
        assert self._config is not None
        assert self._bundle is not None
        async with self._lock:
            return await collect_reports(
                self._core, self.reports_dir, me=self._config.node_id,
                bundle=self._bundle.current(), at=self._clock(), database=self._database(),
                seen=self._seen, only=only,
            )  # fmt: skip

    def extension(self, listener: str, app: web.Application) -> None:
        if listener == "staff":
            app.router.add_post("/staff/v1/surveys/{session}/send", self._send)
            add_survey_view_routes(app, self._desk_and_core)  # readable reports, snapshots
            if ALERTS in app:
                app[ALERTS].add_source("survey", self._alerts)

    def _desk_and_core(self) -> tuple[CaseDesk, Any] | None:
        services = self._cases.services
        return None if services is None or self._core is None else (services.desk, self._core)

    def _alerts(self, now: datetime) -> list[StaffAlert]:
        return [] if self._core is None else refused_report_alerts(self._core, now)

    async def _send(self, request: web.Request) -> web.Response:
        require(request, StaffAction.SURVEY)
        session = request.match_info["session"]
        live = self._hub.get(session)
        services = self._cases.services
        if live is None or services is None or self._bundle is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no survey {session} on this node")
        try:
            report, files = await send_report(
                services.desk, self._core, live.room.media_dir, self._bundle.current(),
                self._hub.config.vault,
            )  # fmt: skip
        except SurveyCaseError as exc:  # the reason names it for the console's sentence
            raise Problem(
                422, ProblemCode.INVALID_REQUEST, f"{exc.code}: {exc}", extra={"reason": exc.code}
            ) from None
        except CaseError as exc:
            raise problem_from_case(exc) from None
        except RelayError as exc:
            raise problem_from_core(exc) from None
        body = {
            "session": session,
            "case": report.plan.case_id,
            "to": report.plan.requesting_office,
            "verdict": report.verdict.value,
            "files": files,
        }
        return web.json_response(body, status=202)
