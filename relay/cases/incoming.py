"""Applying the other office's case packet to our copy (pure: inputs in, record out).

The checks beyond the state machine (docs/protocol.md §11): the content names the
packet's case; the first packet of a case we do not hold is a ``submit`` addressed to
us whose header agrees with our own agreement terms (``terms-mismatch``); the packet's
sender is the node of the event's origin and its matter the case's; its action is the
one that carries the event; a licence carried by ``issue-licence`` is the handling
office's sealed licence for this matter and number (``bad-licence``); the ``submit``
keeps the agreement's data rules (:mod:`relay.cases.application`:
``data-category-not-agreed``, ``content-schema``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from relay.cases.application import check_application
from relay.cases.errors import CaseError, MalformedEvent
from relay.cases.model import CaseHeader, Event, EventKind, Office
from relay.cases.store import CaseRecord
from relay.cases.terms import TermsSource
from relay.cases.workflow import Case, Received, action_for, transition
from relay.core.model import PacketSummary
from signing.certificates import TrustBundle
from signing.licence import verify_licence
from signing.licence_report import Check, Outcome

__all__ = ["CASE_ACTIONS", "apply_incoming", "check_licence"]

CASE_ACTIONS = frozenset(
    {
        "submit", "accept", "reject", "request-correction", "supplement", "withdraw",
        "request-survey", "survey-report", "decide", "issue-licence", "deliver",
        "status-update", "rating", "complaint",
    }
)  # fmt: skip
"""The packet actions that carry case events (the case layer judges and applies them)."""


def apply_incoming(
    old: CaseRecord | None,
    summary: PacketSummary,
    content: Mapping[str, Any],
    *,
    me: str,
    terms: TermsSource,
    bundle: TrustBundle,
    now: datetime,
) -> CaseRecord:
    """Our copy after the packet ``summary`` with ``content``; raises :class:`CaseError`."""
    event = Event.from_content(content)
    if content.get("case") != summary.case_id:
        raise MalformedEvent("content names another case")
    if old is None:
        if event.kind is not EventKind.SUBMIT or "header" not in content:
            raise CaseError("first packet of an unknown case is not a submit", code="unknown-case")
        header = CaseHeader.from_json(content["header"])
        if header.case_id != summary.case_id or header.handling != me:
            raise MalformedEvent("the submit header names another case or office")
        agreed = terms(header.receiving, header.handling, header.matter, header.mode, now)
        if (agreed.time_limit_working_days, agreed.survey_required) != (
            header.time_limit_working_days,
            header.survey_required,
        ):
            raise CaseError("the submit header disagrees with our agreement", code="terms-mismatch")
        check_application(
            event.details.get("application"), matter=header.matter, materials=agreed.materials,
            categories=agreed.data_categories, attachments=len(summary.attachments),
        )  # fmt: skip
        old = CaseRecord(Case(header, Office.HANDLING), None, now, 0)
    header = old.case.header
    if summary.sender != header.node(event.origin) or summary.matter != header.matter:
        raise MalformedEvent("packet sender or matter does not match the event")
    if summary.action != action_for(event).value:
        raise MalformedEvent(f"action {summary.action} does not carry {event.kind}")
    if event.kind is EventKind.ISSUE_LICENCE:
        check_licence(event.details, header, bundle, event.at)
    case, _ = transition(old.case, Received(event), now)
    return CaseRecord(case, old.access_hash, old.opened_at, old.version)


def check_licence(
    details: Mapping[str, Any], header: CaseHeader, bundle: TrustBundle, at: datetime
) -> None:
    """A licence carried by ``issue-licence`` must be sealed by the handling office
    (signature and certificate path valid at issuance), for this matter, with the number
    the event names; raises :class:`MalformedEvent` (``bad-licence``)."""
    token = details.get("licence")
    if not isinstance(token, str):
        raise MalformedEvent("issue-licence needs the licence token", code="bad-licence")
    report = verify_licence(token, bundle, at=at)
    sealed = all(
        report.result(check).outcome is Outcome.PASSED for check in (Check.SIGNATURE, Check.CHAIN)
    )
    licence = report.licence
    if not sealed or licence is None:
        why = report.failure.value if report.failure else "unverified"
        raise MalformedEvent(f"the licence does not verify ({why})", code="bad-licence")
    if (
        licence.issuer_node != header.handling
        or licence.licence_type != header.matter
        or licence.number != details.get("licence_number")
    ):
        raise MalformedEvent(
            "the licence is not the handling office's licence for this matter", code="bad-licence"
        )
