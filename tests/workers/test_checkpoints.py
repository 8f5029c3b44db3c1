"""Two workers of one node signing checkpoints at once (a partner's ``GET checkpoint``
on one worker while the leader signs on the other): each keeps to a log that only
grows, and one note per size is stored and handed out."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from relay_http_support import Pki

from relay.audit.checkpoint import Checkpoint, SignedNote
from relay.audit.service import AuditService
from relay.audit.state import AuditState
from relay.audit.store import append_many
from signing.nodedir import load_node_keys

NODE = "420106"


class OwnKeys:
    def __init__(self, chain: tuple[x509.Certificate, ...]) -> None:
        self.chain = chain

    def seal_chain(self, node_id: str) -> tuple[x509.Certificate, ...]:
        assert node_id == NODE
        return self.chain


class Meanwhile:
    """A worker's view of the shared state that lets ``other`` run once, right after
    its first read of the log's head or of the last checkpoint."""

    def __init__(self, state: AuditState, other: Callable[[], object]) -> None:
        self._state, self._other = state, other
        self.log = _Log(self, state.log)

    def fire(self) -> None:
        other, self._other = self._other, lambda: None
        other()

    def latest_checkpoint(self) -> bytes | None:
        found = self._state.latest_checkpoint()
        self.fire()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


class _Log:
    def __init__(self, owner: Meanwhile, log: Any) -> None:
        self._owner, self._log = owner, log

    def head(self) -> tuple[int, bytes]:
        found: tuple[int, bytes] = self._log.head()
        self._owner.fire()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def _append(path: Path, n: int, tag: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    append_many(conn, [f"{tag} {i}".encode() for i in range(n)])
    conn.execute("COMMIT")
    conn.close()


def test_a_checkpoint_signed_while_another_worker_appends_and_signs_extends_it(
    workers_pki: Pki, tmp_path: Path
) -> None:
    path = tmp_path / "relay.sqlite3"
    seal = load_node_keys(workers_pki.a).seal
    states = [AuditState(path), AuditState(path)]

    def service(state: Any) -> AuditService:
        return AuditService(node_id=NODE, state=state, seal=seal, keys=OwnKeys(seal.chain),
                            clock=lambda: datetime.now(UTC))  # fmt: skip

    leader = service(states[1])
    _append(path, 3, "first")
    assert Checkpoint.parse(SignedNote.parse(leader.checkpoint()).text).size == 3
    signed_meanwhile: list[bytes] = []

    def the_leader_appends_and_signs() -> None:
        _append(path, 2, "meanwhile")
        signed_meanwhile.append(leader.checkpoint())

    answering = service(Meanwhile(states[0], the_leader_appends_and_signs))
    note = answering.checkpoint()  # a partner's GET checkpoint on the other worker
    assert signed_meanwhile, "the other worker did not sign in between"
    assert Checkpoint.parse(SignedNote.parse(signed_meanwhile[0]).text).size == 5
    assert note == signed_meanwhile[0]  # one note for size 5, whoever signed it
    assert states[0].checkpoint(5) == note
    for state in states:
        state.close()


def test_a_proof_of_a_checkpoint_signed_before_a_seal_rotation_carries_the_old_chain(
    workers_pki: Pki, tmp_path: Path
) -> None:
    """Proofs carried the current seal chain: after a rotation (docs/operations.md), every
    proof of an older checkpoint failed ("not signed by") in dossiers and bundles."""
    from certs.pki import issue_node
    from relay.audit.bundle import bundle_from_store, verify_bundle
    from relay.audit.errors import AuditError
    from signing.certificates import TrustBundle

    path = tmp_path / "relay.sqlite3"
    before = load_node_keys(workers_pki.a).seal
    rotated = issue_node(workers_pki.root, NODE, "武昌区", "127.0.0.1", tmp_path / "new",
                         now=datetime.now(UTC))  # fmt: skip
    after = load_node_keys(rotated.directory).seal
    assert after.chain[0] != before.chain[0]
    state = AuditState(path)

    def service(seal: Any) -> AuditService:
        return AuditService(node_id=NODE, state=state, seal=seal, keys=OwnKeys(seal.chain),
                            clock=lambda: datetime.now(UTC))  # fmt: skip

    _append(path, 3, "before")
    old_note = service(before).checkpoint()
    now = service(after)  # the node starts again with its new seal
    _append(path, 2, "after")
    new_note = now.checkpoint()
    trust = TrustBundle.from_pem(workers_pki.bundle_path.read_bytes())
    at = datetime.now(UTC)
    assert now.chain_of(old_note) == tuple(before.chain)
    assert now.chain_of(new_note) == tuple(after.chain)
    verify_bundle(bundle_from_store(state.log, 1, old_note, now.chain_of(old_note)), trust, at=at)
    verify_bundle(bundle_from_store(state.log, 4, new_note, now.chain_of(new_note)), trust, at=at)
    with pytest.raises(AuditError, match="not signed by"):  # what the proofs carried
        verify_bundle(bundle_from_store(state.log, 1, old_note, after.chain), trust, at=at)
    state.close()
