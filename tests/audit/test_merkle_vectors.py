"""Every RFC 9162 vector from transparency-dev (../shared/vectors/merkle) against our
verification: happy paths must verify, every mutated proof (wantErr) must fail."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from relay.audit.errors import ProofError
from relay.audit.merkle import verify_consistency, verify_inclusion

# ../shared beside the checkout (as in CI), whatever folder the checkout is in
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "merkle"


def _load(kind: str) -> list[tuple[str, dict[str, object]]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


INCLUSION = _load("inclusion")
CONSISTENCY = _load("consistency")


def _b(text: object) -> bytes:
    assert isinstance(text, str)
    return base64.b64decode(text)


def _proof(value: object) -> list[bytes]:
    assert value is None or isinstance(value, list)
    return [_b(x) for x in value or []]


def test_vector_sets_are_complete() -> None:
    # transparency-dev ships 98 inclusion and 98 consistency vectors; a lost
    # directory must not silently shrink the run.
    assert (len(INCLUSION), len(CONSISTENCY)) == (98, 98)
    assert sum(1 for _, v in INCLUSION + CONSISTENCY if v["wantErr"]) > 150


@pytest.mark.parametrize(("name", "vector"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vector(name: str, vector: dict[str, object]) -> None:
    args = (
        _b(vector["leafHash"]),
        vector["leafIdx"],
        vector["treeSize"],
        _proof(vector["proof"]),
        _b(vector["root"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)  # type: ignore[arg-type]
    else:
        verify_inclusion(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "vector"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vector(name: str, vector: dict[str, object]) -> None:
    args = (
        vector["size1"],
        vector["size2"],
        _proof(vector["proof"]),
        _b(vector["root1"]),
        _b(vector["root2"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)  # type: ignore[arg-type]
    else:
        verify_consistency(*args)  # type: ignore[arg-type]
