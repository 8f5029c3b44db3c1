"""The audit log of a running node: checkpoints, both sides of witnessing, proofs.

:class:`AuditService` joins the pure parts of :mod:`relay.audit` with the node's state
(:class:`~relay.audit.state.AuditState`), its seal key, the partners' seal keys and a
clock. Partners are reached through the small :class:`AuditPeer` interface (the HTTPS
implementation is :class:`relay.http.audit_client.AuditClient`), so a witness round runs
against fakes in unit tests and over mutual TLS in the node.

One witness round (:meth:`AuditService.witness_round`), per partner P not halted:
fetch P's checkpoint, fetch the consistency proof from the size we last cosigned (an
``audit-range`` refusal counts as a proof that does not verify), run
:func:`relay.audit.witness.witness_checkpoint`, keep the cosigned note and POST it back
to P. Then compare, for every other partner O we witness, the note P cosigned for O
with ours (:func:`relay.audit.witness.compare_cosigned`, fetching O's consistency proof
when the sizes differ). A fork or split view halts the partner concerned, keeps both
notes as evidence, stores a staff alert and logs at ERROR. Transport failures are not
verdicts: the partner is tried again next round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from relay.audit.bundle import bundle_from_store
from relay.audit.checkpoint import (
    Checkpoint,
    KeyType,
    NoteKey,
    SignedNote,
    node_id_of_origin,
    origin_for,
    sign_checkpoint,
)
from relay.audit.errors import (
    AuditError,
    CheckpointError,
    ForkDetected,
    LogStoreError,
    ProofError,
    SplitViewDetected,
    WitnessRefused,
)
from relay.audit.exchange import (
    accept_cosigned,
    checkpoint_answer,
    consistency_answer,
    inclusion_answer,
)
from relay.audit.merkle import verify_consistency
from relay.audit.state import AuditState
from relay.audit.store import declare_tree_hash
from relay.audit.witness import (
    PartnerState,
    PartnerStatus,
    ViewComparison,
    Witness,
    compare_cosigned,
    witness_checkpoint,
)
from signing.keys import Signer

__all__ = [
    "AuditPeer",
    "AuditService",
    "LeafNotFound",
    "Outcome",
    "PartnerKeys",
    "PeerUnavailable",
    "RangeRefused",
    "RoundResult",
]

_log = logging.getLogger("tongban.relay.audit")


class PeerUnavailable(AuditError):
    """The partner could not be asked (transport, timeout, 5xx, malformed answer)."""


class RangeRefused(AuditError):
    """The partner answered ``audit-range``: it cannot prove what was asked."""


class LeafNotFound(AuditError):
    """The partner holds no leaf for that packet naming us (``audit-unknown-leaf``)."""


class AuditPeer(Protocol):
    """The federation audit endpoints of one partner (docs/protocol.md §7.5)."""

    async def checkpoint(self) -> bytes: ...
    async def consistency(self, old: int, new: int) -> list[bytes]: ...
    async def inclusion_of_packet(
        self, digest: str, size: int
    ) -> tuple[int, list[bytes], bytes | None]: ...
    async def cosigned(self, origin: str) -> bytes | None: ...
    async def cosign(self, note: bytes) -> None: ...


class PartnerKeys(Protocol):
    """Seal keys and chains of nodes, validated against the trust bundle when asked."""

    def seal_chain(self, node_id: str) -> tuple[x509.Certificate, ...]: ...


class Outcome(StrEnum):
    COSIGNED = "cosigned"
    STALE = "stale"
    HALTED = "halted"  # halted before this round: not asked
    FORK = "fork"
    SPLIT_VIEW = "split-view"
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"  # bad signature or malformed checkpoint: no verdict


@dataclass(frozen=True)
class RoundResult:
    partner: str
    outcome: Outcome
    size: int | None = None
    detail: str = ""


class AuditService:
    """Our log's checkpoints, the server side of §7.5, witness rounds and proofs."""

    def __init__(
        self,
        *,
        node_id: str,
        state: AuditState,
        seal: Signer,
        keys: PartnerKeys,
        clock: Callable[[], datetime],
    ) -> None:
        self.node_id = node_id
        self.origin = origin_for(node_id)
        self.state = state
        self._seal = seal
        self._keys = keys
        self._clock = clock
        self.own_key = NoteKey.for_private_key(self.origin, seal)
        # our log hashes the way our log key says (SM3 for SM2); refuses a log that does not
        declare_tree_hash(state.connection, self.own_key.tree_hash)
        # every chain we sign checkpoints under is kept: after a seal rotation the proofs
        # of the checkpoints signed before it carry the chain that verifies them
        pem = "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in seal.chain)
        state.keep_seal_chain(self.own_key.key_id, pem)

    def chain_of(self, note: bytes) -> tuple[x509.Certificate, ...]:
        """The seal chain our signature on ``note`` (one of our checkpoints) was made
        under: the one kept for its key id, else the current one."""
        for signature in SignedNote.parse(note).signatures:
            if signature.name == self.origin:
                pem = self.state.seal_chain_pem(signature.key_id)
                if pem is not None:
                    return tuple(x509.load_pem_x509_certificates(pem.encode("ascii")))
        return tuple(self._seal.chain)

    # -- keys -------------------------------------------------------------------------------

    def key_of(self, node_id: str, key_type: KeyType = KeyType.ED25519) -> NoteKey:
        """The note key of ``node_id``, from its seal certificate validated now."""
        chain = self._keys.seal_chain(node_id)
        return NoteKey.from_certificate(origin_for(node_id), chain[0], key_type)

    # -- our checkpoints ---------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """Our latest signed checkpoint; a new one is signed first if the log grew.

        Refuses (:class:`LogStoreError`) to sign a tree inconsistent with the last one
        we signed: the database was altered under us.

        Several workers of one node may sign at once (:mod:`relay.workers`): the last
        checkpoint is read before the head (the log only grows, so the head read next
        holds it), and one note per size is stored, the first; every worker answers
        with the stored one.
        """
        latest = self.state.latest_checkpoint()
        size, root = self.state.log.head()
        if latest is not None:
            last = Checkpoint.parse(SignedNote.parse(latest).text)
            if last.size == size and last.root_hash == root:
                return latest
            try:
                if last.size > size:
                    raise ProofError("the log is smaller than our last checkpoint")
                if last.size > 0:
                    proof = self.state.log.consistency_proof(last.size, size)
                    verify_consistency(
                        last.size, size, proof, last.root_hash, root,
                        tree_hash=self.own_key.tree_hash,
                    )  # fmt: skip
            except (ProofError, LogStoreError) as exc:
                _log.error("audit log %s is not consistent with our last checkpoint", self.origin)
                raise LogStoreError(f"our log does not extend our last checkpoint: {exc}") from exc
        checkpoint = Checkpoint.for_tree(self.origin, size, root, self.own_key.tree_hash)
        note = sign_checkpoint(checkpoint, self._seal).to_bytes()
        return self.state.put_checkpoint(size, note, self._clock())  # signed once per size

    # -- server side of §7.5 ----------------------------------------------------------------

    def is_halted(self, node_id: str) -> bool:
        return self.state.partner(origin_for(node_id)).status is PartnerStatus.HALTED

    def answer_checkpoint(self) -> dict[str, Any]:
        return checkpoint_answer(self.checkpoint())

    def answer_consistency(self, old: int, new: int) -> dict[str, Any]:
        return consistency_answer(self.state.log, old, new)

    def answer_inclusion(self, index: int, size: int, requester: str) -> dict[str, Any]:
        return inclusion_answer(self.state.log, index, size, requester)

    def answer_inclusion_of_packet(self, digest: str, size: int, requester: str) -> dict[str, Any]:
        """The leaf of a packet exchanged with ``requester`` (LeafNotFound if none)."""
        if not 0 <= size <= self.state.log.size():
            raise LogStoreError(f"tree size {size} exceeds the log")
        for entry in self.state.packets_by_digest(digest):
            if entry.peer == requester and entry.index < size:
                return inclusion_answer(self.state.log, entry.index, size, requester)
        raise LeafNotFound(f"no leaf of packet {digest[:12]} with node {requester} below {size}")

    def answer_cosigned(self, origin: str) -> dict[str, Any] | None:
        note = self.state.partner(origin).cosigned
        return None if note is None else checkpoint_answer(note)

    def accept_cosignature(self, note: bytes, requester: str) -> None:
        """``POST cosign``: keep our own checkpoint cosigned by ``requester``."""
        witness_key = self.key_of(requester, KeyType.COSIGNATURE_V1)
        opened = accept_cosigned(note, own_key=self.own_key, witness_key=witness_key)
        ours = self.state.checkpoint(opened.checkpoint.size)
        if ours is None or SignedNote.parse(ours).text != opened.note.text:
            raise CheckpointError("that checkpoint is not one this node signed")
        self.state.put_cosignature(opened.checkpoint.size, witness_key.name, note, self._clock())

    # -- witnessing ------------------------------------------------------------------------

    def resume(self, node_id: str) -> bool:
        """Staff decision: witness a halted partner again, from its next checkpoint on.

        The evidence stays in the alerts; the partner's cosigned state starts afresh (the
        checkpoint we held conflicts with what it serves now). False if it was not halted.
        """
        origin = origin_for(node_id)
        if self.state.partner(origin).status is not PartnerStatus.HALTED:
            return False
        self.state.put_partner(PartnerState(origin))
        _log.warning("audit: witnessing of %s resumed by staff", origin)
        return True

    def _halt(self, exc: ForkDetected, outcome: Outcome) -> RoundResult:
        state = exc.state
        if state is None:  # a split view: halt the third node's state we hold
            state = replace(
                self.state.partner(exc.evidence.origin),
                status=PartnerStatus.HALTED,
                evidence=exc.evidence,
            )
        detail = f"{exc.evidence.origin}: {exc.evidence.reason.value}"
        self.state.halt_partner(state, f"audit log fork detected: {detail}", self._clock())
        _log.error(
            "audit: %s detected for %s; witnessing halted, evidence kept",
            outcome.value,
            exc.evidence.origin,
        )
        node = node_id_of_origin(exc.evidence.origin)
        return RoundResult(node, outcome, detail=detail)

    async def witness(self, partner: str, peer: AuditPeer) -> RoundResult:
        """One exchange with ``partner`` (steps 1-4 of §7.5)."""
        origin = origin_for(partner)
        state = self.state.partner(origin)
        if state.status is PartnerStatus.HALTED:
            return RoundResult(partner, Outcome.HALTED)
        try:
            note = await peer.checkpoint()
            new = Checkpoint.parse(SignedNote.parse(note).text)
            old = state.checkpoint
            proof: list[bytes] = []
            if old is not None and old.size > 0 and new.size not in (0, old.size):
                low, high = sorted((old.size, new.size))
                try:
                    proof = await peer.consistency(low, high)
                except RangeRefused:
                    proof = []
            done = witness_checkpoint(
                state,
                note,
                proof,
                origin_key=self.key_of(partner),
                witness=Witness(self.origin, self._seal),
                at=int(self._clock().timestamp()),
            )
        except ForkDetected as exc:
            return self._halt(exc, Outcome.FORK)
        except WitnessRefused as exc:
            return RoundResult(partner, Outcome.STALE, detail=str(exc))
        except PeerUnavailable as exc:
            _log.warning("audit: partner %s unavailable: %s", partner, exc)
            return RoundResult(partner, Outcome.UNAVAILABLE, detail=str(exc))
        except AuditError as exc:
            _log.warning("audit: checkpoint of %s refused: %s", partner, exc)
            return RoundResult(partner, Outcome.REFUSED, detail=str(exc))
        self.state.put_partner(done.state)
        try:
            await peer.cosign(done.note)
        except AuditError as exc:
            _log.warning("audit: cosignature not delivered to %s: %s", partner, exc)
        return RoundResult(partner, Outcome.COSIGNED, size=done.checkpoint.checkpoint.size)

    async def compare_views(
        self, partner: str, peer: AuditPeer, peers: Mapping[str, AuditPeer]
    ) -> list[RoundResult]:
        """Compare what ``partner`` cosigned for each other node we witness with ours."""
        results = []
        for third, third_peer in peers.items():
            origin = origin_for(third)
            mine = self.state.partner(origin)
            if third == partner or mine.cosigned is None or mine.status is PartnerStatus.HALTED:
                continue
            try:
                theirs = await peer.cosigned(origin)
                if theirs is None:
                    continue
                key = self.key_of(third)
                verdict = compare_cosigned(mine.cosigned, theirs, origin_key=key)
                if verdict is ViewComparison.NEEDS_PROOF:
                    sizes = sorted(
                        Checkpoint.parse(SignedNote.parse(n).text).size
                        for n in (mine.cosigned, theirs)
                    )
                    try:
                        proof = await third_peer.consistency(sizes[0], sizes[1])
                    except RangeRefused:
                        proof = []
                    compare_cosigned(mine.cosigned, theirs, origin_key=key, proof=proof)
            except SplitViewDetected as exc:
                results.append(self._halt(exc, Outcome.SPLIT_VIEW))
            except AuditError as exc:
                _log.warning("audit: cannot compare views of %s with %s: %s", third, partner, exc)
        return results

    async def witness_round(self, peers: Mapping[str, AuditPeer]) -> list[RoundResult]:
        """Witness every partner in ``peers``, then compare views of the others."""
        results = [await self.witness(p, peer) for p, peer in peers.items()]
        for result in list(results):
            if result.outcome is Outcome.COSIGNED:
                results += await self.compare_views(result.partner, peers[result.partner], peers)
        return results

    # -- proofs ----------------------------------------------------------------------------

    def proof_bundle(self, packet_id: str) -> dict[str, Any]:
        """An offline proof bundle (§7.6) of our log's leaf for ``packet_id``."""
        entries = self.state.packets_by_id(packet_id)
        if not entries:
            raise LeafNotFound(f"our log has no leaf for packet {packet_id}")
        index = entries[0].index
        note = self.state.checkpoint_covering(index) or self.checkpoint()
        size = Checkpoint.parse(SignedNote.parse(note).text).size
        signed = SignedNote.parse(note)
        chains: list[Sequence[x509.Certificate]] = []
        for witness, cosigned in sorted(self.state.cosignatures(size).items()):
            theirs = [s for s in SignedNote.parse(cosigned).signatures if s.name == witness]
            try:
                chains.append(self._keys.seal_chain(node_id_of_origin(witness)))
            except (AuditError, KeyError):
                continue
            signed = signed.with_signatures(*theirs)
        own = self.chain_of(note)  # the chain it was signed under, before any rotation
        return bundle_from_store(self.state.log, index, signed.to_bytes(), own, chains)
