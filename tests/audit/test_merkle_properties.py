"""Properties at random sizes (hypothesis): every generated proof verifies, and a proof
for one position or size never verifies another; the SQLite store agrees with the
in-memory reference whatever mix of single and batched appends built it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.audit.errors import ProofError
from relay.audit.merkle import MemoryTree, leaf_hash, verify_consistency, verify_inclusion
from relay.audit.store import AuditStore, append, append_many, open_database

TREE = MemoryTree([i.to_bytes(4, "big") for i in range(3000)])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_only_where_they_were_made(case: tuple[int, int]) -> None:
    size, index = case
    proof = TREE.inclusion_proof(index, size)
    leaf = leaf_hash(index.to_bytes(4, "big"))
    verify_inclusion(leaf, index, size, proof, TREE.root(size))
    other = index + 1 if index + 1 < size else index - 1
    if other >= 0:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other, size, proof, TREE.root(size))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_verify_only_between_their_sizes(case: tuple[int, int]) -> None:
    old, new = case
    proof = TREE.consistency_proof(old, new)
    verify_consistency(old, new, proof, TREE.root(old), TREE.root(new))
    if old > 1:
        with pytest.raises(ProofError):
            verify_consistency(old - 1, new, proof, TREE.root(old - 1), TREE.root(new))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12))
def test_store_matches_reference_for_any_append_pattern(batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(Path(tmp) / "log.db")
        ref = MemoryTree()
        counter = 0
        for turn, count in enumerate(batches):
            data = [f"{counter + i}".encode() for i in range(count)]
            counter += count
            with conn:
                conn.execute("BEGIN")
                if turn % 2:
                    append_many(conn, data)
                else:
                    for d in data:
                        append(conn, d)
            for d in data:
                ref.append(d)
        store = AuditStore(conn)
        assert store.size() == len(ref)
        for size in {0, len(ref) // 2, len(ref)}:
            assert store.root(size) == ref.root(size)
        if len(ref) > 1:
            assert store.consistency_proof(1, len(ref)) == ref.consistency_proof(1)
            assert store.inclusion_proof(len(ref) - 1, len(ref)) == ref.inclusion_proof(
                len(ref) - 1
            )
        conn.close()
