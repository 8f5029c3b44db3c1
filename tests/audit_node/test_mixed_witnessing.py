"""A default-profile node and an SM-profile node witness each other's audit logs over
real mutual TLS (issue 19, docs/protocol.md §7): Wuchang (Hubei, Ed25519 seal, SHA-256
log) and Dafeng (Jiangsu, SM2 seal under an SM2 root, SM3 log). Each cosigns the other's
checkpoints with its own key type, proofs cross in the partner's hash, a proof bundle
of the SM log verifies offline, and a rewritten SM3 log is caught.

Python's TLS speaks no SM2, so Dafeng's TLS certificate (P-256) comes from a P-256
transport root in the trust bundle, installed the way any outside CA's is (``tongban
pki csr`` / ``install``); its seal, and with it everything the audit log signs, stays
SM2 under the Jiangsu root."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from audit_node_support import NOW, Federation, Pki, base_leaves, rewrite_log, write_configs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import init_federation, issue_node
from certs.renewal import install_certificate, make_csr, sign_csr
from relay.audit.bundle import verify_bundle
from relay.audit.checkpoint import KeyType, NoteKey, SignedNote, open_checkpoint, origin_for
from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree
from relay.audit.service import Outcome
from relay.audit.verify import Verdict, verify_partner
from relay.audit.witness import PartnerStatus
from signing.certificates import TrustBundle

WUCHANG, DAFENG = "420106", "320982"


@pytest.fixture(scope="module")
def mixed_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("mixed-pki")
    init_federation(base / "hubei", "Hubei", now=NOW)
    init_federation(base / "jiangsu", "Jiangsu", now=NOW, profile="sm")
    init_federation(base / "transport", "Jiangsu transport", now=NOW)
    dirs = {
        WUCHANG: issue_node(
            base / "hubei", WUCHANG, "武昌区", "127.0.0.1", base / WUCHANG, now=NOW
        ).directory,
        DAFENG: issue_node(
            base / "jiangsu", DAFENG, "大丰区", "127.0.0.1", base / DAFENG, now=NOW
        ).directory,
    }
    bundle = base / "bundle.pem"
    bundle.write_bytes(
        b"".join(
            (base / fed / name).read_bytes()
            for fed in ("hubei", "jiangsu", "transport")
            for name in ("root.pem", "crl.pem")
        )
    )
    tls = sign_csr(base / "transport", make_csr(dirs[DAFENG]), now=NOW)
    trust = TrustBundle.from_pem(bundle.read_bytes())
    install_certificate(dirs[DAFENG], tls.public_bytes(Encoding.PEM), trust, now=NOW)
    return Pki(bundle, dirs)


@pytest.fixture
async def mixed(mixed_pki: Pki, tmp_path: Path) -> AsyncIterator[Federation]:
    federation = Federation(mixed_pki, write_configs(mixed_pki, tmp_path, (WUCHANG, DAFENG)))
    try:
        for node in federation.nodes.values():
            await node.start()
        yield federation
    finally:
        for node in federation.nodes.values():
            await node.stop()


def _seal_key(fed: Federation, node: str, kind: KeyType = KeyType.ED25519) -> NoteKey:
    cert = x509.load_pem_x509_certificate((fed.pki.dirs[node] / "seal.pem").read_bytes())
    return NoteKey.from_certificate(origin_for(node), cert, kind)


def _leaves(fed: Federation, node: str) -> list[bytes]:
    log = fed[node].live.service.state.log
    return [log.leaf(i) for i in range(log.size())]


async def test_each_profile_witnesses_the_other_with_its_own_key_type(mixed: Federation) -> None:
    a, b = mixed[WUCHANG], mixed[DAFENG]
    await a.send(DAFENG, "CASE-1")
    await b.send(WUCHANG, "CASE-2")
    assert [(r.partner, r.outcome) for r in await a.live.witness_round()] == [
        (DAFENG, Outcome.COSIGNED)
    ]
    assert [(r.partner, r.outcome) for r in await b.live.witness_round()] == [
        (WUCHANG, Outcome.COSIGNED)
    ]
    sm_log, ed_log = _seal_key(mixed, DAFENG), _seal_key(mixed, WUCHANG)
    sm_witness = _seal_key(mixed, DAFENG, KeyType.COSIGNATURE_V1)
    ed_witness = _seal_key(mixed, WUCHANG, KeyType.COSIGNATURE_V1)
    assert (sm_log.key_type, sm_witness.key_type) == (KeyType.SM2_SM3, KeyType.SM2_COSIGNATURE_V1)
    assert (ed_log.key_type, ed_witness.key_type) == (KeyType.ED25519, KeyType.COSIGNATURE_V1)
    expected = 4 + base_leaves(mixed)  # agreement events, 2 packets, 2 receipts

    # Wuchang holds Dafeng's SM2-signed SM3 checkpoint with its own Ed25519 cosignature
    held = a.live.service.state.partner(origin_for(DAFENG)).cosigned
    assert held is not None
    opened = open_checkpoint(held, sm_log, [ed_witness])
    assert opened.checkpoint.extensions == ("hash sm3",)
    assert opened.checkpoint.size == expected
    assert (
        opened.checkpoint.root_hash == MemoryTree(_leaves(mixed, DAFENG), tree_hash=SM3_TREE).root()
    )
    assert [c.key for c in opened.cosignatures] == [ed_witness]
    # ... and Dafeng holds Wuchang's SHA-256 checkpoint with an SM2 cosignature
    held = b.live.service.state.partner(origin_for(WUCHANG)).cosigned
    assert held is not None
    opened = open_checkpoint(held, ed_log, [sm_witness])
    assert opened.checkpoint.extensions == ()
    assert opened.checkpoint.root_hash == MemoryTree(_leaves(mixed, WUCHANG)).root()
    assert [c.key for c in opened.cosignatures] == [sm_witness]
    assert a.live.service.state.log.tree_hash is SHA256_TREE
    assert b.live.service.state.log.tree_hash is SM3_TREE

    # each origin kept its checkpoint as the other cosigned it (POST cosign)
    kept = b.live.service.state.cosignatures(expected)
    open_checkpoint(kept[origin_for(WUCHANG)], sm_log, [ed_witness])
    kept = a.live.service.state.cosignatures(expected)
    open_checkpoint(kept[origin_for(DAFENG)], ed_log, [sm_witness])

    # more traffic: the SM3 consistency proof crosses and the next checkpoint is cosigned
    await a.send(DAFENG, "CASE-3")
    [result] = await a.live.witness_round()
    assert (result.outcome, result.size) == (Outcome.COSIGNED, expected + 2)

    # Wuchang checks over HTTPS that Dafeng logged every packet they exchanged (SM3
    # inclusion proofs), and an offline bundle of Dafeng's leaf verifies with the bundle
    report = await verify_partner(
        a.live.service.state, DAFENG, a.live.peers[DAFENG], a.live.service.key_of(DAFENG)
    )
    assert len(report.checks) == 3
    assert {c.verdict for c in report.checks} == {Verdict.INCLUDED}
    packet = a.live.service.state.packets_with(DAFENG)[0].packet_id
    bundle = b.live.service.proof_bundle(packet)
    verified = verify_bundle(bundle, mixed.pki.bundle, at=datetime.now(UTC))
    assert verified.checkpoint.tree_hash is SM3_TREE
    assert verified.signer.node_id == DAFENG
    assert verified.cosigned_by == (WUCHANG,)


async def test_a_rewritten_sm3_log_is_caught_by_the_default_profile_witness(
    mixed: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = mixed[WUCHANG], mixed[DAFENG]
    await b.send(WUCHANG, "CASE-1")
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    before = a.live.service.state.partner(origin_for(DAFENG)).cosigned
    assert before is not None

    await b.stop()
    rewrite_log(b.db, change=0)  # the SM3 log, rehashed consistently with SM3
    await b.start()
    assert b.live.service.state.log.tree_hash is SM3_TREE

    with caplog.at_level(logging.ERROR, logger="tongban.relay.audit"):
        assert [r.outcome for r in await a.live.witness_round()] == [Outcome.FORK]
    state = a.live.service.state.partner(origin_for(DAFENG))
    assert state.status is PartnerStatus.HALTED
    assert state.evidence is not None
    assert state.evidence.reason.value == "same-size-different-root"
    assert state.evidence.first == before
    second = open_checkpoint(state.evidence.second, _seal_key(mixed, DAFENG))
    first = open_checkpoint(SignedNote.parse(before), _seal_key(mixed, DAFENG))
    assert second.checkpoint.size == first.checkpoint.size
    assert second.checkpoint.root_hash != first.checkpoint.root_hash
