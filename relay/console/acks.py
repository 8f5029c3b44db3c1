"""Acknowledgements of staff alerts: who saw an alert and took it on, and when.

An alert (``relay.alerts``) stays on the board while its cause stands; acknowledging it
does not hide it, it records that a named person took it on (电子监察: somebody must
own every red card). Each acknowledgement is one JSON line appended to
``<data dir>/console/alert-acks.jsonl`` (flushed and fsynced before the answer), so it
survives a restart and can be read by an auditor; the staff request journal logs the
request with the person's name as well. The file is read once at start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from relay.console.records import append_record

__all__ = ["Acknowledgement", "AlertAcks"]

_log = logging.getLogger("tongban.relay.console")
_MAX_NOTE = 500


@dataclass(frozen=True)
class Acknowledgement:
    alert_id: str
    person: str
    at: datetime
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert_id,
            "person": self.person,
            "at": self.at.isoformat(),
            "note": self.note,
        }


class AlertAcks:
    """The acknowledgements of one node (latest per alert id), kept in an append-only file."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._latest: dict[str, Acknowledgement] = {}
        if path is not None and path.exists():
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                try:
                    obj = json.loads(line)
                    ack = Acknowledgement(
                        obj["alert"], obj["person"], datetime.fromisoformat(obj["at"]),
                        obj.get("note", ""),
                    )  # fmt: skip
                except (ValueError, KeyError, TypeError):
                    _log.error("%s line %d is not an acknowledgement; skipped", path, number)
                    continue
                self._latest[ack.alert_id] = ack

    def of(self, alert_id: str) -> Acknowledgement | None:
        return self._latest.get(alert_id)

    def acknowledge(
        self, alert_id: str, person: str, at: datetime, note: str = ""
    ) -> Acknowledgement:
        """Record that ``person`` took the alert on at ``at`` (written before it counts)."""
        if len(note) > _MAX_NOTE:
            raise ValueError(f"the note is limited to {_MAX_NOTE} characters")
        ack = Acknowledgement(alert_id, person, at, note)
        if self._path is not None:
            append_record(self._path, ack.to_json())
        self._latest[alert_id] = ack
        _log.info("alert %s acknowledged by %s", alert_id, person)
        return ack
