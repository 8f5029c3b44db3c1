"""A node logs one agreement-event leaf per party signature and applied event, once."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from audit_node_support import IDS, NOW, Pki, write_configs

from agreements.events import Event, EventKind, document_digest
from agreements.signatures import sign_event
from agreements.signed import SignedAgreement
from relay.audit.leaves import AgreementEventLeaf, LeafKind, decode_leaf
from relay.audit.merkle import leaf_hash, verify_inclusion
from relay.audit.store import AuditStore
from signing.keys import Signer


def _signer(pki: Pki, node_id: str) -> Signer:
    d = pki.dirs[node_id]
    return Signer.from_pem((d / "seal.key").read_bytes(), (d / "seal.pem").read_bytes())


def _add_events(pki: Pki, path: Path) -> tuple[SignedAgreement, list[str]]:
    """Suspend and resume by the first party, plus a refused resume by the second."""
    signed = SignedAgreement.from_bytes(path.read_bytes())
    a, b = IDS[0], IDS[1]
    tokens = []
    for kind, party in ((EventKind.SUSPEND, a), (EventKind.RESUME, a), (EventKind.RESUME, b)):
        event = Event.for_agreement(signed.agreement, kind, party=party, at=NOW)
        token = sign_event(event, _signer(pki, party), at=NOW)
        tokens.append(token)
        signed = signed.with_event(token)
    path.write_bytes(signed.to_bytes())
    return signed, tokens


def _agreement_leaves(db: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT idx, data FROM audit_leaves ORDER BY idx").fetchall()
    return [
        (int(i), bytes(d))
        for i, d in rows
        if decode_leaf(bytes(d)).kind is LeafKind.AGREEMENT_EVENT
    ]


async def test_start_logs_each_signature_and_applied_event_once_and_restart_adds_none(
    pki: Pki, tmp_path: Path
) -> None:
    nodes = write_configs(pki, tmp_path, IDS)
    signed, tokens = _add_events(pki, tmp_path / "agreement.json")
    node = nodes[IDS[0]]
    await node.start()
    await node.stop()

    leaves = _agreement_leaves(node.db)
    bodies = [decode_leaf(data).body for _, data in leaves]
    assert all(isinstance(b, AgreementEventLeaf) for b in bodies)
    digest = document_digest(signed.agreement)
    got = {(b.event, b.party, b.event_digest) for b in bodies if isinstance(b, AgreementEventLeaf)}
    sha = lambda t: hashlib.sha256(t.encode("ascii")).hexdigest()  # noqa: E731
    expected = {("sign", s.party, sha(s.jws)) for s in signed.signatures}
    expected |= {("suspend", IDS[0], sha(tokens[0])), ("resume", IDS[0], sha(tokens[1]))}
    assert got == expected  # the refused resume by IDS[1] is not logged
    assert len(leaves) == 5
    for b in bodies:
        assert isinstance(b, AgreementEventLeaf)
        assert (b.id, b.version, b.document_sha256) == ("audit-node-test-2026", 1, digest)
    assert {decode_leaf(d).node for _, d in leaves} == {IDS[0]}

    with sqlite3.connect(node.db) as conn:
        store = AuditStore(conn)
        size, root = store.head()
        for index, data in leaves:
            verify_inclusion(leaf_hash(data), index, size, store.inclusion_proof(index, size), root)

    await node.start()  # a restart loads the same files: nothing new to log
    await node.stop()
    assert _agreement_leaves(node.db) == leaves
