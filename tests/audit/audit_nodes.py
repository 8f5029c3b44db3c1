"""A node's audit log on a real SQLite file, for the audit tests (imported by name)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import Checkpoint, NoteKey, log_tree_hash, origin_for, sign_checkpoint
from relay.audit.store import AuditStore, append_many, declare_tree_hash, open_database
from signing.sm2 import Sm2PrivateKey


class LogNode:
    _files = 0
    """A node's log on a real file, able to sign checkpoints and serve proofs.

    ``rebuild`` replaces the whole history, as a node rewriting its past would. An SM2
    key makes an SM-profile log (SM3 hashing, SM2 checkpoints).
    """

    def __init__(
        self, directory: Path, node_id: str, key: Ed25519PrivateKey | Sm2PrivateKey
    ) -> None:
        self.directory = directory
        self.origin = origin_for(node_id)
        self.key = key
        self.conn = self._open()
        self.leaves: list[bytes] = []

    def _open(self) -> sqlite3.Connection:
        LogNode._files += 1
        conn = open_database(self.directory / f"{self.origin[-6:]}-{LogNode._files}.db")
        declare_tree_hash(conn, log_tree_hash(self.key))
        return conn

    @property
    def store(self) -> AuditStore:
        return AuditStore(self.conn)

    @property
    def note_key(self) -> NoteKey:
        return NoteKey.for_private_key(self.origin, self.key)

    def append(self, *leaves: bytes) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            append_many(self.conn, leaves)
        self.leaves.extend(leaves)

    def grow(self, n: int, tag: str = "event") -> None:
        start = len(self.leaves)
        self.append(*(f"{tag} {i}".encode() for i in range(start, start + n)))

    def rebuild(self, leaves: Sequence[bytes]) -> None:
        self.conn.close()
        self.conn = self._open()
        self.leaves = []
        self.append(*leaves)

    def checkpoint(self) -> bytes:
        cp = Checkpoint.for_tree(self.origin, *self.store.head(), self.store.tree_hash)
        return sign_checkpoint(cp, self.key).to_bytes()

    def consistency(self, old: int, new: int) -> list[bytes]:
        """What the federation API would answer; an empty proof when it cannot."""
        if not 0 < old <= new <= self.store.size():
            return []
        return self.store.consistency_proof(old, new)

    def close(self) -> None:
        self.conn.close()
