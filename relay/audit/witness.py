"""Witnessing a partner's log (pure core).

A node witnesses each partner: it keeps, per partner origin, the last checkpoint it
cosigned (:class:`PartnerState`). At each exchange the partner presents a new signed
checkpoint and a consistency proof *from the size we last cosigned*; we

1. refuse if the partner is halted (a fork was found earlier);
2. verify the origin's signature (:func:`relay.audit.checkpoint.open_checkpoint`);
3. compare sizes: equal sizes must have equal roots; a larger size must come with a
   valid RFC 9162 consistency proof; a *smaller* size must come with a proof from the
   new size to the one we cosigned — if it verifies the checkpoint is merely stale
   (refused, no harm), if not the log was truncated or rewritten;
4. cosign (``cosignature/v1``) and store the cosigned note as the new state.

When a check in step 3 fails the origin has signed two checkpoints it cannot show to
be consistent: :class:`~relay.audit.errors.ForkDetected` is raised carrying
:class:`ForkEvidence` (both signed notes and the proof offered) and the partner's new,
``halted`` state; the caller persists it, stops exchanging and alerts staff.

:func:`compare_cosigned` lets two partners compare the checkpoints they each hold for a
third node and catch a split view (the third node showing them different histories).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from relay.audit.checkpoint import (
    Checkpoint,
    NoteKey,
    SealKey,
    SignedCheckpoint,
    SignedNote,
    cosign,
    open_checkpoint,
)
from relay.audit.errors import (
    CheckpointError,
    ForkDetected,
    ProofError,
    SplitViewDetected,
    WitnessRefused,
)
from relay.audit.merkle import verify_consistency

__all__ = [
    "Cosigned",
    "ForkEvidence",
    "ForkReason",
    "PartnerState",
    "PartnerStatus",
    "ViewComparison",
    "Witness",
    "compare_cosigned",
    "witness_checkpoint",
]


class PartnerStatus(StrEnum):
    ACTIVE = "active"
    HALTED = "halted"


class ForkReason(StrEnum):
    SAME_SIZE_DIFFERENT_ROOT = "same-size-different-root"
    INCONSISTENT = "inconsistent"  # larger tree without a valid consistency proof
    ROLLBACK = "rollback"  # smaller tree that is not a prefix of the cosigned one
    SPLIT_VIEW = "split-view"  # two partners hold inconsistent checkpoints


@dataclass(frozen=True)
class ForkEvidence:
    """Two notes signed by ``origin`` that it could not show to be consistent."""

    origin: str
    reason: ForkReason
    first: bytes  # the checkpoint held (cosigned) before, signed note bytes
    second: bytes  # the conflicting checkpoint, signed note bytes
    proof: tuple[bytes, ...] = ()  # the consistency proof that was offered

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "reason": self.reason.value,
            "first": self.first.decode(),
            "second": self.second.decode(),
            "proof": [base64.b64encode(p).decode() for p in self.proof],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> ForkEvidence:
        proof = obj.get("proof", [])
        if not isinstance(proof, list):
            raise CheckpointError("fork evidence proof must be a list")
        return cls(
            origin=str(obj["origin"]),
            reason=ForkReason(str(obj["reason"])),
            first=str(obj["first"]).encode(),
            second=str(obj["second"]).encode(),
            proof=tuple(base64.b64decode(str(p), validate=True) for p in proof),
        )


@dataclass(frozen=True)
class PartnerState:
    """What we remember about one partner's log."""

    origin: str
    status: PartnerStatus = PartnerStatus.ACTIVE
    cosigned: bytes | None = None  # last checkpoint note we cosigned (with our line)
    evidence: ForkEvidence | None = None

    def __post_init__(self) -> None:
        if (self.status is PartnerStatus.HALTED) != (self.evidence is not None):
            raise ValueError("a partner is halted exactly when fork evidence is kept")

    def to_json(self) -> dict[str, object]:
        """For storage: ``{origin, status, cosigned (note text or null), evidence}``."""
        return {
            "origin": self.origin,
            "status": self.status.value,
            "cosigned": None if self.cosigned is None else self.cosigned.decode(),
            "evidence": None if self.evidence is None else self.evidence.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> PartnerState:
        cosigned, evidence = obj.get("cosigned"), obj.get("evidence")
        if evidence is not None and not isinstance(evidence, Mapping):
            raise CheckpointError("stored fork evidence must be an object")
        return cls(
            origin=str(obj["origin"]),
            status=PartnerStatus(str(obj["status"])),
            cosigned=None if cosigned is None else str(cosigned).encode(),
            evidence=None if evidence is None else ForkEvidence.from_json(evidence),
        )

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint we last cosigned (our own stored copy, not re-verified)."""
        if self.cosigned is None:
            return None
        return Checkpoint.parse(SignedNote.parse(self.cosigned).text)


@dataclass(frozen=True)
class Witness:
    """Our identity as a cosigner: the key name (our origin) and our seal key."""

    name: str
    key: SealKey


@dataclass(frozen=True)
class Cosigned:
    """The outcome of a successful exchange."""

    state: PartnerState
    checkpoint: SignedCheckpoint
    note: bytes  # the partner's checkpoint note with our cosignature appended
    cosignature_line: str  # just our signature line, to send back to the partner


def _fork(
    state: PartnerState, reason: ForkReason, second: bytes, proof: Sequence[bytes]
) -> ForkDetected:
    assert state.cosigned is not None
    evidence = ForkEvidence(state.origin, reason, state.cosigned, second, tuple(proof))
    halted = replace(state, status=PartnerStatus.HALTED, evidence=evidence)
    return ForkDetected(evidence, halted)


def witness_checkpoint(
    state: PartnerState,
    note: bytes,
    proof: Sequence[bytes],
    *,
    origin_key: NoteKey,
    witness: Witness,
    at: int,
) -> Cosigned:
    """Check ``note`` against what we cosigned before and cosign it at time ``at``.

    ``proof`` is the consistency proof from ``state``'s cosigned size to the new size
    (or, if the new size is smaller, from the new size to the cosigned one); it is
    ignored for the first checkpoint of a partner and must be empty for equal sizes.
    Raises :class:`WitnessRefused`, :class:`CheckpointError` or :class:`ForkDetected`.
    """
    if state.status is PartnerStatus.HALTED:
        raise WitnessRefused(f"witnessing of {state.origin} is halted after a fork")
    if origin_key.name != state.origin:
        raise WitnessRefused(f"key {origin_key.name} is not the key of {state.origin}")
    signed = open_checkpoint(note, origin_key)
    new = signed.checkpoint
    old = state.checkpoint
    presented = signed.note.to_bytes()
    if old is not None and old.size > 0:
        if new.size == old.size:
            if new.root_hash != old.root_hash or proof:
                raise _fork(state, ForkReason.SAME_SIZE_DIFFERENT_ROOT, presented, proof)
        elif new.size > old.size:
            try:
                verify_consistency(
                    old.size, new.size, proof, old.root_hash, new.root_hash,
                    tree_hash=origin_key.tree_hash,
                )  # fmt: skip
            except ProofError:
                raise _fork(state, ForkReason.INCONSISTENT, presented, proof) from None
        else:
            if new.size == 0:
                raise _fork(state, ForkReason.ROLLBACK, presented, proof)
            try:
                verify_consistency(
                    new.size, old.size, proof, new.root_hash, old.root_hash,
                    tree_hash=origin_key.tree_hash,
                )  # fmt: skip
            except ProofError:
                raise _fork(state, ForkReason.ROLLBACK, presented, proof) from None
            raise WitnessRefused(
                f"stale checkpoint: {new.size} leaves, we cosigned {old.size} already"
            )
    line = cosign(signed.note.text, witness.name, witness.key, at=at)
    cosigned_note = signed.note.with_signatures(line).to_bytes()
    new_state = PartnerState(state.origin, PartnerStatus.ACTIVE, cosigned_note)
    return Cosigned(new_state, signed, cosigned_note, line.line())


class ViewComparison(StrEnum):
    CONSISTENT = "consistent"
    NEEDS_PROOF = "needs-proof"  # different sizes, no proof supplied yet


def compare_cosigned(
    a: bytes,
    b: bytes,
    *,
    origin_key: NoteKey,
    proof: Sequence[bytes] | None = None,
) -> ViewComparison:
    """Compare two checkpoints of one origin held by two partners.

    Equal sizes must have equal roots. For different sizes pass ``proof``, the
    consistency proof from the smaller to the larger size (fetched from the origin);
    without it the answer is ``NEEDS_PROOF``. Raises :class:`SplitViewDetected`.
    """
    first = open_checkpoint(a, origin_key)
    second = open_checkpoint(b, origin_key)
    small, large = sorted((first, second), key=lambda s: s.checkpoint.size)
    evidence_args = (origin_key.name, ForkReason.SPLIT_VIEW, a, b, tuple(proof or ()))
    if small.checkpoint.size == large.checkpoint.size:
        if small.checkpoint.root_hash != large.checkpoint.root_hash:
            raise SplitViewDetected(ForkEvidence(*evidence_args))
        return ViewComparison.CONSISTENT
    if small.checkpoint.size == 0:
        return ViewComparison.CONSISTENT
    if proof is None:
        return ViewComparison.NEEDS_PROOF
    try:
        verify_consistency(
            small.checkpoint.size,
            large.checkpoint.size,
            proof,
            small.checkpoint.root_hash,
            large.checkpoint.root_hash,
            tree_hash=origin_key.tree_hash,
        )
    except ProofError:
        raise SplitViewDetected(ForkEvidence(*evidence_args)) from None
    return ViewComparison.CONSISTENT
