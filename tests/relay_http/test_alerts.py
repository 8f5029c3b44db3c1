"""The staff alert board: sources read together, a failing source reported, not hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relay.alerts import AlertBoard, Severity, StaffAlert

NOW = datetime.now(UTC)


def _alert(key: str, at: datetime) -> StaffAlert:
    return StaffAlert(
        id=f"test:{key}", source="test", code="test-alert", severity=Severity.WARNING, at=at,
        title_zh="测试", title_en="test", detail="a test alert", subject=key,
    )  # fmt: skip


def test_the_board_lists_every_sources_alerts_oldest_first():
    board = AlertBoard()
    board.add_source("a", lambda now: [_alert("late", now)])
    board.add_source("b", lambda now: [_alert("early", now - timedelta(days=1))])
    assert [a.subject for a in board.current(NOW)] == ["early", "late"]


def test_a_failing_source_becomes_a_critical_alert_and_hides_nothing(caplog):
    def broken(now: datetime) -> list[StaffAlert]:
        raise RuntimeError("database is locked")

    board = AlertBoard()
    board.add_source("broken", broken)
    board.add_source("fine", lambda now: [_alert("x", now)])
    alerts = board.current(NOW)
    assert {a.code for a in alerts} == {"alert-source-failed", "test-alert"}
    failed = next(a for a in alerts if a.code == "alert-source-failed")
    assert failed.severity is Severity.CRITICAL
    assert failed.subject == "broken"
    assert "database is locked" not in failed.detail  # internals go to the log only
    assert "alert source broken failed" in caplog.text


def test_a_source_name_is_registered_once():
    board = AlertBoard()
    board.add_source("a", lambda now: [])
    with pytest.raises(ValueError, match="registered already"):
        board.add_source("a", lambda now: [])


def test_an_alert_in_json_has_a_stable_code_and_both_languages():
    body = _alert("k", NOW).to_json()
    assert body["code"] == "test-alert"
    assert body["title"] == {"zh": "测试", "en": "test"}
    assert body["at"] == NOW.isoformat()
    assert body["severity"] == "warning"
