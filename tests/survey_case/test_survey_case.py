"""A remote survey's sealed report enters the case flow between two real nodes: the
surveying office sends it as the case's survey-report packet with its evidence and
media, the requesting office's copy of the case shows the verdict, the media it keeps
verify with `tongban survey verify`, tampered media are refused, and both audit logs
hold a survey-report leaf."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from survey_case_kit import HANDLING, RECEIVING, Office

from relay.audit.leaves import LeafKind, decode_leaf
from relay.cases.desk import CaseDesk
from relay.cases.model import EventKind
from relay.cli import main
from relay.core.service import RelayNode
from relay.http import survey_cases
from relay.http.survey_cases import REFUSED_FILE, report_files
from remote_survey.geo import GeoPoint
from remote_survey.report import Answer, ChecklistAnswer, Verdict
from remote_survey.session import (
    ChecklistItem,
    Event,
    Participant,
    Site,
    SurveyPlan,
    TimeWindow,
)
from signing.certificates import TrustBundle

BOOKS = "publication-retail-licence"
INSPECTOR = Participant("insp-1", "李勘查")
SITE_PARTY = Participant("site-1", "张店主")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


async def _json(http: aiohttp.ClientSession, method: str, url: str, office: Office,
                body: Any = None) -> tuple[int, Any]:  # fmt: skip
    async with http.request(method, url, json=body, headers=office.auth()) as resp:
        return resp.status, await resp.json()


async def _case_until(http: aiohttp.ClientSession, office: Office, case_id: str,
                      state: str) -> dict[str, Any]:  # fmt: skip
    async with asyncio.timeout(30):
        while True:
            code, case = await _json(http, "GET", office.url(f"/staff/v1/cases/{case_id}"),
                                     office)  # fmt: skip
            if code == 200 and case["state"] == state:
                return case  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)  # delivery runs on the nodes' outbox tasks


async def _survey_requested(http: aiohttp.ClientSession, r: Office, h: Office,
                            case_id: str) -> None:  # fmt: skip
    body = {"matter": BOOKS, "handling": HANDLING, "case_id": case_id}
    code, _ = await _json(http, "POST", r.url("/staff/v1/cases"), r, body)
    assert code == 201
    await _case_until(http, h, case_id, "submitted")
    for event, details in (("accept", {}), ("request-survey", {"surveyor": "receiving"})):
        url = h.url(f"/staff/v1/cases/{case_id}/events")
        code, answer = await _json(http, "POST", url, h, {"event": event, "details": details})
        assert code == 200, answer
    await _case_until(http, r, case_id, "survey_requested")


async def _report_delivered(http: aiohttp.ClientSession, r: Office, h: Office, case_id: str,
                            session: str) -> None:  # fmt: skip
    """A survey requested by ``h``, run at ``r``, its report sent and the case at ``h``
    moved to ``survey_reported``."""
    await _survey_requested(http, r, h, case_id)
    _surveyed(r, case_id, session)
    code, sent = await _json(http, "POST", r.url(f"/staff/v1/surveys/{session}/send"), r)
    assert code == 202, sent
    await _case_until(http, h, case_id, "survey_reported")


def _surveyed(office: Office, case_id: str, session: str, requesting: str = HANDLING) -> Path:
    """Run a short survey at the surveying office: live, two snapshots, a geolocation
    fix at the site, a challenge acknowledged and confirmed, completed, checklist
    answered and the report sealed."""
    now = datetime.now(UTC)
    site = GeoPoint.from_degrees(30.5428, 114.3162)
    plan = SurveyPlan(
        session_id=session, case_id=case_id, matter=BOOKS, surveying_office=RECEIVING,
        requesting_office=requesting,
        window=TimeWindow(now - timedelta(hours=1), now + timedelta(hours=2)),
        inspectors=(INSPECTOR,), site_party=SITE_PARTY, observers=(),
        checklist=(ChecklistItem("shelves", "书架与消防通道"),), site=Site("武汉市武昌区", site),
    )  # fmt: skip
    room = office.hub.open(plan).room
    room.site_live()
    room.fix(SITE_PARTY, 30.5428, 114.3162, 8.0)
    room.snapshot(INSPECTOR, PNG)
    room.snapshot(INSPECTOR, PNG[::-1])
    challenge = room.issue_challenge(INSPECTOR)["id"]
    room.challenge_shown(SITE_PARTY, challenge)
    room.confirm_challenge(INSPECTOR, challenge, "confirmed")
    room.end(INSPECTOR, Event.COMPLETE)
    room.report(INSPECTOR, [ChecklistAnswer("shelves", Answer.PASS)], Verdict.PASS_WITH_CORRECTIONS)
    return room.media_dir


def _survey_leaves(office: Office) -> list[Any]:
    conn = sqlite3.connect(office.node.config.data_dir / "relay.sqlite3")
    try:
        rows = conn.execute("SELECT data FROM audit_leaves ORDER BY idx").fetchall()
    finally:
        conn.close()
    leaves = [decode_leaf(bytes(row[0])) for row in rows]
    return [leaf for leaf in leaves if leaf.kind is LeafKind.SURVEY_REPORT]


async def _received_folder(h: Office, case_id: str) -> Path:
    base = h.layer.reports_dir / case_id
    async with asyncio.timeout(30):
        while not (base.exists() and any(p.name[0] != "." for p in base.iterdir())):
            await asyncio.sleep(0.05)
    (folder,) = [p for p in base.iterdir() if p.name[0] != "."]
    return folder


def _verify_cli(folder: Path, bundle: Path) -> int:
    return main(["survey", "verify", str(folder / "report.jws"), "--media", str(folder),
                 "--trust", str(bundle)])  # fmt: skip


async def test_a_sealed_survey_report_travels_with_its_media_and_verifies_at_the_requester(
    offices: tuple[Office, Office], capsys
) -> None:
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-1")
        media = _surveyed(r, "WC-SV-1", "SV-WC-SV-1")
        code, sent = await _json(http, "POST", r.url("/staff/v1/surveys/SV-WC-SV-1/send"), r)
        assert code == 202, sent
        assert sent["to"] == HANDLING
        assert sent["files"] == ["evidence.jsonl", "snap-0001.png", "snap-0002.png"]
        case = await _case_until(http, h, "WC-SV-1", "survey_reported")
        step = case["timeline"][-1]
        assert step["event"] == "survey-report"
        assert step["details"]["verdict"] == "pass_with_corrections"
        assert step["details"]["outcome"] == "pass"
        token = (media / "report.jws").read_text().strip()
        assert step["details"]["report"] == token
        code, again = await _json(http, "POST", r.url("/staff/v1/surveys/SV-WC-SV-1/send"), r)
        assert code == 409, again  # the case has moved on: a report is sent once
        assert again["reason"] == "wrong-state"

    folder = await _received_folder(h, "WC-SV-1")
    assert folder == h.layer.reports_dir / "WC-SV-1" / "SV-WC-SV-1"
    assert not (folder / REFUSED_FILE).exists()
    for name in ("evidence.jsonl", "snap-0001.png", "snap-0002.png"):
        assert (folder / name).read_bytes() == (media / name).read_bytes()
    capsys.readouterr()
    assert _verify_cli(folder, h.bundle) == 0
    assert "surveyed by node 420106" in capsys.readouterr().out

    digest = hashlib.sha256(token.encode("ascii")).hexdigest()
    for office in (r, h):
        (leaf,) = _survey_leaves(office)
        assert leaf.node == office.node.config.node_id
        assert leaf.body.report_digest == digest
        assert (leaf.body.case, leaf.body.id) == ("WC-SV-1", "SV-WC-SV-1")
        assert (leaf.body.surveyor, leaf.body.requested_by) == (RECEIVING, HANDLING)

    (folder / "snap-0002.png").write_bytes(PNG)  # altered after arrival
    assert _verify_cli(folder, h.bundle) == 1


async def test_a_start_catches_up_from_the_real_inbox_and_keeps_its_cursor(
    offices: tuple[Office, Office], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start's catch-up (``SurveyCaseLayer.collect()``) on a real node's inbox: the
    report collected after its batch is not collected again, and the cursor names the
    inbox's last packet (settled at once here), from which the next start reads."""
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _report_delivered(http, r, h, "WC-SV-C", "SV-WC-SV-C")
    await _received_folder(h, "WC-SV-C")
    monkeypatch.setattr(survey_cases, "SETTLE", timedelta(0))
    assert await h.layer.collect() == []  # collected after its batch: not again
    core = h.layer._core
    last = core.list_inbox(limit=1, newest_first=True)[0].summary.packet_id
    cursor = (h.layer.reports_dir / survey_cases.CURSOR_FILE).read_text().split()
    assert cursor[1] == last
    assert core.inbox_after(int(cursor[0]), 512) == []
    assert len(_survey_leaves(h)) == 1  # the report's leaf, once


async def test_a_received_report_is_logged_before_its_folder_appears_and_once_after_a_stop(
    offices: tuple[Office, Office], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiving office logs the report's leaf before its copy's folder appears (so
    whoever sees the folder finds the leaf), and a stop in between (here: the folder's
    rename fails once) has the next start collect the packet again without a second
    leaf."""
    r, h = offices
    at_rename: list[int] = []
    rename = Path.rename

    def stopping_rename(self: Path, target: Any) -> Any:
        if self.name.endswith(".part"):
            at_rename.append(len(_survey_leaves(h)))
            if len(at_rename) == 1:
                raise OSError("the node stopped here")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", stopping_rename)
    async with aiohttp.ClientSession() as http:
        await _report_delivered(http, r, h, "WC-SV-S", "SV-WC-SV-S")
    async with asyncio.timeout(30):
        while not at_rename:
            await asyncio.sleep(0.05)  # the batch's collection, after the packet's commit
    assert not (h.layer.reports_dir / "WC-SV-S" / "SV-WC-SV-S").exists()
    monkeypatch.setattr(survey_cases, "SETTLE", timedelta(0))
    (collected,) = await h.layer.collect()  # the next start's catch-up
    assert collected.ok
    assert collected.folder.name == "SV-WC-SV-S"
    assert at_rename == [1, 1]  # logged before each attempt to show the folder
    assert len(_survey_leaves(h)) == 1


async def test_a_copy_in_place_whose_packet_was_not_marked_is_made_again_in_its_place(
    offices: tuple[Office, Office], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop after the copy's folder was put in place, before its packet was marked
    collected: the next start collects the packet again into the same folder (not a
    second one beside it), and logs no second leaf."""
    r, h = offices
    write = survey_cases.write_durably
    stops: list[str] = []

    def stopping_write(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.name.endswith(".done") and not stops and (path.parent / "SV-WC-SV-D").exists():
            stops.append(path.name)
            raise OSError("the node stopped here")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(survey_cases, "write_durably", stopping_write)
    async with aiohttp.ClientSession() as http:
        await _report_delivered(http, r, h, "WC-SV-D", "SV-WC-SV-D")
    async with asyncio.timeout(30):
        while not stops:
            await asyncio.sleep(0.05)
    monkeypatch.undo()
    monkeypatch.setattr(survey_cases, "SETTLE", timedelta(0))
    (collected,) = await h.layer.collect()
    assert collected.ok
    base = h.layer.reports_dir / "WC-SV-D"
    assert sorted(p.name for p in base.iterdir() if p.name[0] != ".") == ["SV-WC-SV-D"]
    assert collected.folder == base / "SV-WC-SV-D"
    assert _verify_cli(collected.folder, h.bundle) == 0
    assert len(_survey_leaves(h)) == 1
    assert await h.layer.collect() == []


async def test_a_node_started_again_queues_the_step_a_stop_left_unsent(
    offices: tuple[Office, Office], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real node's case layer at start (``CaseServices.start``): the packet of a step
    stored just before a stop is queued, and the partner's copy takes the step."""
    r, h = offices
    async with aiohttp.ClientSession() as http:
        body = {"matter": BOOKS, "handling": HANDLING, "case_id": "WC-UNSENT"}
        code, _ = await _json(http, "POST", r.url("/staff/v1/cases"), r, body)
        assert code == 201
        await _case_until(http, h, "WC-UNSENT", "submitted")
        services = h.cases.services
        assert services is not None

        async def stopped(**_: Any) -> Any:
            raise RuntimeError("the node stopped here")

        monkeypatch.setattr(services.desk._relay, "create_packet", stopped)
        url = h.url("/staff/v1/cases/WC-UNSENT/events")
        code, _ = await _json(http, "POST", url, h, {"event": "accept", "details": {}})
        assert code == 500
        monkeypatch.undo()
        services.started = services.desk.now()  # the node starts again
        await services.start()
        await _case_until(http, r, "WC-UNSENT", "accepted")


async def test_the_surveying_office_logs_the_report_when_its_packet_is_queued_and_not_before(
    offices: tuple[Office, Office], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sent report's leaf is appended in the transaction that queues its packet: a
    packet the relay refuses (here over the node's packet size limit; the step is undone)
    logs no leaf, and a node stopped as soon as the step returns has logged it."""
    r, h = offices
    core = r.node.core
    while not isinstance(core, RelayNode):  # under the layers' wrappers
        core = core._core
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-T")
        _surveyed(r, "WC-SV-T", "SV-WC-SV-T")
        url = r.url("/staff/v1/surveys/SV-WC-SV-T/send")
        policy = core._policy
        monkeypatch.setattr(core, "_policy", dataclasses.replace(policy, max_packet_bytes=2000))
        code, refused = await _json(http, "POST", url, r)
        assert code == 413, refused
        assert (refused["code"], refused["max_packet_bytes"]) == ("packet-too-large", 2000)
        assert r.cases.services.desk.get("WC-SV-T").case.state.value == "survey_requested"
        assert _survey_leaves(r) == []
        monkeypatch.setattr(core, "_policy", policy)

        act = CaseDesk.act

        async def act_then_stop(self: CaseDesk, *args: Any, **kwargs: Any) -> Any:
            await act(self, *args, **kwargs)
            raise RuntimeError("the node stopped here")

        monkeypatch.setattr(CaseDesk, "act", act_then_stop)
        code, _ = await _json(http, "POST", url, r)
        assert code == 500
        monkeypatch.undo()
        assert r.cases.services.desk.get("WC-SV-T").case.state.value == "survey_reported"
    (leaf,) = _survey_leaves(r)
    assert (leaf.body.case, leaf.body.id) == ("WC-SV-T", "SV-WC-SV-T")


async def test_the_surveying_office_refuses_to_send_a_report_whose_media_were_altered(
    offices: tuple[Office, Office],
) -> None:
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-2")
        media = _surveyed(r, "WC-SV-2", "SV-WC-SV-2")
        (media / "snap-0001.png").write_bytes(PNG[:-1] + b"\x00")
        code, refused = await _json(http, "POST", r.url("/staff/v1/surveys/SV-WC-SV-2/send"), r)
        assert code == 422
        assert refused["reason"] == "report-invalid"  # the console's sentence names it
        assert "report-invalid" in refused["detail"]
        code, case = await _json(http, "GET", r.url("/staff/v1/cases/WC-SV-2"), r)
        assert case["state"] == "survey_requested"
    assert _survey_leaves(r) == []


async def test_the_requesting_office_refuses_a_report_that_arrives_with_altered_media(
    offices: tuple[Office, Office], tmp_path: Path
) -> None:
    """A sender that skips its own check: the receiving node keeps the copy with
    refused.json, logs no survey-report leaf, and the copy does not verify."""
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-3")
        media = _surveyed(r, "WC-SV-3", "SV-WC-SV-3")
        bundle = TrustBundle.from_pem(r.bundle.read_bytes())
        token, report, files = report_files(media, bundle, datetime.now(UTC))
        forged = tmp_path / "forged"
        shutil.copytree(media, forged)
        (forged / "snap-0002.png").write_bytes(PNG + b"!")  # another picture, same name
        core, desk = r.node.core, r.cases.services.desk  # type: ignore[union-attr]
        from relay.http.survey_cases import _stage

        digests = [await _stage(core, forged / p.name) for p in files]
        details = {"outcome": "pass", "verdict": "pass_with_corrections", "report": token}
        await desk.act("WC-SV-3", EventKind.SURVEY_REPORT, details, attachments=digests)
        await _case_until(http, h, "WC-SV-3", "survey_reported")
    folder = await _received_folder(h, "WC-SV-3")
    failures = json.loads((folder / REFUSED_FILE).read_text())
    assert any(f.startswith("media-") for f in failures), failures
    assert _verify_cli(folder, h.bundle) == 1
    assert _survey_leaves(h) == []
    assert report.plan.case_id == "WC-SV-3"


async def _outbox_reason(office: Office, case_id: str, action_seq: int) -> str | None:
    async with asyncio.timeout(30):
        while True:
            items = [i for i in office.node.core.list_outbox() if i.summary.case_id == case_id]
            last = max(items, key=lambda i: i.summary.seq)
            if last.summary.seq >= action_seq and last.state.value in ("rejected", "delivered"):
                return last.reason
            await asyncio.sleep(0.05)


async def test_a_report_whose_seal_or_files_are_wrong_gets_a_signed_rejected_receipt(
    offices: tuple[Office, Office],
) -> None:
    """Judged in the receive pipeline: the packet is refused with content-refused:<code>
    (a signed rejected receipt in the sender's outbox), the requester's copy of the case
    does not move and nothing is collected."""
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-4")
        media = _surveyed(r, "WC-SV-4", "SV-WC-SV-4")
        bundle = TrustBundle.from_pem(r.bundle.read_bytes())
        token, _, files = report_files(media, bundle, datetime.now(UTC))
        core, desk = r.node.core, r.cases.services.desk  # type: ignore[union-attr]
        from relay.http.survey_cases import _stage

        head, payload, signature = token.split(".")
        broken = f"{head}.{payload}.{signature[:-4]}AAAA"
        digests = [await _stage(core, p) for p in files]
        details = {"outcome": "pass", "verdict": "pass_with_corrections", "report": broken}
        await desk.act("WC-SV-4", EventKind.SURVEY_REPORT, details, attachments=digests)
        seq = max(i.summary.seq for i in core.list_outbox() if i.summary.case_id == "WC-SV-4")
        reason = await _outbox_reason(r, "WC-SV-4", seq)
        assert reason == "content-refused:survey-report-invalid"
        _, case = await _json(http, "GET", h.url("/staff/v1/cases/WC-SV-4"), h)
        assert case["state"] == "survey_requested"
        # the copies differ now: the surveying office's staff are told
        code, board = await _json(http, "GET", r.url("/staff/v1/alerts"), r)
        assert code == 200, board
        (alert,) = [a for a in board["alerts"] if a["code"] == "survey-report-refused"]
        assert alert["case_id"] == "WC-SV-4"
        assert alert["reason"] == "content-refused:survey-report-invalid"
        assert alert["severity"] == "critical"
        assert alert["title"]["zh"].startswith("对方机关拒收了勘查报告")
    assert not (h.layer.reports_dir / "WC-SV-4").exists()
    assert _survey_leaves(h) == []


async def test_a_report_missing_a_snapshot_is_refused_by_the_requester(
    offices: tuple[Office, Office],
) -> None:
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-5")
        media = _surveyed(r, "WC-SV-5", "SV-WC-SV-5")
        bundle = TrustBundle.from_pem(r.bundle.read_bytes())
        token, _, files = report_files(media, bundle, datetime.now(UTC))
        core, desk = r.node.core, r.cases.services.desk  # type: ignore[union-attr]
        from relay.http.survey_cases import _stage

        digests = [await _stage(core, p) for p in files[:-1]]  # snap-0002.png left out
        details = {"outcome": "pass", "verdict": "pass_with_corrections", "report": token}
        await desk.act("WC-SV-5", EventKind.SURVEY_REPORT, details, attachments=digests)
        seq = max(i.summary.seq for i in core.list_outbox() if i.summary.case_id == "WC-SV-5")
        assert await _outbox_reason(r, "WC-SV-5", seq) == "content-refused:survey-files-mismatch"
        _, case = await _json(http, "GET", h.url("/staff/v1/cases/WC-SV-5"), h)
        assert case["state"] == "survey_requested"


async def test_a_report_naming_the_surveyor_as_requester_is_not_sent_and_no_copy_moves(
    offices: tuple[Office, Office],
) -> None:
    """The partner would refuse it (survey-wrong-case) after our copy had moved to
    survey_reported: refused before anything is sent, both copies stay as they were."""
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-6")
        _surveyed(r, "WC-SV-6", "SV-WC-SV-6", requesting=RECEIVING)
        code, refused = await _json(http, "POST", r.url("/staff/v1/surveys/SV-WC-SV-6/send"), r)
        assert code == 422, refused
        assert refused["detail"].startswith("wrong-offices:")
        assert HANDLING in refused["detail"]
        for office in (r, h):
            _, case = await _json(http, "GET", office.url("/staff/v1/cases/WC-SV-6"), office)
            assert case["state"] == "survey_requested"
        items = [i for i in r.node.core.list_outbox() if i.summary.case_id == "WC-SV-6"]
        assert all(i.summary.action != "survey-report" for i in items)
    assert _survey_leaves(r) == []
