"""The integration's staff routes follow the permission map for people signed in to the
console: the personal-data access log, an applicant's export and retrying parked
webhooks are the administrator's; a clerk reads an application with a purpose and
imports a case; an inspector reads no personal data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casekit import HANDLING
from casekit_offices import Offices
from relay_http_support import Pki, client_ssl, serve
from signin_kit import SETTINGS

from relay.config import Limits
from relay.http.case_services import CaseServices
from relay.http.cases import add_case_routes
from relay.http.staff import staff_app
from relay.integration.layer import Integration
from relay.signin.store import StaffStore
from relay.signin.testing import CSRF_HEADER, add_account, cookie_session, sign_in
from relay.signin.web import SignIn
from relay.tls import server_context

PASSWORD = "a long enough password"
BOOKS = "publication-retail-licence"
PEOPLE = {
    "clerk": ["clerk"],
    "approver": ["approver"],
    "inspector": ["inspector"],
    "admin": ["administrator"],
}


async def test_personal_data_and_webhook_routes_follow_the_permission_map(
    offices: Offices, pki: Pki, tmp_path: Path
) -> None:
    r = offices.r
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    services = CaseServices(r.desk, r.verifier, r.relay, r.cases)
    integration = Integration.attach(
        node_id=r.node_id, data_dir=tmp_path / r.node_id, webhooks=[],
        signer=offices.pki.keys[r.node_id].seal, services=services, clock=offices.clock,
    )  # fmt: skip
    store = StaffStore(tmp_path / "staff")
    for name, roles in PEOPLE.items():
        add_account(tmp_path / "staff", name, PASSWORD, roles)
    app = staff_app(
        r.relay, node_id=r.node_id, token_key=r.token_key.public_key(), clock=offices.clock,
        limits=Limits(), signin=SignIn(store, SETTINGS, offices.clock),
    )  # fmt: skip
    add_case_routes(app, r.desk)
    integration.add_routes(app, background=False)
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    tls = client_ssl(pki, None)
    sessions = {name: cookie_session() for name in PEOPLE}
    try:
        async with serve(app, context) as url:
            csrf = {
                n: (await sign_in(h, url, n, PASSWORD, ssl=tls))["csrf"]
                for n, h in sessions.items()
            }

            async def call(who: str, method: str, path: str, body: Any = None) -> int:
                headers = {CSRF_HEADER: csrf[who], "Tongban-Purpose": "核对材料"}
                async with sessions[who].request(
                    method, url + path, json=body, headers=headers, ssl=tls
                ) as resp:
                    await resp.read()
                    return resp.status

            log = f"/staff/v1/personal-data/reads?case={case_id}"
            export = "/staff/v1/personal-data/applicants/91420106MA4KXXXX1X"
            retry = "/staff/v1/integration/webhooks/retry"
            for who in ("clerk", "approver", "inspector"):
                assert await call(who, "GET", log) == 403, who
                assert await call(who, "GET", export) == 403, who
                assert await call(who, "POST", retry, {"target": "platform"}) == 403, who
            assert await call("admin", "GET", log) == 200
            assert await call("admin", "GET", export) == 200
            # allowed (no 403); 404 as no target "platform" is configured here
            assert await call("admin", "POST", retry, {"target": "platform"}) == 404

            application = f"/staff/v1/cases/{case_id}/application"
            assert await call("clerk", "GET", application) == 200
            assert await call("approver", "GET", application) == 200
            assert await call("inspector", "GET", application) == 403

            imported = "/staff/v1/integration/cases"
            assert await call("approver", "POST", imported, {}) == 403
            assert await call("admin", "POST", imported, {}) == 403
            assert await call("clerk", "POST", imported, {}) == 400  # allowed: the body is bad
            # the clerk's read is in the log the administrator reads
            async with sessions["admin"].get(url + log, ssl=tls) as resp:
                reads = (await resp.json())["reads"]
            assert [(x["who"], x["what"]) for x in reads] == [
                ("clerk", "application"),
                ("approver", "application"),
            ]
    finally:
        for http in sessions.values():
            await http.close()
        integration.close()
        store.close()
