"""Exceptions of the case workflow (:mod:`relay.cases`).

::

    CaseError
    ├── IllegalTransition     the event is not allowed in the case's state (``code``)
    ├── MalformedEvent        an event or packet content that is not well formed
    ├── OutOfOrder            a partner event skips or repeats a sequence number
    ├── ConflictingEvent      a partner event reuses a sequence number with other content
    └── TrackingDenied        a tracking lookup was refused (``code``: bad-code,
                              bad-link, expired-link, unknown-case, throttled)

Every error carries a stable ``code`` (a short kebab-case string) that the HTTP layer
maps to a problem document and the CLI prints as ``error[CODE]``.
"""

from __future__ import annotations

__all__ = [
    "CaseError",
    "ConflictingEvent",
    "IllegalTransition",
    "MalformedEvent",
    "OutOfOrder",
    "TrackingDenied",
]


class CaseError(Exception):
    """Base of every error raised by :mod:`relay.cases`; ``code`` is stable."""

    code = "case-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IllegalTransition(CaseError):
    """Codes: ``wrong-state`` (not allowed from the current state), ``wrong-office``
    (the other office acts here), ``survey-required`` (the agreement requires a site
    survey before the decision), ``already-rated``, ``no-open-complaint``,
    ``bad-basis`` (a partner claims to have seen events we never sent)."""

    code = "wrong-state"


class MalformedEvent(CaseError):
    code = "malformed-event"


class OutOfOrder(CaseError):
    code = "out-of-order"


class ConflictingEvent(CaseError):
    code = "conflicting-event"


class TrackingDenied(CaseError):
    code = "bad-code"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
