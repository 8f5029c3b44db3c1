"""Helpers for the case workflow tests: headers, details per kind, a clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.cases.model import CaseHeader, EventKind, Office
from relay.cases.workflow import Case

RECEIVING, HANDLING = "420106", "320982"
T0 = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Beijing


def header(case_id: str = "WC-2026-0001", *, survey: bool = False, limit: int = 20) -> CaseHeader:
    return CaseHeader(case_id, "food-business-licence", "proxy_receipt", RECEIVING, HANDLING,
                      limit, survey)  # fmt: skip


def details_for(kind: EventKind, case: Case, choice: int = 0) -> Mapping[str, Any]:
    """Valid details for ``kind``; ``choice`` picks among the variants."""
    if kind is EventKind.SUBMIT:
        return {"materials": ["营业执照", "身份证"]}
    if kind is EventKind.REJECT:
        return {"reason": "不属于本机关职权范围"}
    if kind is EventKind.REQUEST_CORRECTION:
        return {"missing": ["食品安全管理制度"], "note": "internal: call Mr Li"}
    if kind is EventKind.SUPPLEMENT:
        return {"supplied": ["食品安全管理制度"]}
    if kind is EventKind.REQUEST_SURVEY:
        return {"surveyor": (Office.RECEIVING, Office.HANDLING)[choice % 2].value}
    if kind is EventKind.SURVEY_REPORT:
        return {"outcome": "pass", "report": "sha256:abc"}
    if kind is EventKind.DECIDE:
        if choice % 3 == 2:
            return {"decision": "deny", "reason": "场所不符合要求"}
        return {"decision": "approve"}
    if kind is EventKind.ISSUE_LICENCE:
        return {"licence": "eyJhbGciOiJFZERTQSJ9.e30.c2ln", "licence_number": "JY32098200001"}
    if kind is EventKind.RATE:
        return {"rating": ("good", "average", "poor")[choice % 3], "comment": "快"}
    if kind is EventKind.COMPLAIN:
        return {"text": "材料交了两次"}
    if kind is EventKind.ANSWER_COMPLAINT:
        open_ = case.view.open_complaints
        seq = open_[choice % len(open_)].seq if open_ else 1
        return {"complaint": seq, "answer": "已协调办理", "staff": "clerk-7"}
    return {}


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def counting_reads(store: Any, monkeypatch: Any) -> list[str]:
    """The ids of the cases ``store`` reads whole (``get``) from now on, in order."""
    read: list[str] = []
    get = store.get

    def counted(case_id: str, **kwargs: Any) -> Any:
        read.append(case_id)
        return get(case_id, **kwargs)

    monkeypatch.setattr(store, "get", counted)
    return read
