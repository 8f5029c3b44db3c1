"""Proof generation against the RFC 9162 definitions written out naively, and
round trips through our verifiers for every (index/old, size) up to 40 leaves."""

from __future__ import annotations

import hashlib

import pytest

from relay.audit.errors import ProofError
from relay.audit.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

N = 40
DATA = [f"leaf {i}".encode() for i in range(N)]


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, verbatim."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH of RFC 9162 §2.1.3.1, verbatim."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF of RFC 9162 §2.1.4.1, verbatim."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    return MemoryTree(DATA)


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    expected = hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert node_hash(b"a" * 32, b"b" * 32) == expected
    assert MemoryTree().root() == EMPTY_ROOT


def test_roots_match_the_rfc_definition_for_every_size(tree: MemoryTree) -> None:
    for size in range(N + 1):
        assert tree.root(size) == mth(DATA[:size])


def test_inclusion_proofs_match_rfc_and_verify(tree: MemoryTree) -> None:
    for size in range(1, N + 1):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, DATA[:size])
            verify_inclusion(leaf_hash(DATA[index]), index, size, proof, root)


def test_consistency_proofs_match_rfc_and_verify(tree: MemoryTree) -> None:
    for new in range(1, N + 1):
        for old in range(1, new + 1):
            proof = tree.consistency_proof(old, new)
            assert proof == subproof(old, DATA[:new], True)
            verify_consistency(old, new, proof, tree.root(old), tree.root(new))


def test_a_wrong_leaf_or_index_fails_inclusion(tree: MemoryTree) -> None:
    proof = tree.inclusion_proof(5, 21)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"forged"), 5, 21, proof, tree.root(21))
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(DATA[5]), 4, 21, proof, tree.root(21))


def test_a_rewritten_old_leaf_breaks_consistency(tree: MemoryTree) -> None:
    forged = MemoryTree([*DATA[:3], b"rewritten", *DATA[4:]])
    proof = forged.consistency_proof(10, N)
    with pytest.raises(ProofError):
        verify_consistency(10, N, proof, tree.root(10), forged.root(N))


def test_generation_refuses_impossible_requests(tree: MemoryTree) -> None:
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion_proof(N, N)
    with pytest.raises(ValueError, match="no consistency proof"):
        tree.consistency_proof(0, 3)
    with pytest.raises(ValueError, match="no consistency proof"):
        tree.consistency_proof(5, 3)
