"""Case desks of two offices over real RelayNodes (SQLite, signed sealed packets, a real
signed agreement) on the in-memory network: copies converge, partner packets that break
the state machine are rejected by the relay, SLA lists, terms from the agreement. Each
test runs twice: the offices' cases on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from casekit import HANDLING, RECEIVING
from dbkit import Database

from relay.cases.errors import CaseError, IllegalTransition
from relay.cases.model import CaseState, EventKind
from relay.cases.sla import Colour
from relay.cases.terms import NoTerms
from relay.core.errors import NotAuthorized
from relay.core.model import OutboxState
from signing.licence import Licence, issue_licence

K = EventKind
BOOKS = "publication-retail-licence"  # 20 working days, no survey
FOOD = "food-business-licence"  # 10 working days, survey required


@pytest.fixture
def case_database(database: Database) -> Database:
    return database


async def test_a_whole_case_converges_on_both_offices(offices, clock):
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING,
                                    materials=["营业执照", "身份证"])  # fmt: skip
    case_id = opened.record.case.header.case_id
    beijing_day = (clock() + timedelta(hours=8)).strftime("%Y%m%d")
    assert case_id.startswith(f"{RECEIVING}-{beijing_day}-")
    assert opened.record.case.header.time_limit_working_days == 20
    assert not opened.record.case.header.survey_required
    await offices.deliver()
    assert h.desk.get(case_id).case.state is CaseState.SUBMITTED
    for desk, kind, details in [
        (h.desk, K.REQUEST_CORRECTION, {"missing": ["经营场所证明"], "note": "call"}),
        (r.desk, K.SUPPLEMENT, {"supplied": ["经营场所证明"]}),
        (h.desk, K.ACCEPT, {}),
        (h.desk, K.DECIDE, {"decision": "approve"}),
    ]:
        clock.advance(hours=20)
        await desk.act(case_id, kind, details)
        await offices.deliver()
    licence = Licence(
        issuer_node=HANDLING, number="XK-320982-0001", licence_type=BOOKS,
        holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=clock(), valid_from=clock(), valid_until=clock() + timedelta(days=1825),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=clock())
    await h.desk.act(case_id, K.ISSUE_LICENCE, {"licence": token, "licence_number": licence.number})
    await offices.deliver()
    await r.desk.act(case_id, K.DELIVER, {"method": "窗口领取"})
    await r.desk.act(case_id, K.CONCLUDE, {})
    await r.desk.act(case_id, K.RATE, {"rating": "good", "comment": "很快"})
    await offices.deliver()
    mine, theirs = r.desk.get(case_id).case, h.desk.get(case_id).case
    assert mine.events == theirs.events
    assert mine.state is theirs.state is CaseState.CONCLUDED
    assert theirs.view.rating is not None
    assert theirs.view.rating["rating"] == "good"
    assert mine.view.licence == token
    assert {p.outcome for p in h.desk.packets(case_id)} == {"applied"}
    assert len(h.desk.packets(case_id)) == 5  # submit, supplement, deliver, conclude, rate


async def test_a_partner_packet_outside_the_state_machine_is_rejected_not_accepted(offices):
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    # the receiving node forges "the case is concluded" while it is only submitted:
    forged = {
        "format": "tongban-case-event/1", "case": case_id, "event": "conclude",
        "origin": "receiving", "seq": 2, "seen": 0, "at": 1793000000, "details": {},
    }  # fmt: skip
    sent = await r.relay.create_packet(
        to=HANDLING, case_id=case_id, matter=BOOKS, action="status-update",
        mode="proxy_receipt", content=forged,
    )  # fmt: skip
    await offices.deliver()
    # refused by the relay before it stored anything: the sender's outbox says rejected
    [item] = r.relay.list_outbox(state=OutboxState.REJECTED)
    assert item.summary.packet_id == sent.packet_id
    assert item.reason == "content-refused:wrong-state"
    assert sent.packet_id not in {i.summary.packet_id for i in h.relay.list_inbox()}
    assert h.desk.get(case_id).case.state is CaseState.SUBMITTED
    assert {p.outcome for p in h.desk.packets(case_id)} == {"applied"}


async def test_survey_required_by_the_agreement_is_enforced_and_delegated_survey_travels(offices):
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=FOOD, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, K.ACCEPT, {})
    with pytest.raises(IllegalTransition) as info:
        await h.desk.act(case_id, K.DECIDE, {"decision": "approve"})
    assert info.value.code == "survey-required"
    await h.desk.act(case_id, K.REQUEST_SURVEY, {"surveyor": "receiving"})  # 委托勘查
    await offices.deliver()
    await r.desk.act(case_id, K.SURVEY_REPORT, {"outcome": "pass", "report": "sha256:00"})
    await offices.deliver()
    await h.desk.act(case_id, K.DECIDE, {"decision": "deny", "reason": "场所不符合要求"})
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.DENIED
    assert r.desk.get(case_id).case.events == h.desk.get(case_id).case.events


async def test_no_agreement_no_case(offices):
    with pytest.raises(NoTerms):
        await offices.r.desk.open_case(matter="construction-permit", mode="proxy_receipt",
                                       handling=HANDLING)  # fmt: skip
    with pytest.raises(CaseError):
        offices.r.desk.get("no-such-case")


async def test_overdue_list_turns_yellow_then_red_and_lists_open_complaints(offices, clock):
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=FOOD, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    assert h.desk.overdue() == []
    clock.advance(days=11)  # a plain Monday + 11 days: 9 working days used of 10
    [item] = h.desk.overdue()
    assert item.clock.colour is Colour.YELLOW
    assert item.record.case.header.case_id == case_id
    clock.advance(days=4)  # the Tuesday two weeks on: 11 working days used
    [item] = h.desk.overdue()
    assert item.clock.colour is Colour.RED
    await r.desk.act(case_id, K.COMPLAIN, {"text": "两周没有消息"})
    await offices.deliver()
    [item] = h.desk.overdue()
    assert [seq for seq, _ in item.complaints] == [2]


async def test_relay_refusal_rolls_the_case_back(offices, monkeypatch):
    r = offices.r

    async def refuse(**kwargs):
        raise NotAuthorized("suspended")

    monkeypatch.setattr(r.relay, "create_packet", refuse)
    with pytest.raises(NotAuthorized):
        await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING,
                               case_id="WC-ROLLBACK")  # fmt: skip
    assert r.desk.get("WC-ROLLBACK").case.state is CaseState.RECEIVED


async def test_issue_licence_needs_the_handling_offices_sealed_licence(offices, clock):
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, K.ACCEPT, {})
    await h.desk.act(case_id, K.DECIDE, {"decision": "approve"})

    def licence(issuer: str, matter: str) -> str:
        lic = Licence(
            issuer_node=issuer, number="XK-1", licence_type=matter, holder_id="H-1",
            holder_name="武昌书店", scope="图书零售", department_zh="某局", department_en="Bureau",
            issued_at=clock(), valid_from=clock(), valid_until=clock() + timedelta(days=30),
        )  # fmt: skip
        return issue_licence(lic, offices.pki.keys[issuer].seal, at=clock())

    for token in (
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
        licence(RECEIVING, BOOKS),
        licence(HANDLING, FOOD),
    ):
        with pytest.raises(CaseError) as info:
            await h.desk.act(case_id, K.ISSUE_LICENCE, {"licence": token, "licence_number": "XK-1"})
        assert info.value.code == "bad-licence"
    good = licence(HANDLING, BOOKS)
    with pytest.raises(CaseError):
        await h.desk.act(case_id, K.ISSUE_LICENCE, {"licence": good, "licence_number": "XK-2"})
    await h.desk.act(case_id, K.ISSUE_LICENCE, {"licence": good, "licence_number": "XK-1"})
    await offices.deliver()
    assert r.desk.get(case_id).case.state is CaseState.LICENCE_ISSUED
