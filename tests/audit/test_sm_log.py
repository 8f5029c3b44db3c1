"""An SM-profile audit log (issue 19): the SQLite log hashes with the SM3 it declares,
keeps that hash for life, and partners of either profile witness it with their own key
type — forks in an SM3 log are caught as in a SHA-256 one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from audit_nodes import LogNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import KeyType, NoteKey, open_checkpoint, origin_for
from relay.audit.errors import ForkDetected, LogStoreError
from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree
from relay.audit.store import (
    AuditStore,
    append,
    append_many,
    declare_tree_hash,
    open_database,
    tree_hash_of,
)
from relay.audit.witness import ForkReason, PartnerState, Witness, witness_checkpoint
from signing.sm2 import Sm2PrivateKey

DATA = [f"event {i}".encode() for i in range(13)]


def _append(conn: sqlite3.Connection, leaves: list[bytes], *, one_by_one: bool) -> None:
    with conn:
        conn.execute("BEGIN")
        if one_by_one:
            for leaf in leaves:
                append(conn, leaf)
        else:
            append_many(conn, leaves)


@pytest.mark.parametrize("one_by_one", [True, False], ids=["append", "append_many"])
def test_a_declared_sm3_log_hashes_roots_and_proofs_with_sm3(
    tmp_path: Path, one_by_one: bool
) -> None:
    conn = open_database(tmp_path / "log.db")
    assert tree_hash_of(conn) is SHA256_TREE  # nothing declared: as every older log
    declare_tree_hash(conn, SM3_TREE)
    declare_tree_hash(conn, SM3_TREE)  # again: no-op
    _append(conn, DATA[:5], one_by_one=one_by_one)
    _append(conn, DATA[5:], one_by_one=one_by_one)
    store, reference = AuditStore(conn), MemoryTree(DATA, tree_hash=SM3_TREE)
    assert store.tree_hash is SM3_TREE
    for size in range(len(DATA) + 1):
        assert store.root(size) == reference.root(size)
    assert store.root() != MemoryTree(DATA).root()
    assert store.inclusion_proof(3, 11) == reference.inclusion_proof(3, 11)
    assert store.consistency_proof(5, 13) == reference.consistency_proof(5, 13)
    conn.close()


def test_a_log_keeps_its_hash_for_life(tmp_path: Path) -> None:
    sm3_log = open_database(tmp_path / "sm3.db")
    declare_tree_hash(sm3_log, SM3_TREE)
    with pytest.raises(LogStoreError, match="hashes with sm3, not sha256"):
        declare_tree_hash(sm3_log, SHA256_TREE)
    with pytest.raises(sqlite3.DatabaseError, match="fixed"):
        sm3_log.execute("UPDATE audit_tree_hash SET name = 'sha256'")
    with pytest.raises(sqlite3.DatabaseError, match="fixed"):
        sm3_log.execute("DELETE FROM audit_tree_hash")
    # an older log (leaves, nothing declared) is SHA-256: it may say so, not turn SM3
    old = open_database(tmp_path / "old.db")
    _append(old, DATA[:3], one_by_one=False)
    with pytest.raises(LogStoreError, match="already holds leaves"):
        declare_tree_hash(old, SM3_TREE)
    declare_tree_hash(old, SHA256_TREE)
    assert AuditStore(old).root() == MemoryTree(DATA[:3]).root()
    old.execute("BEGIN")
    with pytest.raises(LogStoreError, match="outside any open transaction"):
        declare_tree_hash(old, SHA256_TREE)
    old.execute("ROLLBACK")
    sm3_log.close()
    old.close()


@pytest.mark.parametrize("witness_kind", ["ed25519", "sm2"])
def test_partners_of_either_profile_witness_an_sm3_log_and_catch_its_fork(
    tmp_path: Path, witness_kind: str
) -> None:
    node = LogNode(tmp_path, "320982", Sm2PrivateKey.generate())
    witness_key = (
        Ed25519PrivateKey.generate() if witness_kind == "ed25519" else Sm2PrivateKey.generate()
    )
    witness = Witness(origin_for("420106"), witness_key)
    cosigner = NoteKey.for_private_key(witness.name, witness_key, KeyType.COSIGNATURE_V1)
    state = PartnerState(node.origin)
    node.grow(6)
    first = witness_checkpoint(
        state, node.checkpoint(), [], origin_key=node.note_key, witness=witness, at=1000
    )
    node.grow(5)
    proof = node.consistency(6, 11)
    assert proof == MemoryTree(node.leaves, tree_hash=SM3_TREE).consistency_proof(6, 11)
    second = witness_checkpoint(
        first.state, node.checkpoint(), proof, origin_key=node.note_key, witness=witness, at=2000
    )
    opened = open_checkpoint(second.note, node.note_key, [cosigner])
    assert opened.checkpoint.tree_hash is SM3_TREE
    assert [c.key.key_type for c in opened.cosignatures] == [cosigner.key_type]
    # a SHA-256 proof of the same leaves does not prove an SM3 log consistent
    sha_proof = MemoryTree(node.leaves).consistency_proof(6, 11)
    with pytest.raises(ForkDetected):
        witness_checkpoint(
            first.state, node.checkpoint(), sha_proof, origin_key=node.note_key,
            witness=witness, at=2000,
        )  # fmt: skip
    # the node rewrites an old leaf and grows: the witness halts it
    node.rebuild([b"rewritten", *node.leaves[1:], b"event 11"])
    with pytest.raises(ForkDetected) as caught:
        witness_checkpoint(
            second.state, node.checkpoint(), node.consistency(11, 12),
            origin_key=node.note_key, witness=witness, at=3000,
        )  # fmt: skip
    assert caught.value.evidence.reason is ForkReason.INCONSISTENT
    node.close()
