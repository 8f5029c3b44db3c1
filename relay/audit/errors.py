"""Exceptions of the audit log.

::

    AuditError
    ├── ProofError            an inclusion or consistency proof did not verify
    ├── CheckpointError       a note or checkpoint is malformed or its signature failed
    ├── LogStoreError         the stored log cannot answer (bad index/size, no transaction)
    ├── BundleError           an offline proof bundle failed verification (opaque)
    ├── WitnessRefused        a witnessing request was refused (halted partner, bad input)
    └── ForkDetected          two signed checkpoints of one origin are not consistent
        └── SplitViewDetected two partners hold inconsistent checkpoints of one origin

``ForkDetected`` carries the evidence: both signed notes (and, for the witness, the
partner state after halting), so the caller can keep them and alert staff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.audit.witness import ForkEvidence, PartnerState

__all__ = [
    "AuditError",
    "BundleError",
    "CheckpointError",
    "ForkDetected",
    "LogStoreError",
    "ProofError",
    "SplitViewDetected",
    "WitnessRefused",
]


class AuditError(Exception):
    """Base of every error raised by :mod:`relay.audit`."""


class ProofError(AuditError):
    """An inclusion or consistency proof failed verification."""


class CheckpointError(AuditError):
    """A signed note or checkpoint is malformed, or a known key's signature failed."""


class LogStoreError(AuditError):
    """The stored log cannot answer the request."""


class BundleError(AuditError):
    """A proof bundle did not verify; the precise cause is in the message."""


class WitnessRefused(AuditError):
    """The witness refuses the request without having found a fork."""


class ForkDetected(AuditError):
    """Two checkpoints signed by the same origin are not consistent with each other."""

    def __init__(
        self, evidence: ForkEvidence, state: PartnerState | None = None, message: str = ""
    ) -> None:
        super().__init__(message or f"fork detected in {evidence.origin}: {evidence.reason}")
        self.evidence = evidence
        self.state = state


class SplitViewDetected(ForkDetected):
    """Partners comparing cosigned checkpoints found two histories of one origin."""
