"""RFC 9162 tree hashing with SM3 for an SM-profile audit log (issue 19): roots
recomputed with OpenSSL's SM3 (an implementation we did not write), proofs for every
index and size up to 12, and no confusion with the SHA-256 tree."""

from __future__ import annotations

import subprocess

import pytest

from relay.audit.errors import ProofError
from relay.audit.merkle import (
    SHA256_TREE,
    SM3_TREE,
    MemoryTree,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [f"leaf {i}".encode() for i in range(12)]


def _openssl_sm3(data: bytes) -> bytes:
    result = subprocess.run(
        ["openssl", "dgst", "-sm3", "-binary"], input=data, capture_output=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 32
    return result.stdout


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, spelled out, with OpenSSL's SM3."""
    if not leaves:
        return _openssl_sm3(b"")
    if len(leaves) == 1:
        return _openssl_sm3(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _openssl_sm3(b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:]))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 8])
def test_sm3_roots_match_openssl(size: int) -> None:
    tree = MemoryTree(LEAVES[:size], tree_hash=SM3_TREE)
    assert tree.root() == _reference_root(LEAVES[:size])
    assert tree.root() != MemoryTree(LEAVES[:size]).root()


def test_sm3_inclusion_and_consistency_proofs_for_every_size() -> None:
    tree = MemoryTree(LEAVES, tree_hash=SM3_TREE)
    for size in range(1, len(LEAVES) + 1):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            leaf = SM3_TREE.leaf(LEAVES[index])
            verify_inclusion(leaf, index, size, proof, root, tree_hash=SM3_TREE)
            if size > 1:
                with pytest.raises(ProofError):  # an SM3 proof is no SHA-256 proof
                    verify_inclusion(leaf, index, size, proof, root, tree_hash=SHA256_TREE)
        for old in range(1, size):
            proof = tree.consistency_proof(old, size)
            verify_consistency(old, size, proof, tree.root(old), root, tree_hash=SM3_TREE)
            with pytest.raises(ProofError):
                verify_consistency(old, size, proof, tree.root(old), root, tree_hash=SHA256_TREE)


def test_sha256_stays_the_default() -> None:
    import hashlib

    assert MemoryTree(LEAVES[:1]).root() == hashlib.sha256(b"\x00" + LEAVES[0]).digest()
