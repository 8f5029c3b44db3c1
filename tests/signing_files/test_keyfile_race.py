"""Node-local key files created by several processes at once (the workers of one node
share the staff-token key): every process gets the same key, none reads a file another
is still writing, and a file is never left empty."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from signing.keyfile import load_or_create_ed25519_key

PROCESSES = 6
ROUNDS = 15


def _load(args: tuple[str, object]) -> bytes | str:
    path, barrier = args
    barrier.wait()  # type: ignore[attr-defined]
    try:
        key = load_or_create_ed25519_key(Path(path), "test key")
    except Exception as exc:  # reported to the parent, which fails the test
        return f"{type(exc).__name__}: {exc}"
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _race(path: Path) -> list[bytes | str]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            return pool.map(_load, [(str(path), barrier)] * PROCESSES)


def test_processes_creating_one_key_at_once_all_get_that_key(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "staff-token.key"
        results = _race(path)
        errors = [r for r in results if isinstance(r, str)]
        assert errors == [], errors
        assert len(set(results)) == 1, "the processes hold different keys"
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert sorted(p.name for p in path.parent.iterdir()) == ["staff-token.key"]
