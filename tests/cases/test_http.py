"""The staff case routes and the public tracking/verification API on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import timedelta

import aiohttp
import pytest
from casekit import HANDLING
from casekit_offices import free_port, make_offices, serve

from relay.cases.model import EventKind
from signing.encoding import b64url, b64url_decode, canonical_json
from signing.licence import Licence, StatusEntry, issue_licence
from signing.status_list import (
    StatusList,
    StatusListCredential,
    StatusPurpose,
    revoke,
    sign_status_list,
)

BOOKS = "publication-retail-licence"
FOOD = "food-business-licence"


def auth(office, clock) -> dict[str, str]:
    return {"Authorization": f"Bearer {office.staff_token(clock)}"}


async def staff_get(http, url, office, clock) -> dict:
    async with http.get(url, headers=auth(office, clock)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def staff_post(http, url, office, clock, body) -> tuple[int, dict]:
    async with http.post(url, json=body, headers=auth(office, clock)) as resp:
        return resp.status, await resp.json()


async def post(http, url, body) -> tuple[int, dict]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def open_case(http, url, office, clock, **body) -> dict:
    payload = {"matter": BOOKS, "handling": HANDLING, "materials": ["营业执照"], **body}
    async with http.post(f"{url}/staff/v1/cases", json=payload, headers=auth(office, clock)) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def test_staff_opens_acts_and_lists_overdue(offices, clock):
    r, h = offices.r, offices.h
    async with (
        serve(r.staff(clock)) as r_url,
        serve(h.staff(clock)) as h_url,
        aiohttp.ClientSession() as http,
    ):
        opened = await open_case(http, r_url, r, clock, case_id="WC-HTTP-1", matter=FOOD)
        assert len(opened["access_code"]) == 11
        assert opened["case"]["state"] == "submitted"
        assert opened["tracking_path"].startswith("/track#link=")
        await offices.deliver()
        events = f"{h_url}/staff/v1/cases/WC-HTTP-1/events"
        body = {"event": "request-correction", "details": {"missing": ["房屋租赁合同"]}}
        status, case = await staff_post(http, events, h, clock, body)
        assert status == 200
        assert case["state"] == "correction_requested"
        status, problem = await staff_post(http, events, h, clock, {"event": "decide"})
        assert status == 400  # a decision needs its details
        assert problem["code"] == "invalid-request"
        status, problem = await staff_post(http, events, h, clock, {"event": "accept"})
        assert status == 409
        assert problem["reason"] == "wrong-state"
        await offices.deliver()
        case = await staff_get(http, f"{r_url}/staff/v1/cases/WC-HTTP-1", r, clock)
        assert case["missing"] == ["房屋租赁合同"]
        assert case["clock"]["state"] == "paused"
        assert case["timeline"][1]["details"] == {"missing": ["房屋租赁合同"]}
        clock.advance(days=10)
        overdue = f"{h_url}/staff/v1/cases?overdue=1"
        assert (await staff_get(http, overdue, h, clock))["cases"] == []  # paused
        await r.desk.act("WC-HTTP-1", EventKind.SUPPLEMENT, {})
        await offices.deliver()
        clock.advance(days=16)  # 12 working days since the supplement, 10 allowed
        [late] = (await staff_get(http, overdue, h, clock))["cases"]
        assert late["case"] == "WC-HTTP-1"
        assert late["clock"]["colour"] == "red"


async def test_tracking_by_code_is_throttled_and_never_shows_another_case(offices, clock):
    async with (
        serve(offices.r.staff(clock)) as staff,
        serve(offices.r.public()) as public,
        aiohttp.ClientSession() as http,
    ):
        if True:
            mine = await open_case(http, staff, offices.r, clock, case_id="WC-MINE")
            other = await open_case(http, staff, offices.r, clock, case_id="WC-OTHER")
            track = f"{public}/public/v1/track"
            async with http.post(track, json={"case": "WC-MINE", "code": mine["access_code"]}) as r:
                view = await r.json()
                assert r.status == 200
            assert view["case"] == "WC-MINE"
            assert view["state_label"] == "办理地审查中"
            assert view["steps"][0]["office"]["name"] == "武昌区政务服务中心"
            # another applicant's code never opens this case, and vice versa
            status, problem = await post(
                http, track, {"case": "WC-MINE", "code": other["access_code"]}
            )
            assert status == 404
            assert "WC-OTHER" not in json.dumps(problem)
            statuses = []
            for guess in range(8):
                body = {"case": "WC-OTHER", "code": f"2222{guess}-22222"}
                async with http.post(track, json=body) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        problem = await r.json()
                        assert r.headers["Content-Type"].startswith("application/problem+json")
                        assert int(r.headers["Retry-After"]) >= 1
                        assert problem["code"] == "too-many-requests"
            assert statuses[:4] == [404] * 4  # one attempt spent above
            assert statuses[-1] == 429
            # even the right code waits once the case number is throttled
            status, _ = await post(http, track, {"case": "WC-OTHER", "code": other["access_code"]})
            assert status == 429
            async with http.get(track, params={"link": view["link"], "lang": "en"}) as r:
                linked = await r.json()
            assert linked["case"] == "WC-MINE"
            assert linked["state_label"] == "Under review by the handling office"
            forged = view["link"][:-4] + "AAAA"
            async with http.get(track, params={"link": forged}) as r:
                assert r.status == 404


async def test_websocket_pushes_the_next_step_and_switches_language(offices, clock):
    async with (
        serve(offices.r.staff(clock)) as staff,
        serve(offices.r.public()) as public,
        aiohttp.ClientSession() as http,
    ):
        if True:
            opened = await open_case(http, staff, offices.r, clock, case_id="WC-WS")
            await offices.deliver()
            ws_url = f"{public}/public/v1/track/ws"
            async with http.ws_connect(ws_url, params={"link": opened["tracking_link"]}) as ws:
                first = json.loads((await ws.receive(timeout=5)).data)["view"]
                assert [s["event"] for s in first["steps"]] == ["submit"]
                await offices.h.desk.act("WC-WS", EventKind.ACCEPT, {"note": "内部备注"})
                await offices.deliver()
                pushed = json.loads((await ws.receive(timeout=5)).data)["view"]
                assert [s["label"] for s in pushed["steps"]] == ["收件并提交办理地", "受理"]
                assert "内部备注" not in json.dumps(pushed, ensure_ascii=False)
                await ws.send_str(json.dumps({"lang": "en"}))
                english = json.loads((await ws.receive(timeout=5)).data)["view"]
                assert english["steps"][1]["label"] == "Accepted"


async def test_rating_only_after_conclusion_and_complaints_reach_the_handling_office(
    offices, clock
):
    async with (
        serve(offices.r.staff(clock)) as staff,
        serve(offices.r.public()) as public,
        aiohttp.ClientSession() as http,
    ):
        if True:
            opened = await open_case(http, staff, offices.r, clock, case_id="WC-RATE")
            link = opened["tracking_link"]
            await offices.deliver()
            rate = {"link": link, "rating": "good"}
            async with http.post(f"{public}/public/v1/track/rating", json=rate) as r:
                assert r.status == 409
            body = {"link": link, "text": "窗口说要等很久"}
            async with http.post(f"{public}/public/v1/track/complaint", json=body) as r:
                view = await r.json()
                assert r.status == 200
            assert view["complaints"][0]["respond_by"] is not None
            await offices.deliver()
            [complaint] = offices.h.desk.get("WC-RATE").case.view.open_complaints
            assert complaint.text == "窗口说要等很久"


async def test_public_licence_verification_fetches_the_issuers_status_list(
    office_pki, tmp_path, clock
):
    port = free_port()
    issuer_url = f"http://127.0.0.1:{port}"
    offices = make_offices(office_pki, tmp_path / "nodes", clock, {HANDLING: issuer_url})
    async with serve(offices.h.public(), port):
        try:
            status_dir = tmp_path / "nodes" / HANDLING / "status"
            status_dir.mkdir(parents=True)
            signer = office_pki.keys[HANDLING].seal
            lists = {}
            for purpose in StatusPurpose:
                url = f"{issuer_url}/.well-known/tongban/status/{purpose.value}"
                lst = StatusList.empty(purpose)
                if purpose is StatusPurpose.REVOCATION:
                    lst = revoke(lst, 7)
                cred = StatusListCredential(
                    issuer_node=HANDLING, url=url, status_list=lst, issued_at=clock(),
                    valid_from=clock(), valid_until=clock() + timedelta(days=7),
                )  # fmt: skip
                lists[purpose] = url
                (status_dir / f"{purpose.value}.jwt").write_text(
                    sign_status_list(cred, signer, at=clock())
                )
            tokens = {}
            for index in (3, 7):
                licence = Licence(
                    issuer_node=HANDLING, number=f"XK-{index}", licence_type=BOOKS,
                    holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
                    department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
                    issued_at=clock(), valid_from=clock(),
                    valid_until=clock() + timedelta(days=365),
                    status=tuple(StatusEntry(p, index, u) for p, u in lists.items()),
                )  # fmt: skip
                tokens[index] = issue_licence(licence, signer, at=clock())
            async with serve(offices.r.public()) as verifier, aiohttp.ClientSession() as http:
                results = {}
                endpoint = f"{verifier}/public/v1/licences/verify"
                for index, token in tokens.items():
                    _, results[index] = await post(http, endpoint, {"token": token})
                head, payload, sig = tokens[3].split(".")
                flipped = "AAAA" if payload[-4:] != "AAAA" else "BBBB"
                tampered = f"{head}.{payload[:-4]}{flipped}.{sig}"
                _, bad = await post(http, endpoint, {"token": tampered})
                claims = json.loads(b64url_decode(payload))
                far = b64url(canonical_json({**claims, "exp": 10**12}))
                far_status, far_off = await post(http, endpoint, {"token": f"{head}.{far}.{sig}"})
        finally:
            offices.close()
    assert results[3]["valid"] is True
    assert results[7]["valid"] is False
    assert results[7]["failure"] == "revoked"
    assert bad["valid"] is False
    assert far_status != 500, far_off  # a date no calendar holds is bad input
    assert far_off.get("valid") is not True
    assert bad["failure"] == "signature"
    assert {c["check"]: c["outcome"] for c in results[3]["checks"]}["entitlement"] == "passed"


async def test_a_step_while_the_cases_step_before_is_unsent_is_refused_with_a_retry_after(
    offices, clock, monkeypatch
):
    r, h = offices.r, offices.h
    async with (
        serve(r.staff(clock)) as r_url,
        serve(h.staff(clock)) as h_url,
        aiohttp.ClientSession() as http,
    ):
        await open_case(http, r_url, r, clock, case_id="WC-HTTP-UNSENT")
        await offices.deliver()

        async def stopped(**_):
            raise KeyboardInterrupt  # the worker stops between the step and its packet

        monkeypatch.setattr(h.desk._relay, "create_packet", stopped)
        with pytest.raises(KeyboardInterrupt):
            await h.desk.act("WC-HTTP-UNSENT", EventKind.ACCEPT, {})
        monkeypatch.undo()
        events = f"{h_url}/staff/v1/cases/WC-HTTP-UNSENT/events"
        body = {"event": "decide", "details": {"decision": "approve"}}
        async with http.post(events, json=body, headers=auth(h, clock)) as resp:
            assert resp.status == 409
            assert resp.headers["Retry-After"] == "5"
            problem = await resp.json()
        assert problem["reason"] == "step-in-flight"
        assert "try again" in problem["detail"]
        assert h.desk.get("WC-HTTP-UNSENT").case.state.value == "accepted"
