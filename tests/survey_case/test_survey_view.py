"""A case's sealed survey report in readable form, with its snapshots as thumbnails,
at both offices (two real nodes): the checklist with its texts and answers, the
verdict, the snapshots served only as the bytes the signed report names, and only to
staff holding the view-surveys permission."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import aiohttp
from survey_case_kit import Office
from test_survey_case import PNG, _case_until, _json, _survey_requested, _surveyed

from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key


def _auth(office: Office, role: StaffRole) -> dict[str, str]:
    key = load_or_create_token_key(office.node.config.staff.token_key)
    token = issue_token(key, node_id=office.node.config.node_id, subject="someone",
                        roles=[role], now=datetime.now(UTC), ttl=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def test_the_report_reads_as_text_with_thumbnails_for_who_may_see_surveys(
    offices: tuple[Office, Office],
) -> None:
    r, h = offices
    async with aiohttp.ClientSession() as http:
        await _survey_requested(http, r, h, "WC-SV-9")
        path = r.url("/staff/v1/surveys/cases/WC-SV-9/reports")
        code, before = await _json(http, "GET", path, r)
        assert (code, before["reports"]) == (200, [])  # nothing sealed yet
        _surveyed(r, "WC-SV-9", "SV-WC-SV-9")
        code, sent = await _json(http, "POST", r.url("/staff/v1/surveys/SV-WC-SV-9/send"), r)
        assert code == 202, sent
        await _case_until(http, h, "WC-SV-9", "survey_reported")

        for office in (r, h):  # the surveyor's copy and the requester's
            url = office.url("/staff/v1/surveys/cases/WC-SV-9/reports")
            code, body = await _json(http, "GET", url, office)
            assert code == 200, body
            (report,) = body["reports"]
            assert report["verdict"] == "pass_with_corrections"
            assert report["outcome"] == "completed"
            assert report["inspectors"] == ["李勘查"]
            assert report["site_party"] == "张店主"
            item = {"item": "shelves", "text": "书架与消防通道", "answer": "pass", "note": ""}
            assert report["checklist"] == [{**item, "snapshots": []}]
            assert report["challenges"] == {"issued": 1, "confirmed": 1, "failed": 0}
            shots = report["snapshots"]
            assert [s["name"] for s in shots] == ["snap-0001.png", "snap-0002.png"]
            assert {s["by"] for s in shots} == {"李勘查"}
            for shot, data in zip(shots, (PNG, PNG[::-1]), strict=True):
                assert shot["sha256"] == hashlib.sha256(data).hexdigest()
                async with http.get(office.url(shot["thumbnail"]), headers=office.auth()) as resp:
                    assert resp.status == 200
                    assert resp.content_type == "image/png"
                    assert await resp.read() == data
            other = office.url(f"/staff/v1/surveys/cases/WC-SV-9/snapshots/{'0' * 64}")
            async with http.get(other, headers=office.auth()) as resp:
                assert resp.status == 404  # only what the signed report names
            # an approver holds no view-surveys permission; an inspector does
            thumb = office.url(shots[0]["thumbnail"])
            async with http.get(thumb, headers=_auth(office, StaffRole.APPROVER)) as resp:
                assert resp.status == 403
                assert (await resp.json())["action"] == "view-surveys"
            async with http.get(thumb, headers=_auth(office, StaffRole.INSPECTOR)) as resp:
                assert resp.status == 200
