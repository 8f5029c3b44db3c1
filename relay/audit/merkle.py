"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs (pure).

Hashing (RFC 9162 §2.1.1): a leaf hashes as ``SHA-256(0x00 || data)``, an interior
node as ``SHA-256(0x01 || left || right)``; the empty tree's root is ``SHA-256("")``.
An SM-profile log (issue 19) hashes the same way with SM3 (GB/T 32905) in place of
SHA-256: every function and :class:`MemoryTree` take ``tree_hash`` (:data:`SHA256_TREE`
by default, :data:`SM3_TREE`); both digests are 32 bytes, so proofs look alike.

Proof *generation* is written against a :data:`SubtreeSource`: a function returning the
hash of the complete subtree at ``(level, index)`` — the ``2**level`` leaves starting at
leaf ``index * 2**level``. The storage layer answers it with one indexed read, so a
proof for any tree size costs O(log n) reads; :class:`MemoryTree` answers it from a list
for tests and small trees. Proof *verification* follows RFC 9162 §2.1.3.2 and §2.1.4.2
step by step and raises :class:`~relay.audit.errors.ProofError` on any failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relay.audit.errors import ProofError
from signing.sm2 import sm3

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "SHA256_TREE",
    "SM3_TREE",
    "TREE_HASHES",
    "MemoryTree",
    "SubtreeSource",
    "TreeHash",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeSource = Callable[[int, int], bytes]
"""``source(level, index)`` -> hash of the complete subtree of ``2**level`` leaves."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True)
class TreeHash:
    """The RFC 9162 tree hashing over one 32-byte hash function."""

    name: str
    digest: Callable[[bytes], bytes]

    @property
    def empty(self) -> bytes:
        return self.digest(b"")

    def leaf(self, data: bytes) -> bytes:
        return self.digest(b"\x00" + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.digest(b"\x01" + left + right)


SHA256_TREE = TreeHash("sha256", lambda data: hashlib.sha256(data).digest())
SM3_TREE = TreeHash("sm3", sm3)
#: The tree hashes by name, as a log or a checkpoint names them.
TREE_HASHES = {tree.name: tree for tree in (SHA256_TREE, SM3_TREE)}


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(
    source: SubtreeSource, start: int, end: int, *, tree_hash: TreeHash = SHA256_TREE
) -> bytes:
    """MTH(D[start:end]) for a range that RFC 9162's recursion can produce.

    Such a range starts at a multiple of the largest power of two not above its length,
    so it splits into complete subtrees: O(log n) calls to ``source``.
    """
    n = end - start
    if n < 0:
        raise ValueError("range end before start")
    if n == 0:
        return tree_hash.empty
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        if start % n:
            raise ValueError("complete subtree not aligned")
        return source(level, start >> level)
    k = _largest_power_of_two_below(n)
    return tree_hash.node(
        range_hash(source, start, start + k, tree_hash=tree_hash),
        range_hash(source, start + k, end, tree_hash=tree_hash),
    )


def inclusion_proof(
    source: SubtreeSource, index: int, size: int, *, tree_hash: TreeHash = SHA256_TREE
) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size} leaves")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            proof.append(range_hash(source, start + k, end, tree_hash=tree_hash))
            end = start + k
        else:
            proof.append(range_hash(source, start, start + k, tree_hash=tree_hash))
            start += k
    proof.reverse()
    return proof


def consistency_proof(
    source: SubtreeSource, old: int, new: int, *, tree_hash: TreeHash = SHA256_TREE
) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 9162 §2.1.4.1 (empty when ``old == new``)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    proof: list[bytes] = []
    start, end, m, complete = 0, new, old, True
    while m != end - start:
        n = end - start
        k = _largest_power_of_two_below(n)
        if m <= k:
            proof.append(range_hash(source, start + k, end, tree_hash=tree_hash))
            end = start + k
        else:
            proof.append(range_hash(source, start, start + k, tree_hash=tree_hash))
            start += k
            m -= k
            complete = False
    if not complete:
        proof.append(range_hash(source, start, end, tree_hash=tree_hash))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    tree_hash: TreeHash = SHA256_TREE,
) -> None:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2. Raises :class:`ProofError`; returns ``None`` when proven.
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    for item in proof:
        _check_hash(item, "proof element")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = tree_hash.node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = tree_hash.node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old: int,
    new: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
    *,
    tree_hash: TreeHash = SHA256_TREE,
) -> None:
    """Check that the tree (``new``, ``new_root``) extends (``old``, ``old_root``).

    RFC 9162 §2.1.4.2, which requires ``0 < old``; ``old == new`` needs an empty proof
    and byte-equal roots (as transparency-dev's verifier: no length check in that
    case). Raises :class:`ProofError`.
    """
    if old <= 0:
        raise ProofError("consistency from an empty tree proves nothing")
    if old > new:
        raise ProofError(f"old size {old} is larger than new size {new}")
    if old == new:
        if proof:
            raise ProofError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    for item in proof:
        _check_hash(item, "proof element")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = tree_hash.node(c, fr)
            sr = tree_hash.node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = tree_hash.node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


class MemoryTree:
    """An in-memory log (a list of leaf hashes): a reference for tests and tools."""

    def __init__(self, leaves: Sequence[bytes] = (), *, tree_hash: TreeHash = SHA256_TREE) -> None:
        self.tree_hash = tree_hash
        self._levels: list[list[bytes]] = [[]]
        for data in leaves:
            self.append(data)

    def append(self, data: bytes) -> int:
        """Append a leaf's data; return its index."""
        index = len(self._levels[0])
        self._levels[0].append(self.tree_hash.leaf(data))
        level, i = 0, index
        while i & 1:
            if len(self._levels) == level + 1:
                self._levels.append([])
            row = self._levels[level]
            self._levels[level + 1].append(self.tree_hash.node(row[i - 1], row[i]))
            level, i = level + 1, i >> 1
        return index

    def __len__(self) -> int:
        return len(self._levels[0])

    def subtree(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"no tree of size {size}")
        return range_hash(self.subtree, 0, size, tree_hash=self.tree_hash)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = len(self) if size is None else size
        return inclusion_proof(self.subtree, index, size, tree_hash=self.tree_hash)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self) if new is None else new
        return consistency_proof(self.subtree, old, new, tree_hash=self.tree_hash)
