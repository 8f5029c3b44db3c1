"""The console's staff API with bearer tokens, on two in-process offices: hand-in with
the applicant's data and an uploaded attachment, the handling office's queue and case
page (names, checklist, allowed steps), live updates when the partner's packet is
applied, the licence sealed from the console, roles and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from casekit import HANDLING, RECEIVING
from casekit_offices import Clock, Office, Offices, make_offices, serve
from console_kit import CATEGORIES, with_categories

from agreements.catalog import default_catalog
from relay.alerts import ALERTS, Severity, StaffAlert
from relay.cases.model import EventKind
from relay.cases.terms import load_terms
from relay.cases.tracking import TrackingDenied
from relay.console.acks import AlertAcks
from relay.console.http import Console, add_console_routes
from relay.console.licensing import LicenceDesk
from relay.staff_auth import StaffRole
from signing.licence import parse_licence

BOOKS = "publication-retail-licence"


def console_app(
    offices: Offices,
    office: Office,
    acks: Path | None = None,
    reads: list[tuple[str, ...]] | None = None,
) -> web.Application:
    clock = offices.clock
    app = office.staff(clock)
    console = Console(
        desk=office.desk,
        core=office.relay,
        terms=load_terms([offices.pki.agreement], offices.pki.bundle, at=clock()),
        catalog=default_catalog(),
        licences=LicenceDesk(
            desk=office.desk,
            signer=offices.pki.keys[office.node_id].seal,
            public_base=f"http://127.0.0.1/{office.node_id}",
            clock=clock,
        ),
        acks=AlertAcks(acks),
        personal_reads=None if reads is None else lambda *read: reads.append(read),
    )
    add_console_routes(app, console)
    return app


def auth(office: Office, clock: Clock, role: StaffRole = StaffRole.CLERK) -> dict[str, str]:
    return {"Authorization": f"Bearer {office.staff_token(clock, role)}"}


async def _read_event(resp: aiohttp.ClientResponse) -> str:
    """The name of the next Server-Sent Event (comments skipped)."""
    return (await _read_event_data(resp))[0]


async def _read_event_data(resp: aiohttp.ClientResponse) -> tuple[str, str]:
    """The name and data of the next Server-Sent Event (comments skipped)."""
    name = data = ""
    while True:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and name:
            return name, data


async def _upload(http: aiohttp.ClientSession, base: str, headers: dict[str, str],
                  data: bytes, name: str) -> str:  # fmt: skip
    """Stage ``data`` in two resumable pieces, as the page does."""
    digest = hashlib.sha256(data).hexdigest()
    url = f"{base}/staff/v1/attachments/{digest}"
    half = len(data) // 2
    for start, end in ((0, half), (half, len(data))):
        async with http.head(url, headers=headers) as resp:
            assert int(resp.headers["Upload-Offset"]) == start
        piece = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        async with http.put(url, params={"name": name}, data=data[start:end], headers=piece) as r:
            assert r.status in (200, 201), await r.text()
    return digest


@pytest.fixture
def console_offices(office_pki, tmp_path, clock) -> Iterator[Offices]:
    """The two offices under an agreement listing the hand-in form's data categories."""
    pair = make_offices(with_categories(office_pki), tmp_path, clock)
    yield pair
    pair.close()


async def test_hand_in_reaches_the_handling_office_live_with_its_standard(console_offices):
    offices = console_offices
    clock, r, h = offices.clock, offices.r, offices.h
    scan = b"%PDF-1.4 licence scan " * 4000
    reads: list[tuple[str, ...]] = []
    async with (
        serve(console_app(offices, r)) as base_r,
        serve(console_app(offices, h, reads=reads)) as base_h,
        aiohttp.ClientSession() as http,
    ):
        # the handling office's console listens before anything happens
        events = await http.get(f"{base_h}/staff/v1/console/events", headers=auth(h, clock))
        assert events.headers["Content-Type"].startswith("text/event-stream")
        assert await _read_event(events) == "hello"

        matters = await (
            await http.get(f"{base_r}/staff/v1/console/matters", headers=auth(r, clock))
        ).json()
        books = next(m for m in matters["matters"] if m["matter"] == BOOKS)
        assert books["name_zh"] == "出版物零售业务许可"
        assert [o["id"] for o in books["handling"]] == [HANDLING]
        standard = [m["name_zh"] for m in books["materials"]]
        assert standard, "the agreement's clause names the materials"

        assert books["categories"] == list(CATEGORIES)
        digest = await _upload(http, base_r, auth(r, clock), scan, "营业执照.pdf")
        identity = {"name": "武昌书店", "id_type": "unified-social-credit-code",
                    "id_number": "91420106MA4KXXXX1X"}  # fmt: skip
        body = {
            "matter": BOOKS, "handling": HANDLING,
            "application": {
                "applicant-identity": identity,
                "case-materials": [{"material": standard[0], "digest": digest}],
            },
            "materials": standard[:1], "attachments": [digest],
        }  # fmt: skip
        async with http.post(
            f"{base_r}/staff/v1/console/cases", json=body, headers=auth(r, clock)
        ) as resp:
            assert resp.status == 201, await resp.text()
            opened = await resp.json()
        case_id = opened["case"]
        assert opened["access_code"]
        assert opened["tracking_url"].startswith(f"http://127.0.0.1/{RECEIVING}/track#link=")

        await offices.deliver()
        assert await asyncio.wait_for(_read_event(events), 30) == "changed"
        events.close()

        queue = await (
            await http.get(f"{base_h}/staff/v1/console/queue?turn=1", headers=auth(h, clock))
        ).json()
        assert [c["case"] for c in queue["cases"]] == [case_id]
        row = queue["cases"][0]
        assert row["our_turn"] is True
        assert queue["counts"]["submitted"] == 1
        assert row["matter_names"]["name_zh"] == "出版物零售业务许可"
        assert row["receiving_office"]["name_zh"] == "武昌区政务服务中心"
        assert row["clock"]["colour"] == "green"

        page = await (
            await http.get(f"{base_h}/staff/v1/console/cases/{case_id}", headers=auth(h, clock))
        ).json()
        assert page["applicant"] == identity  # entered once, never re-typed
        # a read of the applicant's personal data, in the access log (it was in none): once
        # per person and case an hour, however often the page refreshes
        for _ in range(2):
            await http.get(f"{base_h}/staff/v1/console/cases/{case_id}", headers=auth(h, clock))
        [(who, read_case, purpose)] = reads
        assert read_case == case_id
        assert who
        assert "办理本案件" in purpose
        assert page["application"]["case-materials"] == [
            {"material": standard[0], "digest": digest}
        ]
        assert page["public_base"] == f"http://127.0.0.1/{HANDLING}"
        assert page["surveyor"] is None
        async with http.post(
            f"{base_h}/staff/v1/console/qr", json={"text": "http://x/survey/v1/site#token=a"},
            headers=auth(h, clock),
        ) as resp:  # fmt: skip
            assert resp.status == 200
            assert resp.content_type == "image/svg+xml"
        async with http.post(  # within the request's limit, beyond what one QR code holds
            f"{base_h}/staff/v1/console/qr", json={"text": "http://x/" + "a" * 3900},
            headers=auth(h, clock),
        ) as resp:  # fmt: skip
            assert resp.status == 413  # was a 500
            assert (await resp.json())["code"] == "body-too-large"
        statuses = {m["name_zh"]: m["status"] for m in page["checklist"]}
        assert statuses[standard[0]] == "received"
        assert all(statuses[m] == "missing" for m in standard[1:])
        assert {a["event"] for a in page["actions"]} == {
            "accept", "reject", "request-correction",
        }  # fmt: skip
        [attachment] = page["attachments"]
        assert attachment["name"] == "营业执照.pdf"
        async with http.get(
            f"{base_h}/staff/v1/console/attachments/{attachment['digest']}?case={case_id}",
            headers=auth(h, clock),
        ) as resp:
            assert resp.status == 200
            assert await resp.read() == scan
        # the applicant's scan is personal data: each download is in the access log, and
        # one asked for outside its case is not served
        assert reads[-1] == (reads[-1][0], case_id, reads[-1][2], "attachment")
        async with http.get(
            f"{base_h}/staff/v1/console/attachments/{attachment['digest']}",
            headers=auth(h, clock),
        ) as resp:
            assert resp.status == 404

        # a person sees only the steps their roles allow (relay.permissions)
        def steps_for(role: StaffRole) -> Any:
            return http.get(
                f"{base_h}/staff/v1/console/cases/{case_id}", headers=auth(h, clock, role)
            )

        for role, expected in (
            (StaffRole.APPROVER, {"accept", "reject", "request-correction"}),
            (StaffRole.LICENCE_OFFICER, set()),
            (StaffRole.READER, set()),
        ):
            async with steps_for(role) as resp:
                assert {a["event"] for a in (await resp.json())["actions"]} == expected, role
        step = {"event": "accept", "details": {}}
        async with http.post(
            f"{base_h}/staff/v1/console/cases/{case_id}/steps", json=step,
            headers=auth(h, clock, StaffRole.LICENCE_OFFICER),
        ) as resp:  # fmt: skip
            assert resp.status == 403
            assert (await resp.json())["action"] == "decide"

        # the receiving office may not act for the handling office
        page_r = await (
            await http.get(f"{base_r}/staff/v1/console/cases/{case_id}", headers=auth(r, clock))
        ).json()
        assert {a["event"] for a in page_r["actions"]} == {"withdraw"}

        # a correction naming a missing material, then supplied
        step = {"event": "request-correction", "details": {"missing": standard[1:2]}}
        async with http.post(
            f"{base_h}/staff/v1/console/cases/{case_id}/steps", json=step, headers=auth(h, clock)
        ) as resp:
            assert resp.status == 200, await resp.text()
            after = await resp.json()
        assert after["clock"]["state"] == "paused"
        assert {m["name_zh"]: m["status"] for m in after["checklist"]}[standard[1]] == (
            "correction"
        )
        assert after["timeline"][-1]["details"]["staff"] == "clerk-1"
        await offices.deliver()
        mine = await (
            await http.get(f"{base_r}/staff/v1/console/queue?mine=1", headers=auth(r, clock))
        ).json()
        assert mine["total"] == 0  # clerk-1 of the receiving office has not acted yet
        step = {"event": "supplement", "details": {"supplied": standard[1:2]}}
        async with http.post(
            f"{base_r}/staff/v1/console/cases/{case_id}/steps", json=step, headers=auth(r, clock)
        ) as resp:
            assert resp.status == 200, await resp.text()
        await offices.deliver()
        for event, details in (("accept", {}), ("decide", {"decision": "approve"})):
            async with http.post(
                f"{base_h}/staff/v1/console/cases/{case_id}/steps",
                json={"event": event, "details": details}, headers=auth(h, clock),
            ) as resp:  # fmt: skip
                assert resp.status == 200, await resp.text()

        licence = {"holder_name": "武昌书店", "holder_id": "91420106MA4KXXXX1X",
                   "scope": "图书零售", "valid_days": 365}  # fmt: skip
        for role in (StaffRole.READER, StaffRole.APPROVER):  # issuing needs 'licence'
            async with http.post(
                f"{base_h}/staff/v1/console/cases/{case_id}/licence", json=licence,
                headers=auth(h, clock, role),
            ) as resp:  # fmt: skip
                assert resp.status == 403
        async with http.post(
            f"{base_h}/staff/v1/console/cases/{case_id}/licence", json=licence,
            headers=auth(h, clock),
        ) as resp:  # fmt: skip
            assert resp.status == 201, await resp.text()
            issued = await resp.json()
        assert issued["state"] == "licence_issued"
        sealed = parse_licence(issued["licence"])
        assert (sealed.holder_name, sealed.issuer_node) == ("武昌书店", HANDLING)
        assert sealed.department_zh == "大丰区行政审批局"
        async with http.get(
            f"{base_h}/staff/v1/console/cases/{case_id}/licence.svg", headers=auth(h, clock)
        ) as resp:
            assert resp.status == 200
            assert (await resp.read()).startswith(b"<")
        await offices.deliver()
        page_r = await (
            await http.get(f"{base_r}/staff/v1/console/cases/{case_id}", headers=auth(r, clock))
        ).json()
        assert page_r["state"] == "licence_issued"
        assert {a["event"] for a in page_r["actions"]} == {"deliver"}


async def test_nothing_without_credentials_and_bad_input_is_a_problem(offices):
    clock, r = offices.clock, offices.r
    async with serve(console_app(offices, r)) as base, aiohttp.ClientSession() as http:
        for path in ("/", "/console/console.js", "/staff/v1/console/queue",
                     "/staff/v1/console/events"):  # fmt: skip
            async with http.get(f"{base}{path}") as resp:
                assert resp.status == 401, path
        async with http.get(f"{base}/", headers=auth(r, clock)) as resp:
            assert resp.status == 200
            assert "通办工作台" in await resp.text()
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        for name in ("console.js", "i18n.js", "console.css"):
            async with http.get(f"{base}/console/{name}", headers=auth(r, clock)) as resp:
                assert resp.status == 200
        async with http.get(f"{base}/console/secret.py", headers=auth(r, clock)) as resp:
            assert resp.status == 404
        headers = auth(r, clock)
        bad: list[tuple[dict[str, Any], str]] = [
            ({"matter": BOOKS, "handling": "x"}, "node id"),
            ({"matter": BOOKS, "handling": HANDLING, "application": ["x"]}, "application"),
            ({"matter": BOOKS, "handling": HANDLING, "attachments": ["zz"]}, "attachments"),
        ]
        for body, words in bad:
            async with http.post(f"{base}/staff/v1/console/cases", json=body, headers=headers) as x:
                assert x.status == 400
                problem = await x.json()
                assert words in problem["detail"]
        for query in ("partner=abc", "state=nonsense", "limit=0", "limit=2001", "limit=x"):
            async with http.get(f"{base}/staff/v1/console/queue?{query}", headers=headers) as x:
                assert x.status == 400, query
                assert (await x.json())["code"] == "invalid-request"
        async with http.get(f"{base}/staff/v1/console/cases/none", headers=headers) as x:
            assert x.status == 404
        reader = auth(r, clock, StaffRole.READER)
        body = {"matter": BOOKS, "handling": HANDLING}
        async with http.post(f"{base}/staff/v1/console/cases", json=body, headers=reader) as x:
            assert x.status == 403
        async with http.post(f"{base}/staff/v1/console/cases", json=body, headers=headers) as x:
            case_id = (await x.json())["case"]
        step = {"event": "accept", "details": {}}
        async with http.post(
            f"{base}/staff/v1/console/cases/{case_id}/steps", json=step, headers=headers
        ) as x:
            assert x.status == 409  # the handling office's step, not ours
            assert (await x.json())["reason"] == "wrong-office"
        for own in ({"event": "rate", "details": {"rating": "good"}},
                    {"event": "complain", "details": {"text": "职员代填"}}):  # fmt: skip
            async with http.post(
                f"{base}/staff/v1/console/cases/{case_id}/steps", json=own, headers=headers
            ) as x:  # the applicant's own, on the tracking page: a clerk's locked them out
                assert x.status == 403
                assert "applicant" in (await x.json())["detail"]
        me = await (await http.get(f"{base}/staff/v1/console/me", headers=headers)).json()
        assert me["office"] == {"id": RECEIVING, "name_zh": "武昌区政务服务中心",
                                "name_en": "Wuchang District Service Centre"}  # fmt: skip


async def test_a_burst_of_changes_reaches_a_console_as_few_events_the_last_one_included(
    offices, monkeypatch
):
    """Cases changed in a burst (a backlog applied packet by packet does the same) make
    an open console's stream send one `changed` event, then one per interval: not one
    per change (each makes the page read its queue again). The changes made after an
    event are not lost: an event follows them, carrying the desk's last generation. The
    queue answers one state's rows at a time, at most ``limit`` of them, with the
    counts of every state."""
    import relay.console.http as console_http

    every = 2.0
    monkeypatch.setattr(console_http, "CHANGED_EVERY_SECONDS", every)
    clock, r = offices.clock, offices.r
    headers = auth(r, clock)
    burst = 12
    async with serve(console_app(offices, r)) as base, aiohttp.ClientSession() as http:
        events = await http.get(f"{base}/staff/v1/console/events", headers=headers)
        assert await _read_event(events) == "hello"
        received: list[tuple[float, int]] = []

        async def listen() -> None:
            loop = asyncio.get_running_loop()
            while True:
                name, data = await _read_event_data(events)
                if name == "changed":
                    received.append((loop.time(), json.loads(data)["generation"]))

        listening = asyncio.ensure_future(listen())
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = {"matter": BOOKS, "handling": HANDLING}
        for _ in range(burst):
            async with http.post(f"{base}/staff/v1/console/cases", json=body, headers=headers) as x:
                assert x.status == 201, await x.text()
        ended = loop.time()
        last = r.desk.generation
        deadline = ended + every + 10
        while not (received and received[-1][1] == last) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        listening.cancel()
        events.close()
        assert received, "no changed event at all"
        assert received[-1][1] == last, "the changes after the last event were not announced"
        during = [t for t, _ in received if t <= ended]
        # one at the first change, then at most one per interval (and one slack)
        assert len(during) <= 2 + (ended - started) / every, (len(during), ended - started)
        assert len(received) < burst

        async def queue(query: str) -> dict[str, Any]:
            async with http.get(f"{base}/staff/v1/console/queue?{query}", headers=headers) as x:
                assert x.status == 200, await x.text()
                return dict(await x.json())

        everything = await queue("")
        assert everything["total"] == everything["shown"] == burst
        assert everything["counts"]["submitted"] == burst
        assert everything["limit"] == console_http.QUEUE_LIMIT
        some = await queue("state=submitted&limit=5")
        assert (some["total"], some["shown"], len(some["cases"])) == (burst, burst, 5)
        assert [c["case"] for c in some["cases"]] == [c["case"] for c in everything["cases"][:5]]
        none = await queue("state=concluded")
        assert (none["total"], none["shown"], none["cases"]) == (burst, 0, [])

        # consoles asking the same queue for the same cases share one computation; a
        # change makes the next ask compute it again
        reads = []
        entries = r.desk.queue_entries
        monkeypatch.setattr(r.desk, "queue_entries", lambda **kw: reads.append(1) or entries(**kw))
        first, again = await queue("limit=7"), await queue("limit=7")
        assert first == again
        assert len(reads) == 1
        body = {"matter": BOOKS, "handling": HANDLING}
        async with http.post(f"{base}/staff/v1/console/cases", json=body, headers=headers) as x:
            assert x.status == 201
        after = await queue("limit=7")
        assert len(reads) == 2
        assert after["total"] == burst + 1


async def test_an_alert_is_taken_on_by_a_named_person_and_that_is_kept(offices, tmp_path):
    clock, r = offices.clock, offices.r
    path = tmp_path / "console" / "alert-acks.jsonl"
    app = console_app(offices, r, path)
    red = StaffAlert(
        id="cases:red:WC-1", source="cases", code="red-card", severity=Severity.CRITICAL,
        at=clock(), title_zh="办件超期", title_en="A case is overdue", detail="WC-1",
    )  # fmt: skip
    app[ALERTS].add_source("test", lambda now: [red])
    async with serve(app) as base, aiohttp.ClientSession() as http:
        url = f"{base}/staff/v1/console/alerts"
        board = await (await http.get(url, headers=auth(r, clock))).json()
        assert [(a["id"], a["acknowledged"]) for a in board["alerts"]] == [("cases:red:WC-1", None)]
        async with http.post(
            f"{url}/cases:red:WC-1/ack", json={"note": "我来催办"}, headers=auth(r, clock)
        ) as resp:
            assert resp.status == 201
        async with http.post(f"{url}/nothing/ack", json={}, headers=auth(r, clock)) as resp:
            assert resp.status == 404
        board = await (await http.get(url, headers=auth(r, clock))).json()
        ack = board["alerts"][0]["acknowledged"]
        assert (ack["person"], ack["note"]) == ("clerk-1", "我来催办")
    again = AlertAcks(path)  # after a restart
    kept = again.of("cases:red:WC-1")
    assert kept is not None
    assert kept.person == "clerk-1"


async def test_the_office_that_surveyed_on_site_records_its_outcome_from_the_console(offices):
    """The handling office surveys the site itself (or a remote survey became an on-site
    visit): its case page offers the step that records the outcome, and the partner's
    copy of the case follows."""
    clock, r, h = offices.clock, offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, EventKind.ACCEPT, {})
    await h.desk.act(case_id, EventKind.REQUEST_SURVEY, {"surveyor": "handling"})
    await offices.deliver()
    async with serve(console_app(offices, h)) as base, aiohttp.ClientSession() as http:
        page_url = f"{base}/staff/v1/console/cases/{case_id}"
        page = await (await http.get(page_url, headers=auth(h, clock))).json()
        assert "survey-report" in {a["event"] for a in page["actions"]}
        step = {"event": "survey-report",
                "details": {"outcome": "fail", "report": "消防通道堆放杂物"}}  # fmt: skip
        async with http.post(f"{page_url}/steps", json=step, headers=auth(h, clock)) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        assert page["state"] == "survey_reported"
        assert page["timeline"][-1]["details"]["report"] == "消防通道堆放杂物"
    await offices.deliver()
    assert r.desk.get(case_id).case.state.value == "survey_reported"


async def test_an_applicant_who_lost_the_access_code_gets_a_new_one_at_the_counter(offices):
    """The code was made once, at hand-in, and nothing made another: an applicant who
    lost it could never track, rate or complain, and the counter the page sent them to
    could not help."""
    clock, r, h = offices.clock, offices.r, offices.h
    async with (
        serve(console_app(offices, r)) as base_r,
        serve(console_app(offices, h)) as base_h,
        aiohttp.ClientSession() as http,
    ):
        body = {"matter": BOOKS, "handling": HANDLING}
        async with http.post(f"{base_r}/staff/v1/console/cases", json=body,
                             headers=auth(r, clock)) as x:  # fmt: skip
            opened = await x.json()
        case_id, old = opened["case"], opened["access_code"]
        await r.desk.lookup(case_id, old, "counter")
        found_link = opened["tracking_path"].split("#link=", 1)[1]
        assert r.desk.lookup_link(found_link).case.header.case_id == case_id
        path = f"/staff/v1/console/cases/{case_id}/access-code"
        reader = auth(r, clock, StaffRole.READER)
        async with http.post(f"{base_r}{path}", json={}, headers=reader) as x:
            assert x.status == 403
        async with http.post(f"{base_r}{path}", json={}, headers=auth(r, clock)) as x:
            assert x.status == 201
            issued = await x.json()
        new = issued["access_code"]
        assert new != old
        assert issued["tracking_path"].startswith("/track#link=")
        assert (await r.desk.lookup(case_id, new, "applicant")).case.header.case_id == case_id
        with pytest.raises(TrackingDenied):
            await r.desk.lookup(case_id, old, "someone")
        with pytest.raises(TrackingDenied):  # nor does a link of the old code
            r.desk.lookup_link(found_link)
        new_link = issued["tracking_path"].split("#link=", 1)[1]
        assert r.desk.lookup_link(new_link).case.header.case_id == case_id
        await offices.deliver()
        async with http.post(f"{base_h}{path}", json={}, headers=auth(h, clock)) as x:
            assert x.status == 409  # the handling office gives no access code
            assert (await x.json())["reason"] == "wrong-office"
