"""Witnessing: an honest log is cosigned exchange after exchange; a node that rewrites
an old leaf, truncates its log or shows two partners different histories is caught."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from audit_nodes import LogNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import KeyType, NoteKey, open_checkpoint, origin_for
from relay.audit.errors import CheckpointError, ForkDetected, SplitViewDetected, WitnessRefused
from relay.audit.witness import (
    Cosigned,
    ForkEvidence,
    ForkReason,
    PartnerState,
    PartnerStatus,
    ViewComparison,
    Witness,
    compare_cosigned,
    witness_checkpoint,
)

MakeNode = Callable[[str], LogNode]


def _witness(node_id: str) -> Witness:
    return Witness(origin_for(node_id), Ed25519PrivateKey.generate())


def _exchange(state: PartnerState, node: LogNode, witness: Witness, at: int) -> Cosigned:
    """One exchange as the relay runs it: checkpoint, then proof from our size."""
    note = node.checkpoint()
    new_size = open_checkpoint(note, node.note_key).checkpoint.size
    old = state.checkpoint
    proof: list[bytes] = []
    if old is not None and old.size and new_size != old.size:
        lo, hi = sorted((old.size, new_size))
        proof = node.consistency(lo, hi)
    return witness_checkpoint(state, note, proof, origin_key=node.note_key, witness=witness, at=at)


def test_an_honest_log_is_cosigned_at_every_exchange(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    state = PartnerState(node.origin)
    node.grow(5)
    for at in (1000, 2000, 3000):
        done = _exchange(state, node, witness, at)
        state = done.state
        cosigner = NoteKey.for_private_key(witness.name, witness.key, KeyType.COSIGNATURE_V1)
        opened = open_checkpoint(done.note, node.note_key, [cosigner])
        assert opened.cosignatures[0].timestamp == at
        assert done.note.endswith(done.cosignature_line.encode())
        node.grow(7)
    assert state.status is PartnerStatus.ACTIVE
    state = _exchange(state, node, witness, 4000).state
    assert state.checkpoint is not None
    assert state.checkpoint.size == 26
    # An unchanged log is cosigned again (fresh time) with an empty proof.
    again = _exchange(state, node, witness, 5000)
    assert again.state.checkpoint == state.checkpoint
    assert again.note != state.cosigned


def test_rewriting_one_old_leaf_is_detected_at_the_next_exchange(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(10)
    state = _exchange(PartnerState(node.origin), node, witness, 1000).state
    first_note = state.cosigned
    leaves = list(node.leaves)
    leaves[3] = b"what we wish we had recorded"
    node.rebuild(leaves)
    node.grow(4)
    with pytest.raises(ForkDetected) as caught:
        _exchange(state, node, witness, 2000)
    fork = caught.value
    assert fork.evidence.reason is ForkReason.INCONSISTENT
    assert fork.evidence.first == first_note
    assert open_checkpoint(fork.evidence.second, node.note_key).checkpoint.size == 14
    assert fork.state is not None
    assert fork.state.status is PartnerStatus.HALTED
    # The halted partner is refused from now on, whatever it sends.
    with pytest.raises(WitnessRefused, match="halted"):
        _exchange(fork.state, node, witness, 3000)


def test_rewriting_without_growing_is_detected(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(10)
    state = _exchange(PartnerState(node.origin), node, witness, 1000).state
    node.rebuild([*node.leaves[:9], b"changed last leaf"])
    with pytest.raises(ForkDetected) as caught:
        _exchange(state, node, witness, 2000)
    assert caught.value.evidence.reason is ForkReason.SAME_SIZE_DIFFERENT_ROOT


def test_truncating_the_log_is_detected(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(10)
    state = _exchange(PartnerState(node.origin), node, witness, 1000).state
    node.rebuild(node.leaves[:6])
    with pytest.raises(ForkDetected) as caught:
        _exchange(state, node, witness, 2000)
    assert caught.value.evidence.reason is ForkReason.ROLLBACK


def test_truncating_and_regrowing_past_the_old_size_is_detected(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(10)
    state = _exchange(PartnerState(node.origin), node, witness, 1000).state
    node.rebuild(node.leaves[:6])
    node.grow(8, tag="new history")
    with pytest.raises(ForkDetected) as caught:
        _exchange(state, node, witness, 2000)
    assert caught.value.evidence.reason is ForkReason.INCONSISTENT


def test_a_stale_but_consistent_checkpoint_is_refused_without_halting(
    make_node: MakeNode,
) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(4)
    old_note = node.checkpoint()
    node.grow(4)
    state = _exchange(PartnerState(node.origin), node, witness, 1000).state
    proof = node.consistency(4, 8)
    with pytest.raises(WitnessRefused, match="stale"):
        witness_checkpoint(
            state, old_note, proof, origin_key=node.note_key, witness=witness, at=2000
        )


def test_a_checkpoint_not_signed_by_the_partner_is_refused(make_node: MakeNode) -> None:
    node = make_node("420106")
    impostor = make_node("420106")
    witness = _witness("420981")
    impostor.grow(3)
    with pytest.raises(CheckpointError):
        witness_checkpoint(
            PartnerState(node.origin),
            impostor.checkpoint(),
            [],
            origin_key=node.note_key,
            witness=witness,
            at=1,
        )


def test_fork_evidence_round_trips_through_json(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = _witness("420981")
    node.grow(3)
    state = _exchange(PartnerState(node.origin), node, witness, 1).state
    node.rebuild([b"x", b"y", b"z", b"w"])
    with pytest.raises(ForkDetected) as caught:
        _exchange(state, node, witness, 2)
    evidence = caught.value.evidence
    assert ForkEvidence.from_json(evidence.to_json()) == evidence


def _split_view(make_node: MakeNode) -> tuple[LogNode, bytes, bytes]:
    """Node 420106 shows partner B one history and partner C another; both cosign."""
    honest = make_node("420106")
    honest.grow(8)
    twin = make_node("420106")
    twin.key = honest.key
    twin.append(*honest.leaves[:5], b"a different event", *honest.leaves[6:])
    b, c = _witness("420981"), _witness("320982")
    held_by_b = _exchange(PartnerState(honest.origin), honest, b, 100).note
    held_by_c = _exchange(PartnerState(twin.origin), twin, c, 100).note
    return honest, held_by_b, held_by_c


def test_a_split_view_is_detected_when_partners_compare(make_node: MakeNode) -> None:
    honest, held_by_b, held_by_c = _split_view(make_node)
    with pytest.raises(SplitViewDetected) as caught:
        compare_cosigned(held_by_b, held_by_c, origin_key=honest.note_key)
    assert caught.value.evidence.reason is ForkReason.SPLIT_VIEW


def test_a_split_view_at_different_sizes_needs_and_fails_a_proof(make_node: MakeNode) -> None:
    honest, held_by_b, _ = _split_view(make_node)
    forked = make_node("420106")
    forked.key = honest.key
    forked.append(*honest.leaves[:5], b"a different event", *honest.leaves[6:], b"more")
    held_by_c = forked.checkpoint()
    assert (
        compare_cosigned(held_by_b, held_by_c, origin_key=honest.note_key)
        is ViewComparison.NEEDS_PROOF
    )
    with pytest.raises(SplitViewDetected):
        compare_cosigned(
            held_by_b, held_by_c, origin_key=honest.note_key, proof=forked.consistency(8, 9)
        )


def test_consistent_views_compare_clean(make_node: MakeNode) -> None:
    node = make_node("420106")
    node.grow(6)
    early = node.checkpoint()
    node.grow(5)
    late = node.checkpoint()
    key = node.note_key
    assert compare_cosigned(early, early, origin_key=key) is ViewComparison.CONSISTENT
    assert (
        compare_cosigned(late, early, origin_key=key, proof=node.consistency(6, 11))
        is ViewComparison.CONSISTENT
    )
