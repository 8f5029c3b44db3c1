"""The witnessing exchange end to end through its JSON messages (as the federation API
carries them): two nodes with real SQLite logs, the origin answering, the witness
checking and cosigning, the origin accepting the cosigned checkpoint back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from audit_nodes import LogNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import Checkpoint, KeyType, NoteKey, SignedNote, origin_for
from relay.audit.errors import AuditError, CheckpointError, ForkDetected, LogStoreError
from relay.audit.exchange import (
    accept_cosigned,
    checkpoint_answer,
    consistency_answer,
    inclusion_answer,
    parse_checkpoint_answer,
    parse_consistency_answer,
    parse_inclusion_answer,
)
from relay.audit.leaves import AuditLeaf, LeafKind, PacketLeaf, encode_leaf
from relay.audit.merkle import leaf_hash, verify_inclusion
from relay.audit.witness import ForkReason, PartnerState, PartnerStatus, Witness, witness_checkpoint

MakeNode = Callable[[str], LogNode]


def _wire(obj: dict[str, Any]) -> object:
    return json.loads(json.dumps(obj))


def _get_consistency(node: LogNode, old: int, new: int) -> list[bytes]:
    """The witness's GET; an ``audit-range`` refusal becomes an empty proof."""
    try:
        answer = _wire(consistency_answer(node.store, old, new))
    except LogStoreError:
        return []
    return parse_consistency_answer(answer, old, new)


def _run_exchange(state: PartnerState, node: LogNode, witness: Witness, at: int) -> PartnerState:
    note = parse_checkpoint_answer(_wire(checkpoint_answer(node.checkpoint())))
    new_size = Checkpoint.parse(SignedNote.parse(note).text).size
    old = state.checkpoint
    proof: list[bytes] = []
    if old is not None and old.size and new_size != old.size:
        lo, hi = sorted((old.size, new_size))
        proof = _get_consistency(node, lo, hi)
    done = witness_checkpoint(state, note, proof, origin_key=node.note_key, witness=witness, at=at)
    # POST cosign: the origin keeps the cosigned checkpoint.
    witness_key = NoteKey.for_private_key(witness.name, witness.key, KeyType.COSIGNATURE_V1)
    kept = accept_cosigned(done.note, own_key=node.note_key, witness_key=witness_key)
    assert kept.cosignatures[0].timestamp == at
    return PartnerState.from_json(json.loads(json.dumps(done.state.to_json())))


def _packet_leaf(i: int, to: str) -> bytes:
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    packet = PacketLeaf(
        digest, f"p-{i}", "c-1", "420106", to, "m", "submit", "a", 1, digest, i, None, 1
    )
    return encode_leaf(AuditLeaf(LeafKind.PACKET_SENT, "420106", 1, packet))


def test_repeated_exchanges_over_json_keep_the_witness_active(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = Witness(origin_for("420981"), Ed25519PrivateKey.generate())
    state = PartnerState(node.origin)
    for at in range(1, 6):
        node.grow(at * 3)
        state = _run_exchange(state, node, witness, at)
    assert state.status is PartnerStatus.ACTIVE
    assert state.checkpoint is not None
    assert state.checkpoint.size == 45


def test_a_truncated_node_cannot_answer_and_is_halted(make_node: MakeNode) -> None:
    node = make_node("420106")
    witness = Witness(origin_for("420981"), Ed25519PrivateKey.generate())
    node.grow(12)
    state = _run_exchange(PartnerState(node.origin), node, witness, 1)
    node.rebuild(node.leaves[:7])
    with pytest.raises(LogStoreError):
        consistency_answer(node.store, 7, 12)
    with pytest.raises(ForkDetected) as caught:
        _run_exchange(state, node, witness, 2)
    assert caught.value.evidence.reason is ForkReason.ROLLBACK
    assert caught.value.state is not None
    halted = PartnerState.from_json(json.loads(json.dumps(caught.value.state.to_json())))
    assert halted == caught.value.state


def test_inclusion_answers_disclose_leaves_only_to_the_nodes_they_name(
    make_node: MakeNode,
) -> None:
    node = make_node("420106")
    node.append(_packet_leaf(0, "420981"), _packet_leaf(1, "320982"), b"not a leaf")
    root = node.store.root(3)
    for index, requester, disclosed in [
        (0, "420981", True),
        (1, "420981", False),
        (1, "320982", True),
        (2, "420981", False),
    ]:
        answer = _wire(inclusion_answer(node.store, index, 3, requester))
        proof, leaf = parse_inclusion_answer(answer, index, 3)
        assert (leaf is not None) is disclosed
        verify_inclusion(node.store.leaf_hash(index), index, 3, proof, root)
        if leaf is not None:
            assert leaf_hash(leaf) == node.store.leaf_hash(index)


def test_answers_to_other_questions_are_refused(make_node: MakeNode) -> None:
    node = make_node("420106")
    node.grow(9)
    answer = _wire(consistency_answer(node.store, 3, 9))
    with pytest.raises(AuditError, match="other sizes"):
        parse_consistency_answer(answer, 4, 9)
    inclusion = _wire(inclusion_answer(node.store, 2, 9, "420981"))
    with pytest.raises(AuditError, match="another position"):
        parse_inclusion_answer(inclusion, 3, 9)
    bad = {"from": 3, "to": 9, "proof": ["AAAA"]}
    with pytest.raises(AuditError, match="32 bytes"):
        parse_consistency_answer(bad, 3, 9)
    with pytest.raises(AuditError):
        parse_checkpoint_answer({"checkpoint": 7})


def test_the_origin_refuses_a_cosigned_note_without_the_requesters_cosignature(
    make_node: MakeNode,
) -> None:
    node = make_node("420106")
    node.grow(2)
    witness_key = NoteKey(
        origin_for("420981"), Ed25519PrivateKey.generate().public_key(), KeyType.COSIGNATURE_V1
    )
    with pytest.raises(CheckpointError, match="no cosignature"):
        accept_cosigned(node.checkpoint(), own_key=node.note_key, witness_key=witness_key)
