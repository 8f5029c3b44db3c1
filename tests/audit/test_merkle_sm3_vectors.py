"""SM3 Merkle vectors (tests/vectors/merkle_sm3, built from OpenSSL's SM3 and the RFC 9162
definitions by generate.py, nothing of ours): our SM3 tree reproduces every root and
proof, and our verifiers accept exactly the honest vectors. The SHA-256 side is
test_merkle_vectors.py (transparency-dev's RFC 9162 vectors)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from relay.audit.errors import ProofError
from relay.audit.merkle import SM3_TREE, MemoryTree, verify_consistency, verify_inclusion
from signing.sm2 import sm3

VECTORS = Path(__file__).parents[1] / "vectors" / "merkle_sm3"


def _load(name: str) -> dict[str, object]:
    return dict(json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8")))


INCLUSION = _load("inclusion")
CONSISTENCY = _load("consistency")
LEAVES = [bytes.fromhex(str(h)) for h in INCLUSION["leaves"]]


def _b(text: object) -> bytes:
    return base64.b64decode(str(text))


def _vectors(data: dict[str, object]) -> list[dict[str, object]]:
    vectors = data["vectors"]
    assert isinstance(vectors, list)
    return vectors


def test_vector_files_are_complete_and_sm3() -> None:
    for data in (INCLUSION, CONSISTENCY):
        assert data["hash"] == "sm3"
        assert data["leaves"] == CONSISTENCY["leaves"]
    inclusion, consistency = _vectors(INCLUSION), _vectors(CONSISTENCY)
    # every (index, size) and every (old, new) of trees up to 8 leaves, plus mutations
    assert sum(1 for v in inclusion if v["desc"] == "happy path") == 36
    assert sum(1 for v in consistency if v["desc"] == "happy path") == 36
    assert sum(1 for v in inclusion + consistency if v["wantErr"]) > 600


def test_our_sm3_tree_reproduces_every_root_and_proof() -> None:
    tree = MemoryTree(LEAVES, tree_hash=SM3_TREE)
    roots = [_b(r) for r in INCLUSION["roots"]]
    assert [tree.root(n) for n in range(len(LEAVES) + 1)] == roots
    for v in _vectors(INCLUSION):
        if v["desc"] == "happy path":
            index, size = int(v["leafIdx"]), int(v["treeSize"])
            assert tree.inclusion_proof(index, size) == [_b(p) for p in v["proof"]]
            assert SM3_TREE.leaf(LEAVES[index]) == _b(v["leafHash"])
    for v in _vectors(CONSISTENCY):
        if v["desc"] == "happy path":
            old, new = int(v["size1"]), int(v["size2"])
            assert tree.consistency_proof(old, new) == [_b(p) for p in v["proof"]]


@pytest.mark.parametrize(
    "vector", _vectors(INCLUSION), ids=lambda v: f"{v['treeSize']}-{v['leafIdx']}-{v['desc']}"
)
def test_inclusion_vector(vector: dict[str, object]) -> None:
    args = (
        _b(vector["leafHash"]), vector["leafIdx"], vector["treeSize"],
        [_b(p) for p in vector["proof"]], _b(vector["root"]),
    )  # fmt: skip
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, tree_hash=SM3_TREE)
    else:
        verify_inclusion(*args, tree_hash=SM3_TREE)
        if vector["proof"]:  # with a path to hash, an SM3 proof is never a SHA-256 one
            with pytest.raises(ProofError):
                verify_inclusion(*args)


@pytest.mark.parametrize(
    "vector", _vectors(CONSISTENCY), ids=lambda v: f"{v['size1']}-{v['size2']}-{v['desc']}"
)
def test_consistency_vector(vector: dict[str, object]) -> None:
    args = (
        vector["size1"], vector["size2"], [_b(p) for p in vector["proof"]],
        _b(vector["root1"]), _b(vector["root2"]),
    )  # fmt: skip
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args, tree_hash=SM3_TREE)
    else:
        verify_consistency(*args, tree_hash=SM3_TREE)


def test_sm3_is_gbt_32905_and_the_vectors_regenerate_byte_for_byte(tmp_path: Path) -> None:
    """Our SM3 gives the GB/T 32905 Annex A digests, and generate.py (OpenSSL only)
    rebuilds exactly the committed files."""
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    copy = tmp_path / "generate.py"
    copy.write_bytes((VECTORS / "generate.py").read_bytes())
    result = subprocess.run(
        [sys.executable, str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    for name in ("inclusion", "consistency"):
        assert (tmp_path / f"{name}.json").read_bytes() == (VECTORS / f"{name}.json").read_bytes()
