"""Exceptions of the remote-survey core.

::

    SurveyError
    ├── InvalidSession          a survey plan or session that cannot exist (bad ids, window...)
    ├── InvalidTransition       an event the session's current state does not allow
    ├── JoinRefused             a join token was refused (stable ``reason`` code attached)
    ├── MalformedEvidence       an evidence entry or evidence file that does not parse
    └── MalformedReport         a survey report that cannot be built or parsed
        └── ReasonRequired      a pass verdict without location/challenge proof and no reason

Verification of evidence and of reports does not raise for what it finds: it returns a
list of every problem (tampered entry, missing file, bad signature) so an operator sees
all of them at once. Exceptions are for inputs that cannot be processed at all.
"""

from __future__ import annotations

__all__ = [
    "InvalidSession",
    "InvalidTransition",
    "JoinRefused",
    "MalformedEvidence",
    "MalformedReport",
    "ReasonRequired",
    "SurveyError",
]


class SurveyError(Exception):
    """Base of every error raised by :mod:`remote_survey`."""


class InvalidSession(SurveyError):
    """A survey plan or session whose fields are inconsistent."""


class InvalidTransition(SurveyError):
    """An event that the current state of a session does not allow."""


class JoinRefused(SurveyError):
    """A join token was refused; ``reason`` is a stable code such as ``expired``.

    Reasons: ``bad-token`` (signature, algorithm, structure), ``wrong-audience``,
    ``expired``, ``not-yet-valid``, ``wrong-session``, ``role-not-granted``,
    ``used-on-other-device``, ``not-a-participant``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MalformedEvidence(SurveyError):
    """An evidence entry or evidence file that does not have the documented shape."""


class MalformedReport(SurveyError):
    """A survey report that cannot be built (inconsistent answers) or parsed."""


class ReasonRequired(MalformedReport):
    """A pass verdict lacks proof (``missing``: ``location``, ``challenge``) and no reason
    was written; the inspector must write one (it goes into the report) or change the
    verdict."""

    def __init__(self, missing: tuple[str, ...]) -> None:
        super().__init__(
            f"a pass verdict without {' and '.join(missing)} proof needs a written reason"
        )
        self.missing = missing
