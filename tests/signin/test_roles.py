"""Roles through real case offices: each person may do what the permission map says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from casekit import HANDLING
from casekit_offices import Offices
from relay_http_support import Pki, client_ssl, serve
from signin_kit import SETTINGS

from relay.cases.model import EventKind
from relay.config import Limits
from relay.http.cases import add_case_routes
from relay.http.licence_status import LicenceStatus, add_licence_status_routes
from relay.http.staff import staff_app
from relay.signin.store import StaffStore
from relay.signin.testing import CSRF_HEADER, add_account, cookie_session, sign_in
from relay.signin.web import SignIn
from relay.tls import server_context
from remote_survey.staffapi import add_staff_routes
from signing.licence import Licence, StatusEntry, issue_licence
from signing.status_list import StatusPurpose

PASSWORD = "a long enough password"
BOOKS = "publication-retail-licence"
PEOPLE = {
    "clerk": ["clerk"],
    "approver": ["approver"],
    "inspector": ["inspector"],
    "officer": ["licence_officer"],
    "admin": ["administrator"],
}


async def _licensed_case(offices: Offices) -> str:
    """A case at the handling office with an issued licence XK-1 (status index 1)."""
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, EventKind.ACCEPT, {})
    await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    now = offices.clock()
    base = "https://127.0.0.1:9/.well-known/tongban/status"
    licence = Licence(
        issuer_node=HANDLING, number="XK-1", licence_type=BOOKS,
        holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=now, valid_from=now, valid_until=now + timedelta(days=365),
        status=tuple(StatusEntry(p, 1, f"{base}/{p.value}") for p in StatusPurpose),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=now)
    await h.desk.act(case_id, EventKind.ISSUE_LICENCE, {"licence": token, "licence_number": "XK-1"})
    return case_id


async def test_each_role_may_do_its_own_work_and_nothing_else(
    offices: Offices, pki: Pki, tmp_path: Path
) -> None:
    h = offices.h
    case_id = await _licensed_case(offices)
    second = await offices.r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    await offices.deliver()
    waiting = second.record.case.header.case_id
    store = StaffStore(tmp_path / "staff")
    for name, roles in PEOPLE.items():
        add_account(tmp_path / "staff", name, PASSWORD, roles)
    app = staff_app(
        h.relay, node_id=HANDLING, token_key=h.token_key.public_key(), clock=offices.clock,
        limits=Limits(),
        signin=SignIn(store, SETTINGS, offices.clock),
    )  # fmt: skip
    add_case_routes(app, h.desk)
    status = LicenceStatus(
        node_id=HANDLING, desk=h.desk, store=h.cases, signer=offices.pki.keys[HANDLING].seal,
        status_dir=h.verifier.status_dir, clock=offices.clock,
    )  # fmt: skip
    add_licence_status_routes(app, status)
    # the survey routes need only the hub's node id, clock and (no) surveys here
    hub: Any = SimpleNamespace(
        config=SimpleNamespace(node_id=HANDLING, clock=offices.clock),
        rooms={},
        ended={},
        get=lambda session: None,
    )
    add_staff_routes(app, hub, h.token_key)
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    tls = client_ssl(pki, None)

    async with serve(app, context) as url:
        sessions: dict[str, tuple[aiohttp.ClientSession, str]] = {}
        try:
            for name in PEOPLE:
                http = cookie_session()
                me = await sign_in(http, url, name, PASSWORD, ssl=tls)
                sessions[name] = (http, me["csrf"])

            async def call(who: str, method: str, path: str, body: Any = None) -> int:
                http, csrf = sessions[who]
                async with http.request(
                    method, url + path, json=body, headers={CSRF_HEADER: csrf}, ssl=tls
                ) as resp:
                    return resp.status

            revoke = {"purpose": "suspension", "value": True}
            licence = "/staff/v1/licences/XK-1/status"
            assert await call("clerk", "POST", licence, revoke) == 403
            assert await call("approver", "POST", licence, revoke) == 403
            assert await call("admin", "POST", licence, revoke) == 403
            assert await call("officer", "POST", licence, revoke) == 200

            events = f"/staff/v1/cases/{waiting}/events"
            assert await call("clerk", "POST", events, {"event": "accept"}) == 403
            assert await call("inspector", "POST", events, {"event": "accept"}) == 403
            assert await call("approver", "POST", events, {"event": "accept"}) == 200

            # the receiving office's counter concludes (the permission holds; this office is
            # the handling one): an office with no approver could never conclude, nor the
            # applicant rate
            concluded = f"/staff/v1/cases/{case_id}/events"
            assert await call("clerk", "POST", concluded, {"event": "conclude"}) == 409
            assert await call("approver", "POST", concluded, {"event": "conclude"}) == 403

            # a rating or a complaint is the applicant's: refused to a person signed in
            # (a clerk's filed for the applicant locked the applicant out)
            for own in ({"event": "rate", "details": {"rating": "good"}},
                        {"event": "complain", "details": {"text": "职员代填"}}):  # fmt: skip
                assert await call("clerk", "POST", concluded, own) == 403

            # an inspector sees surveys only (no personal data)
            assert await call("inspector", "GET", "/staff/v1/cases") == 403
            assert await call("inspector", "GET", f"/staff/v1/cases/{case_id}") == 403
            assert await call("inspector", "GET", "/staff/v1/outbox") == 403
            assert await call("inspector", "GET", "/staff/v1/surveys/none") == 404  # allowed
            assert await call("clerk", "GET", "/staff/v1/surveys/none") == 403
            assert await call("clerk", "GET", "/staff/v1/cases") == 200
            plan: dict[str, Any] = {}
            assert await call("clerk", "POST", "/staff/v1/surveys", plan) == 403
            assert await call("inspector", "POST", "/staff/v1/surveys", plan) == 422  # allowed
        finally:
            for http, _ in sessions.values():
                await http.close()

    journal = [(e.name, e.detail.get("path"), e.detail.get("status"))
               for e in store.journal_entries() if e.event == "request"]  # fmt: skip
    assert ("officer", licence, 200) in journal
    assert ("clerk", licence, 403) in journal
    assert ("approver", events, 200) in journal
    store.close()
