"""The outcome of verifying an e-licence: every check, and which one failed.

Check order (also the display order): ``signature``, ``chain``, ``validity``,
``revocation``, ``suspension``, ``entitlement``. Each check passes, fails with a stable
:class:`Failure` code, or is skipped (not asked for, or not meaningful after an earlier
failure). A licence is valid when no check failed; :attr:`LicenceReport.unchecked`
names what was skipped so a caller can say so (e.g. "revocation not checked").

Failure codes: ``malformed``, ``signature``, ``chain``, ``not-yet-valid``,
``expired``, ``revoked``, ``suspended``, ``issuer-not-entitled``, ``status-unavailable``,
``unknown-issuer`` (a compact licence whose key id names no issuer the verifier holds;
reported on the ``chain`` check).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signing.certificates import Identity
    from signing.licence import Licence

__all__ = ["Check", "CheckResult", "Failure", "LicenceReport", "Outcome"]


class Check(StrEnum):
    SIGNATURE = "signature"
    CHAIN = "chain"
    VALIDITY = "validity"
    REVOCATION = "revocation"
    SUSPENSION = "suspension"
    ENTITLEMENT = "entitlement"


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Failure(StrEnum):
    MALFORMED = "malformed"
    SIGNATURE = "signature"
    CHAIN = "chain"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    ISSUER_NOT_ENTITLED = "issuer-not-entitled"
    STATUS_UNAVAILABLE = "status-unavailable"
    UNKNOWN_ISSUER = "unknown-issuer"  # compact form: no certificate for its key id


@dataclass(frozen=True)
class CheckResult:
    """One check: its outcome, the failure code when it failed, and a sentence."""

    check: Check
    outcome: Outcome
    code: Failure | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.outcome is Outcome.FAILED) != (self.code is not None):
            raise ValueError("a failure code goes with a failed outcome, and only with it")

    def to_json(self) -> dict[str, str | None]:
        return {
            "check": str(self.check),
            "outcome": str(self.outcome),
            "code": None if self.code is None else str(self.code),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class LicenceReport:
    """Every check in :class:`Check` order; ``licence`` and ``signer`` once sealed."""

    checks: tuple[CheckResult, ...]
    licence: Licence | None = None
    signer: Identity | None = None

    def __post_init__(self) -> None:
        if tuple(r.check for r in self.checks) != tuple(Check):
            raise ValueError("a report lists each check once, in order")

    @property
    def valid(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.checks if r.outcome is Outcome.FAILED)

    @property
    def failure(self) -> Failure | None:
        """The code of the first failed check, None when valid."""
        return self.failures[0].code if self.failures else None

    @property
    def unchecked(self) -> tuple[Check, ...]:
        return tuple(r.check for r in self.checks if r.outcome is Outcome.SKIPPED)

    def result(self, check: Check) -> CheckResult:
        return next(r for r in self.checks if r.check is check)

    def to_json(self) -> dict[str, Any]:
        """JSON form for the CLI (``--json``) and the public verification endpoint."""
        return {
            "valid": self.valid,
            "failure": None if self.failure is None else str(self.failure),
            "checks": [r.to_json() for r in self.checks],
            "licence": None if self.licence is None else self.licence.to_json(),
            "signer": None
            if self.signer is None
            else {"node_id": self.signer.node_id, "name": self.signer.name},
        }
