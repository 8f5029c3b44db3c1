"""Staff alerts: one board that every part of a node reports what needs a person to.

An alert is something an operator must look at and act on: a partner's log forked, a
packet that can never be delivered and was parked, next year's official holiday
arrangement not loaded, a CRL or certificate about to run out. Each part of the node
registers a *source* on the staff application's :class:`AlertBoard`; a source is a
function of the current time returning the alerts standing now (computed from what the
part already stores, so an alert disappears by itself once its cause is gone). The
board is read by ``GET /staff/v1/alerts``.

Every alert has a stable ``code`` (for machines), a ``title`` in Chinese and English
and a ``detail`` saying what happened and what to do next (for people). Alerts of the
audit log carry their evidence as well (``origin``, ``reason``, ``evidence``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aiohttp import web

__all__ = ["ALERTS", "AlertBoard", "AlertSource", "Severity", "StaffAlert"]

_log = logging.getLogger("tongban.relay.alerts")


class Severity(StrEnum):
    WARNING = "warning"  # act soon: something will stop working if nobody does
    CRITICAL = "critical"  # act now: something has stopped or is wrong


@dataclass(frozen=True)
class StaffAlert:
    """One standing alert.

    ``id`` is stable for the same cause (``<source>:<key>``), so a client can tell a new
    alert from one it has seen; ``subject`` names what it is about (a packet id, a
    partner's node id, a year)."""

    id: str
    source: str
    code: str
    severity: Severity
    at: datetime
    title_zh: str
    title_en: str
    detail: str
    subject: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        source: str,
        key: str,
        code: str,
        severity: Severity,
        at: datetime,
        title_zh: str,
        title_en: str,
        detail: str,
        subject: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> StaffAlert:
        """The alert of ``source`` about ``key`` (its id is ``<source>:<key>``)."""
        return cls(
            id=f"{source}:{key}",
            source=source,
            code=code,
            severity=severity,
            at=at,
            title_zh=title_zh,
            title_en=title_en,
            detail=detail,
            subject=subject,
            extra=extra or {},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "id": self.id,
            "source": self.source,
            "code": self.code,
            "severity": self.severity.value,
            "at": self.at.isoformat(),
            "title": {"zh": self.title_zh, "en": self.title_en},
            "detail": self.detail,
            "subject": self.subject,
        }


AlertSource = Callable[[datetime], Iterable[StaffAlert]]


class AlertBoard:
    """The alert sources of one node, read together (oldest alert first)."""

    def __init__(self) -> None:
        self._sources: list[tuple[str, AlertSource]] = []

    def add_source(self, name: str, source: AlertSource) -> None:
        if any(n == name for n, _ in self._sources):
            raise ValueError(f"an alert source named {name!r} is registered already")
        self._sources.append((name, source))

    def current(self, now: datetime) -> list[StaffAlert]:
        """Every standing alert. A source that fails is itself reported as an alert
        (and logged), never hides the others."""
        out: list[StaffAlert] = []
        for name, source in self._sources:
            try:
                out.extend(source(now))
            except Exception as exc:  # a broken source must not hide the other alerts
                _log.exception("alert source %s failed", name)
                out.append(
                    StaffAlert(
                        id=f"alerts:{name}",
                        source="alerts",
                        code="alert-source-failed",
                        severity=Severity.CRITICAL,
                        at=now,
                        title_zh="告警来源读取失败",
                        title_en="An alert source could not be read",
                        detail=f"the {name} alerts could not be read ({type(exc).__name__}); "
                        "see the node's log",
                        subject=name,
                    )
                )
        return sorted(out, key=lambda a: (a.at, a.id))


ALERTS = web.AppKey("alerts", AlertBoard)
"""Where the staff application keeps its board (``app[ALERTS]``)."""
