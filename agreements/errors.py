"""Exceptions of the agreements core.

::

    AgreementError
    ├── MalformedAgreement      a document (or signed-agreement file) that does not
    │                           follow the format; ``pointer`` is the RFC 6901 JSON
    │                           pointer of the offending field ("" for the whole document)
    ├── SignatureRefused        a party signature was refused (non-party signer,
    │                           revoked/expired seal, signature over other bytes);
    │                           ``party`` names the claimed signer when known
    ├── IllegalTransition       a lifecycle event that the current state does not allow
    │                           (``state`` and ``event`` attached)
    └── CalendarError           a working-day question the calendar cannot answer
                                (date outside the calendar's covered years, bad data)

Cryptographic detail never leaks through :class:`SignatureRefused`: the signing core's
opaque ``InvalidSignature`` stays opaque; only *which party* failed is reported.
"""

from __future__ import annotations

__all__ = [
    "AgreementError",
    "CalendarError",
    "IllegalTransition",
    "MalformedAgreement",
    "SignatureRefused",
]


class AgreementError(Exception):
    """Base of every error raised by :mod:`agreements`."""


class MalformedAgreement(AgreementError):
    """A document that does not follow the agreement format.

    ``pointer`` is the JSON pointer (RFC 6901) of the offending field, ``""`` when the
    whole document is at fault.
    """

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.reason = message


class SignatureRefused(AgreementError):
    """A party signature was refused; ``party`` is the claimed signer, if known."""

    def __init__(self, party: str | None, message: str) -> None:
        super().__init__(message)
        self.party = party


class IllegalTransition(AgreementError):
    """A lifecycle event that is not allowed in the current state."""

    def __init__(self, state: str, event: str, message: str) -> None:
        super().__init__(f"{event} not allowed in state {state}: {message}")
        self.state = state
        self.event = event


class CalendarError(AgreementError):
    """The working-day calendar cannot answer (outside its years, or bad data)."""
