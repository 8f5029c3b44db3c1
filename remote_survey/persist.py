"""A survey session kept on disk, so a node restart resumes it.

Beside ``evidence.jsonl`` each session's media directory holds ``session.json``: the
plan, the session's state and times (:class:`~remote_survey.session.SurveySession`
without its full history) and the join ledger (which device redeemed which link). It is
rewritten atomically (temporary file, fsync, rename, fsync of the directory) after every
state change and every newly redeemed link. Everything else a room needs (snapshot and
challenge counters, the segment numbering, the recording notice, the sealed report) is
derived from the evidence chain and the files beside it.

:func:`session_to_json` / :func:`session_from_json` are pure; :func:`save_state` and
:func:`load_state` are the file shell.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from relay.durable import write_durably
from remote_survey.entries import epoch_ms
from remote_survey.errors import SurveyError
from remote_survey.join import JoinLedger, _Binding
from remote_survey.reportjson import from_epoch_ms, plan_from_json, plan_to_json
from remote_survey.session import (
    Event,
    Interruption,
    StateChange,
    SurveySession,
    SurveyState,
)

__all__ = [
    "STATE_FILE",
    "load_state",
    "save_state",
    "session_from_json",
    "session_to_json",
]

STATE_FILE = "session.json"
_TYPE = "tongban-survey-session"


def _ms(at: datetime | None) -> int | None:
    return None if at is None else epoch_ms(at)


def _at(ms: Any) -> datetime | None:
    if ms is None:
        return None
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise SurveyError("times in session.json are non-negative integers (ms)")
    return from_epoch_ms(ms)


def session_to_json(session: SurveySession, ledger: JoinLedger) -> dict[str, Any]:
    return {
        "type": _TYPE,
        "v": 1,
        "plan": plan_to_json(session.plan),
        "state": session.state.value,
        "started_ms": _ms(session.started_at),
        "ended_ms": _ms(session.ended_at),
        "last_change_ms": _ms(session.last_change),
        "interruptions": [[epoch_ms(i.start), _ms(i.end)] for i in session.interruptions],
        "ledger": [
            [jti, b.device_id, epoch_ms(b.expires)] for jti, b in sorted(ledger.bindings.items())
        ],
    }


def session_from_json(obj: Any) -> tuple[SurveySession, JoinLedger]:
    """The session and ledger of a ``session.json`` object (raises SurveyError)."""
    if not isinstance(obj, dict) or obj.get("type") != _TYPE or obj.get("v") != 1:
        raise SurveyError("not a version 1 survey session file")
    try:
        plan = plan_from_json(obj["plan"])
        state = SurveyState(obj["state"])
        interruptions = tuple(
            Interruption(start=_at(s) or from_epoch_ms(0), end=_at(e))
            for s, e in obj["interruptions"]
        )
        last = _at(obj["last_change_ms"])
        # the history itself is not kept: one record carries the time of the last change
        history = () if last is None else (StateChange(Event.START, state, state, last),)
        session = SurveySession(
            plan=plan,
            state=state,
            started_at=_at(obj["started_ms"]),
            ended_at=_at(obj["ended_ms"]),
            interruptions=interruptions,
            history=history,
        )
        bindings = {}
        for jti, device, expires in obj["ledger"]:
            if not isinstance(jti, str) or not isinstance(device, str):
                raise SurveyError("ledger entries are [jti, device, expires_ms]")
            bindings[jti] = _Binding(device, _at(expires) or from_epoch_ms(0))
    except (KeyError, TypeError, ValueError) as exc:
        raise SurveyError(f"session.json has a missing or malformed member: {exc}") from None
    return session, JoinLedger(MappingProxyType(bindings))


def save_state(directory: Path, session: SurveySession, ledger: JoinLedger) -> None:
    """Write ``session.json`` atomically and durably."""
    data = json.dumps(session_to_json(session, ledger), ensure_ascii=False, indent=1)
    write_durably(directory / STATE_FILE, (data + "\n").encode("utf-8"))


def load_state(directory: Path) -> tuple[SurveySession, JoinLedger]:
    try:
        obj = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SurveyError(f"cannot read {directory / STATE_FILE}: {exc}") from None
    return session_from_json(obj)
