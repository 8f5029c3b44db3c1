"""The agreement's data rules and the case content: schema, import, refusals, the access
log and the retention purge, on two offices (real relay cores and desks, fake network,
injected clock) with the example platform importing through the staff API. Each test
runs twice: the offices' tables on SQLite and on PostgreSQL."""

from __future__ import annotations

import copy
import hashlib
from datetime import timedelta
from typing import Any

import aiohttp
import example_platform as example  # examples/platform.py (loaded by conftest)
import jsonschema
import pytest
from casekit import HANDLING, RECEIVING
from casekit_offices import serve
from dbkit import Database
from integkit import BOOKS, FORM, WiredOffices

from relay.audit.leaves import LeafKind, decode_leaf
from relay.audit.merkle import leaf_hash, verify_inclusion
from relay.audit.store import AuditStore
from relay.cases.application import ContentRefused, application_schema, check_application
from relay.cases.model import CaseState, EventKind
from relay.cases.sqlite_store import case_to_json
from relay.cases.tracking import check_access_code
from relay.core.errors import RelayError, UnknownNode
from relay.core.model import OutboxState
from relay.core.receipts import verify_receipt
from relay.integration.retention import PURGED
from signing.encoding import canonical_json
from signing.errors import SigningError

K = EventKind


@pytest.fixture
def case_database(database: Database) -> Database:
    return database


def _auth(w: WiredOffices, node: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.office(node).staff_token(w.clock)}", **extra}


async def _import(w: WiredOffices, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await _import_body(w, {"matter": BOOKS, "handling": HANDLING, "application": form})


async def _import_body(w: WiredOffices, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with serve(w.staff(RECEIVING)) as base, aiohttp.ClientSession() as http:
        url = f"{base}/staff/v1/integration/cases"
        async with http.post(url, json=body, headers=_auth(w, RECEIVING)) as resp:
            return resp.status, await resp.json(content_type=None)


def test_the_schema_comes_from_the_clause_materials_and_only_the_agreed_categories():
    from agreements.catalog import default_catalog

    materials = default_catalog().get(BOOKS).materials  # type: ignore[union-attr]
    schema = application_schema(BOOKS, materials, ["applicant-identity", "case-materials"])
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]) == {"applicant-identity", "case-materials"}
    names = schema["properties"]["case-materials"]["items"]["properties"]["material"]["oneOf"]
    assert [n["const"] for n in names] == [m.name_zh for m in materials]
    jsonschema.validate(FORM, schema)
    rules = {"matter": BOOKS, "materials": materials, "categories": ["case-materials"]}
    with pytest.raises(ContentRefused) as info:
        check_application(FORM, **rules)
    assert info.value.code == "data-category-not-agreed"
    with pytest.raises(ContentRefused) as info:
        check_application(None, **rules | {"categories": ["applicant-identity"]}, attachments=1)
    assert info.value.code == "data-category-not-agreed"
    wrong = copy.deepcopy(FORM)
    wrong["case-materials"][0]["material"] = "身份证复印件"  # not in the clause's list
    with pytest.raises(ContentRefused) as info:
        check_application(wrong, **rules | {"categories": ["applicant-identity", "case-materials"]})
    assert info.value.code == "content-schema"
    assert str(info.value).startswith("/case-materials/0/material")


async def test_a_case_imported_from_the_platform_appears_at_the_partner_untyped(
    offices: WiredOffices,
):
    w = offices
    async with serve(w.staff(RECEIVING)) as base, aiohttp.ClientSession() as http:
        token = w.office(RECEIVING).staff_token(w.clock)
        platform_form = {**FORM, "internal-ref": "PLAT-000123"}  # platform-only fields stay
        answer = await example.import_case(
            http, base, token, matter=BOOKS, handling=HANDLING, form=platform_form
        )
    case_id = answer["case"]
    assert answer["state"] == "submitted"
    await w.deliver()
    theirs = w.office(HANDLING).desk.get(case_id)
    assert theirs.case.state is CaseState.SUBMITTED
    async with serve(w.staff(HANDLING)) as base, aiohttp.ClientSession() as http:
        headers = _auth(w, HANDLING, **{"Tongban-Purpose": "受理审查 acceptance review"})
        async with http.get(f"{base}/staff/v1/cases/{case_id}/application", headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["application"] == FORM  # every field, typed by nobody
        # the ordinary case view does not show the personal data, only its categories
        async with http.get(f"{base}/staff/v1/cases/{case_id}", headers=headers) as resp:
            [submit] = [e for e in (await resp.json())["timeline"] if e["event"] == "submit"]
            assert submit["details"]["application_categories"] == sorted(FORM)
            assert "application" not in submit["details"]
    # the handling office decides; the platform takes the result back
    await w.office(HANDLING).desk.act(case_id, K.ACCEPT, {})
    await w.office(HANDLING).desk.act(case_id, K.DECIDE, {"decision": "deny", "reason": "不符"})
    await w.deliver()
    async with serve(w.staff(RECEIVING)) as base, aiohttp.ClientSession() as http:
        result = await example.case_result(http, base, token, case_id, "告知申请人 notify")
    assert result["state"] == "denied"
    assert result["decision"]["decision"] == "deny"
    assert result["decision"]["reason"] == "不符"


async def test_content_outside_the_agreement_is_refused_at_creation_and_on_receipt(
    offices: WiredOffices,
):
    w = offices
    premises = {**FORM, "business-premises": {"address": "武汉市武昌区中北路 1 号"}}
    status, problem = await _import(w, premises)
    assert status == 403
    assert problem["reason"] == "data-category-not-agreed"
    assert "business-premises" in problem["detail"]
    bad_id = copy.deepcopy(FORM)
    bad_id["applicant-identity"]["id_number"] = "x"
    status, problem = await _import(w, bad_id)
    assert (status, problem["reason"]) == (422, "content-schema")
    assert w.office(RECEIVING).desk.list_cases() == []  # nothing half-written
    # a sender that does not check: its submit reaches the partner, who refuses it
    r = w.office(RECEIVING)
    case_id = f"{RECEIVING}-FORGED-1"
    terms = r.desk.terms(HANDLING, BOOKS, "proxy_receipt")
    header = {
        "case": case_id, "handling": HANDLING, "matter": BOOKS, "mode": "proxy_receipt",
        "receiving": RECEIVING, "survey_required": terms.survey_required,
        "time_limit_working_days": terms.time_limit_working_days,
    }  # fmt: skip
    content = {
        "format": "tongban-case-event/1", "case": case_id, "event": "submit",
        "origin": "receiving", "seq": 1, "seen": 0, "at": int(w.clock().timestamp()),
        "details": {"application": premises}, "header": header,
    }  # fmt: skip
    sent = await r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="submit", mode="proxy_receipt",
        content=content,
    )  # fmt: skip
    await w.deliver()
    [item] = r.relay.list_outbox(state=OutboxState.REJECTED)
    assert item.summary.packet_id == sent.packet_id
    assert item.reason == "content-refused:data-category-not-agreed"
    assert w.office(HANDLING).desk.list_cases() == []


async def test_the_access_log_lists_every_read_of_personal_data(offices: WiredOffices):
    w = offices
    status, answer = await _import(w, FORM)
    assert status == 201
    case_id = answer["case"]
    applicant = FORM["applicant-identity"]["id_number"]
    [packet] = w.office(RECEIVING).relay.list_outbox()
    reads: list[tuple[str, str]] = []
    async with serve(w.staff(RECEIVING)) as base, aiohttp.ClientSession() as http:

        async def get(path: str, purpose: str | None) -> int:
            headers = _auth(w, RECEIVING)
            if purpose is not None:
                headers["Tongban-Purpose"] = purpose
            async with http.get(f"{base}{path}", headers=headers) as resp:
                await resp.read()
                return resp.status

        assert await get(f"/staff/v1/cases/{case_id}/application", None) == 400  # no purpose
        assert await get(f"/staff/v1/cases/{case_id}/application", "核对材料") == 200
        reads.append(("核对材料", "application"))
        assert await get(f"/staff/v1/integration/cases/{case_id}/result", "回传结果") == 200
        reads.append(("回传结果", "result"))
        assert await get(f"/staff/v1/packets/{packet.summary.packet_id}", None) == 200
        reads.append(("（未说明）not given", "packet"))
        assert await get(f"/staff/v1/personal-data/applicants/{applicant}", "申请人查阅") == 200
        reads.append(("申请人查阅", "applicant-export"))
        path = f"/staff/v1/personal-data/reads?applicant={applicant}"
        async with http.get(f"{base}{path}", headers=_auth(w, RECEIVING)) as resp:
            report = (await resp.json())["reads"]
        export_path = f"{base}/staff/v1/personal-data/applicants/{applicant}?purpose=again"
        async with http.get(export_path, headers=_auth(w, RECEIVING)) as resp:
            export = await resp.json()
    assert [(r["purpose"], r["what"]) for r in report] == reads
    assert {(r["who"], r["case"], r["applicant"]) for r in report} == {
        ("clerk-1", case_id, applicant)
    }
    assert [c["application"] for c in export["cases"]] == [FORM]
    assert len(export["reads"]) == len(reads) + 1  # the export lists its own read too


async def test_an_import_whose_materials_are_not_a_list_is_refused_not_an_error(
    offices: WiredOffices,
):
    status, answer = await _import(offices, {**FORM, "case-materials": 5})
    assert status in (400, 422), answer  # was a 500: 'int' object is not iterable
    assert answer["code"] != "internal-error"


async def test_the_retention_purge_removes_the_content_and_keeps_receipts_and_proofs(
    offices: WiredOffices,
):
    w = offices
    r, h = w.office(RECEIVING), w.office(HANDLING)
    status, answer = await _import(w, FORM)
    assert status == 201
    case_id = answer["case"]
    await w.deliver()
    await h.desk.act(case_id, K.ACCEPT, {})
    assert w.r.purge.run() == []  # not ended: nothing due
    assert w.h.purge.run() == []
    await h.desk.act(case_id, K.DECIDE, {"decision": "deny", "reason": "经营场所不符合要求"})
    await w.deliver()
    ended = w.clock()
    assert r.desk.get(case_id).case.state is CaseState.DENIED
    [submit] = [i for i in h.relay.list_inbox() if i.summary.case_id == case_id]
    sent = [i for i in r.relay.list_outbox() if i.summary.case_id == case_id]
    before = {n: o.desk.get(case_id).case for n, o in ((RECEIVING, r), (HANDLING, h))}
    w.clock.now = ended + timedelta(days=365 * 30 - 2)  # 30 years less a few days
    assert w.r.purge.run() == []
    assert w.h.purge.run() == []
    w.clock.now = ended + timedelta(days=365 * 30 + 8)  # past the agreement's 30 years
    assert w.r.purge.run() == [case_id]
    assert w.h.purge.run() == [case_id]
    assert w.r.purge.run() == []  # once
    for node, office in ((RECEIVING, r), (HANDLING, h)):
        case = office.desk.get(case_id).case
        assert case.state is CaseState.DENIED  # the history stays
        assert [e.kind for e in case.events] == [e.kind for e in before[node].events]
        text = canonical_json(case_to_json(case)).decode()
        for gone in ("91420106MA4KXXXX1X", "武昌书店", "经营场所不符合要求"):
            assert gone not in text
        assert PURGED in text
        log = AuditStore(office.store.connection)
        leaves = [decode_leaf(log.leaf(i)) for i in range(log.size())]
        [purge] = [x for x in leaves if x.kind is LeafKind.RETENTION_PURGE]
        body: Any = purge.body
        assert (body.case, body.retention_years) == (case_id, 30)
        expect = hashlib.sha256(canonical_json(case_to_json(before[node]))).hexdigest()
        assert body.content_digest == expect
    # the packet content is gone from both relays ...
    with pytest.raises((RelayError, SigningError)):
        h.relay.read_packet(submit.summary.packet_id)
    with pytest.raises((RelayError, SigningError, ValueError)):
        r.relay.read_packet(sent[0].summary.packet_id)
    # ... while the receipts still verify and the log still proves the packet
    receipt = verify_receipt(submit.receipt, w.offices.pki.bundle, at=submit.received_at,
                             expected_from=HANDLING)  # fmt: skip
    assert receipt.packet_digest == submit.summary.digest
    assert sent[0].receipt is not None
    verify_receipt(sent[0].receipt, w.offices.pki.bundle, at=submit.received_at,
                   expected_from=HANDLING)  # fmt: skip
    log = AuditStore(h.store.connection)
    size, root = log.head()
    assert submit.log_index is not None
    leaf = log.leaf(submit.log_index)
    assert submit.summary.digest in leaf.decode()
    verify_inclusion(leaf_hash(leaf), submit.log_index, size,
                     log.inclusion_proof(submit.log_index, size), root)  # fmt: skip
    assert w.h.store.applicant_of(case_id) is None


async def _stage(office: Any, data: bytes) -> str:
    """``data`` staged at ``office`` as a clerk's upload; its plaintext digest."""
    digest = hashlib.sha256(data).hexdigest()

    async def chunks() -> Any:
        yield data

    info = await office.relay.write_attachment(
        digest, len(data), 0, chunks(), media_type="application/pdf", name="营业执照.pdf"
    )
    assert info is not None
    return digest


async def _read(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_a_purge_keeps_the_attachment_a_younger_case_shares(offices: WiredOffices):
    """The same scan handed in for two cases is one staged blob, in both offices. The
    older case's purge deleted it, and the younger case, still being handled, could
    open its attachment no more at either office."""
    w = offices
    r, h = w.office(RECEIVING), w.office(HANDLING)
    scan = b"%PDF-1.4 the same business licence scan " * 200
    digest = await _stage(r, scan)
    old, young = [
        (
            await r.desk.open_case(
                matter=BOOKS, mode="proxy_receipt", handling=HANDLING, application=FORM,
                attachments=[digest],
            )
        ).record.case.header.case_id
        for _ in range(2)
    ]  # fmt: skip
    await w.deliver()
    await h.desk.act(old, K.REJECT, {"reason": "材料不全"})
    await w.deliver()
    ended = w.clock()
    w.clock.now = ended + timedelta(days=20)
    await h.desk.act(young, K.ACCEPT, {})  # the younger case ends 20 days later
    await h.desk.act(young, K.DECIDE, {"decision": "deny", "reason": "经营场所不符合要求"})
    await w.deliver()
    [item] = h.relay.list_inbox(case_id=young)
    blob = item.summary.attachments[0].digest
    w.clock.now = ended + timedelta(days=365 * 30 + 8)  # the old case is due, not the young
    assert w.r.purge.run() == [old]
    assert w.h.purge.run() == [old]
    assert await _read(r.relay.open_attachment(digest)) == scan  # staged at the receiving
    assert await _read(h.relay.open_attachment(blob)) == scan  # received at the handling
    # once the younger case is purged too, the blob goes at both offices
    w.clock.now += timedelta(days=20)
    assert w.r.purge.run() == [young]
    assert w.h.purge.run() == [young]
    for office, name in ((r, digest), (h, blob)):
        with pytest.raises(RelayError):
            await _read(office.relay.open_attachment(name))


async def test_a_purge_stopped_before_it_was_noted_still_forgets_the_applicant(
    offices: WiredOffices, monkeypatch: pytest.MonkeyPatch
):
    """A node stopped after the purged copy was stored, before the case was noted purged:
    the next run finds the copy purged and notes it, and forgets the applicant's
    identity too (the row that finds a person's cases)."""
    w = offices
    r, h = w.office(RECEIVING), w.office(HANDLING)
    status, answer = await _import(w, FORM)
    assert status == 201
    case_id = answer["case"]
    await w.deliver()
    await h.desk.act(case_id, K.ACCEPT, {})
    await h.desk.act(case_id, K.DECIDE, {"decision": "deny", "reason": "经营场所不符合要求"})
    await w.deliver()
    assert r.desk.get(case_id).case.state is CaseState.DENIED
    applicant = w.r.store.applicant_of(case_id)
    assert applicant is not None
    w.clock.now = w.clock() + timedelta(days=365 * 30 + 8)
    cases = w.r.purge._cases

    def stopped(case: str) -> None:
        raise RuntimeError("the node stopped here")

    monkeypatch.setattr(cases, "mark_purged", stopped)
    with pytest.raises(RuntimeError):
        w.r.purge.run()
    monkeypatch.undo()
    assert PURGED in canonical_json(case_to_json(r.desk.get(case_id).case)).decode()
    assert w.r.purge.run() == []  # purged before: noted now
    assert w.r.store.applicant_of(case_id) is None
    assert w.r.store.cases_of(applicant) == []
    assert w.r.purge.run() == []


async def test_a_retried_import_under_the_platforms_case_id_opens_and_sends_the_case_once(
    offices: WiredOffices, monkeypatch: pytest.MonkeyPatch
):
    """The platform lost the answer and sends the same request again: the case is not
    opened or sent twice; the answer carries a new access code, and the one before
    (never shown) opens the case no more. The same id with other content is refused.
    A request whose submit failed is completed by its retry."""
    w = offices
    r, h = w.office(RECEIVING), w.office(HANDLING)
    body = {"matter": BOOKS, "handling": HANDLING, "application": FORM, "case_id": "PLAT-000123"}
    status, first = await _import_body(w, body)
    assert status == 201, first
    status, again = await _import_body(w, body)
    assert status == 201, again
    assert again["case"] == first["case"] == "PLAT-000123"
    assert again["state"] == "submitted"
    record = r.desk.get("PLAT-000123")
    assert len(record.case.events) == 1
    assert check_access_code(again["access_code"], record.access_hash or "")
    assert not check_access_code(first["access_code"], record.access_hash or "")
    status, other = await _import_body(w, {**body, "application": {**FORM, "case-materials": []}})
    assert status == 409
    assert other["reason"] == "case-exists"
    await w.deliver()
    inbox = [i for i in h.relay.list_inbox() if i.summary.case_id == "PLAT-000123"]
    assert len(inbox) == 1
    assert h.desk.get("PLAT-000123").case.state is CaseState.SUBMITTED

    # the submit fails (the relay refuses it): the case stays opened, unsent; the retry
    # submits it
    create_packet = r.relay.create_packet

    async def refused(**_: Any) -> Any:
        raise UnknownNode(HANDLING)

    monkeypatch.setattr(r.relay, "create_packet", refused)
    second = {**body, "case_id": "PLAT-000124"}
    status, _ = await _import_body(w, second)
    assert status >= 400
    assert r.desk.get("PLAT-000124").case.events == ()
    monkeypatch.setattr(r.relay, "create_packet", create_packet)
    status, done = await _import_body(w, second)
    assert status == 201, done
    assert done["state"] == "submitted"
    await w.deliver()
    assert h.desk.get("PLAT-000124").case.state is CaseState.SUBMITTED
