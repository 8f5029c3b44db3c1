"""The console's pure core: queue filters, counts and order, the materials checklist,
the steps allowed now (state machine and agreement), the partner's refusals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from casekit import HANDLING, RECEIVING, T0, header, later

from agreements.actions import Action
from agreements.model import Material, MaterialCopy, MaterialForm
from relay.cases.model import EventKind, Office
from relay.cases.queue import QueueEntry
from relay.cases.sla import ClockState, Colour, SlaReport
from relay.cases.workflow import Case, Command, transition
from relay.console.views import (
    QueueFilter,
    available_actions,
    checklist,
    queue_view,
    refusals,
    turn_of,
)
from relay.core.model import OutboxItem, OutboxState, PacketSummary


def _step(case: Case, kind: EventKind, details: Mapping[str, Any], at: datetime) -> Case:
    """Take ``kind`` as whichever office may (a copy that holds both offices' events)."""
    if case.me is not _actor(kind):
        case = Case(case.header, _actor(kind), case.events)
    return transition(case, Command(kind, details), at)[0]


def _actor(kind: EventKind) -> Office:
    receiving = {EventKind.SUBMIT, EventKind.SUPPLEMENT, EventKind.DELIVER, EventKind.WITHDRAW}
    return Office.RECEIVING if kind in receiving else Office.HANDLING


def _case(case_id: str, *steps: tuple[EventKind, Mapping[str, Any]], me=Office.HANDLING) -> Case:
    case = Case(header(case_id), Office.RECEIVING)
    for i, (kind, details) in enumerate(steps):
        case = _step(case, kind, details, later(i))
    return Case(case.header, me, case.events)


def _clock(colour: Colour, state=ClockState.RUNNING, deadline: date | None = None) -> SlaReport:
    return SlaReport(state, colour, 20, 5, deadline)


MATERIALS = (
    Material("营业执照", "Business licence", MaterialForm("paper_or_electronic"),
             MaterialCopy("ecopy")),
    Material("食品安全管理制度", "Food safety rules", MaterialForm("paper_or_electronic"),
             MaterialCopy("ecopy")),
    Material("经营场所证明", "Proof of premises", MaterialForm("paper_or_electronic"),
             MaterialCopy("ecopy")),
)  # fmt: skip
SUBMIT = (EventKind.SUBMIT, {"materials": ["营业执照", "身份证"], "staff": "王收件"})


def test_queue_is_sorted_by_deadline_red_first_and_counts_per_state() -> None:
    cases = {
        "A": _case("A", SUBMIT),
        "B": _case("B", SUBMIT, (EventKind.ACCEPT, {})),
        "C": _case("C", SUBMIT),
        "D": _case("D", SUBMIT, (EventKind.REQUEST_CORRECTION, {"missing": ["营业执照"]})),
    }
    clocks = {
        "A": _clock(Colour.GREEN, deadline=date(2026, 9, 30)),
        "B": _clock(Colour.RED, deadline=date(2026, 9, 2)),
        "C": _clock(Colour.GREEN, deadline=date(2026, 9, 10)),
        "D": _clock(Colour.GREEN, ClockState.PAUSED),
    }
    entries = [QueueEntry.of(c, 1, T0) for c in cases.values()]
    view = queue_view(
        entries,
        clock_of=lambda entry: clocks[entry.case_id],
        names=lambda header: {},
        keep=QueueFilter(),
    )
    assert [c["case"] for c in view["cases"]] == ["B", "C", "A", "D"]
    assert view["counts"]["submitted"] == 2
    assert view["counts"]["accepted"] == 1
    assert view["counts"]["correction_requested"] == 1
    assert view["total"] == view["shown"] == 4
    by_id = {c["case"]: c for c in view["cases"]}
    assert by_id["A"]["our_turn"] is True  # the handling office reviews
    assert by_id["D"]["our_turn"] is False  # the applicant must correct first
    assert by_id["A"]["partner"] == RECEIVING

    def ids(keep: QueueFilter, state: str = "", limit: int | None = None) -> list[str]:
        kept = queue_view(
            entries, clock_of=lambda e: clocks[e.case_id], names=lambda h: {}, keep=keep,
            state=state, limit=limit,
        )  # fmt: skip
        return [c["case"] for c in kept["cases"]]

    assert ids(QueueFilter(overdue=True)) == ["B"]
    assert ids(QueueFilter(turn=True)) == ["B", "C", "A"]
    assert ids(QueueFilter(matter="food-business-licence", partner=RECEIVING)) == [
        "B", "C", "A", "D",
    ]  # fmt: skip
    assert ids(QueueFilter(matter="other")) == []
    assert ids(QueueFilter(partner=HANDLING)) == []  # we are the handling office
    # "mine": our office acted through that person (the handling office: nobody yet)
    assert ids(QueueFilter(mine="王收件")) == []
    as_receiver = [QueueEntry.of(Case(c.header, Office.RECEIVING, c.events), 1, T0)
                   for c in cases.values()]  # fmt: skip
    kept = queue_view(as_receiver, clock_of=lambda e: clocks[e.case_id],
                      names=lambda h: {}, keep=QueueFilter(mine="王收件"))  # fmt: skip
    assert len(kept["cases"]) == 4
    # one state's rows, counted over every state; at most ``limit`` rows, in order
    assert ids(QueueFilter(), state="submitted") == ["C", "A"]
    assert ids(QueueFilter(), limit=2) == ["B", "C"]
    some = queue_view(entries, clock_of=lambda e: clocks[e.case_id], names=lambda h: {},
                      keep=QueueFilter(), state="submitted", limit=1)  # fmt: skip
    assert (some["total"], some["shown"], len(some["cases"])) == (4, 2, 1)
    assert some["counts"]["accepted"] == 1


def test_checklist_marks_received_missing_and_to_be_corrected() -> None:
    case = _case("A", SUBMIT)
    items = checklist(case, MATERIALS)
    assert [(i["name_zh"], i["status"], i["required"]) for i in items] == [
        ("营业执照", "received", True),
        ("食品安全管理制度", "missing", True),
        ("经营场所证明", "missing", True),
        ("身份证", "received", False),  # handed in, not in the standard: still shown
    ]
    asked = _case("A", SUBMIT, (EventKind.REQUEST_CORRECTION, {"missing": ["Proof of premises"]}))
    statuses = {i["name_zh"]: i["status"] for i in checklist(asked, MATERIALS)}
    assert statuses["经营场所证明"] == "correction"  # named in either language
    supplied = _step(asked, EventKind.SUPPLEMENT, {"supplied": ["经营场所证明"]}, later(9))
    statuses = {i["name_zh"]: i["status"] for i in checklist(supplied, MATERIALS)}
    assert statuses["经营场所证明"] == "received"


def test_actions_follow_the_state_machine_the_office_and_the_agreement() -> None:
    submitted = _case("A", SUBMIT)
    everything = lambda action: True  # noqa: E731
    names = [a["event"] for a in available_actions(submitted, later(5), everything)]
    assert names == ["accept", "request-correction", "reject"]
    as_receiver = Case(submitted.header, Office.RECEIVING, submitted.events)
    assert [a["event"] for a in available_actions(as_receiver, later(5), everything)] == [
        "withdraw"
    ]
    no_reject = [
        a["event"]
        for a in available_actions(submitted, later(5), lambda action: action is not Action.REJECT)
    ]
    assert no_reject == ["accept", "request-correction"]

    accepted = _case("A", SUBMIT, (EventKind.ACCEPT, {}))
    survey = {a["event"]: a for a in available_actions(accepted, later(5), everything)}
    assert survey["request-survey"]["surveyors"] == ["receiving", "handling"]
    # a delegated survey travels as request-survey: without that grant only our own
    only_own = {
        a["event"]: a
        for a in available_actions(
            accepted, later(5), lambda action: action is not Action.REQUEST_SURVEY
        )
    }
    assert only_own["request-survey"]["surveyors"] == ["handling"]
    assert "decide" in survey
    received = Case(header("N"), Office.RECEIVING)
    # submitting needs the agreement; withdrawing a case never sent does not
    assert [a["event"] for a in available_actions(received, later(1), lambda a: False)] == [
        "withdraw"
    ]


def test_refusals_name_the_partners_reason_for_this_case_only() -> None:
    case = _case("A", SUBMIT)

    def item(case_id: str, state: OutboxState, reason: str | None) -> OutboxItem:
        summary = PacketSummary(
            f"p-{case_id}-{state.value}", "d" * 64, case_id, HANDLING, RECEIVING,
            "food-business-licence", "accept", "proxy_receipt", 1, T0, T0 + timedelta(days=1),
        )  # fmt: skip
        return OutboxItem(summary, state, 1, None, reason, None)

    outbox = [
        item("A", OutboxState.REJECTED, "content-refused:wrong-state"),
        item("A", OutboxState.DELIVERED, None),
        item("B", OutboxState.REJECTED, "agreement-denied:no-agreement"),
        item("A", OutboxState.DEAD, "expired"),
    ]
    assert [(r["action"], r["reason"]) for r in refusals(case, outbox)] == [
        ("accept", "content-refused:wrong-state"),
        ("accept", "expired"),
    ]
    assert turn_of(case) is Office.HANDLING
