"""A mixed federation (issue 19): Hubei in the default profile (P-256 root, Ed25519
seals) and Jiangsu in the SM profile (SM2 root, SM2 seals, SM2-with-SM3 certificates)
sign one agreement and exchange a packet and its receipt under it."""

from __future__ import annotations

import json
import random
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from relay_core_support import DAFENG, START, WUCHANG, FakeClock, Federation, mixed_pki

from agreements.authorize import AgreementIndex
from agreements.events import document_digest
from agreements.lifecycle import State, from_signatures
from agreements.signatures import sign_agreement, signing_status
from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree
from relay.audit.store import AuditStore
from relay.authorizer import AgreementAuthorizer
from relay.core.fakes import FakeNetwork
from relay.core.outbox import OutboxPolicy
from relay.core.receipts import ReceiptStatus, verify_receipt
from signing.at_rest import seal_at_rest
from signing.certificates import TrustBundle
from signing.encoding import b64url, b64url_decode
from signing.errors import SigningError
from signing.hpke import seal_info

sys.path.insert(0, str(Path(__file__).parents[1] / "agreements"))
from agreement_support import agreement, clause

MATTER = "food-business-licence"


def _alg(token: str) -> str:
    return str(json.loads(b64url_decode(token.split(".")[0]))["alg"])


async def test_default_and_sm_provinces_exchange_packets_under_one_agreement(
    tmp_path: Path,
) -> None:
    pki = mixed_pki(tmp_path / "pki")
    assert pki.keys[WUCHANG].seal.algorithm == "EdDSA"
    assert pki.keys[DAFENG].seal.algorithm == "SM2SM3"
    ag = agreement(
        [WUCHANG, DAFENG],
        [clause(MATTER, handle=[DAFENG], receive_for={WUCHANG: [DAFENG]})],
        aid="hubei-jiangsu-food",
    )
    signed_at = START - timedelta(hours=12)
    signatures = [sign_agreement(ag, pki.keys[n].seal, at=signed_at) for n in (WUCHANG, DAFENG)]
    assert _alg(signatures[1].jws) == "SM2SM3"
    status = signing_status(ag, signatures, pki.bundle)
    assert set(status.signed) == {WUCHANG, DAFENG}
    assert not status.refused
    lifecycle = from_signatures(ag, status.signed)
    assert lifecycle.state is State.ACTIVE
    auth = AgreementAuthorizer(AgreementIndex([lifecycle]), {ag.ref: document_digest(ag)})
    fed = Federation(
        pki=pki,
        root=tmp_path / "nodes",
        clock=FakeClock(),
        agreement=auth,  # type: ignore[arg-type]
        network=FakeNetwork(rng=random.Random(7)),
        policy=OutboxPolicy(batch_size=16),
    )
    (tmp_path / "nodes").mkdir()
    try:
        sender = fed.start(WUCHANG)
        receiver = fed.start(DAFENG)
        summary = await sender.create_packet(
            to=DAFENG, case_id="c1", matter=MATTER, action="submit", mode="proxy_receipt",
            content={"form": "申请书"},
        )  # fmt: skip
        await sender.deliver_once()
        [item] = sender.list_outbox()
        assert item.receipt is not None
        assert _alg(item.receipt) == "SM2SM3"  # Jiangsu's receipt, signed SM2
        receipt = verify_receipt(item.receipt, pki.bundle, at=fed.clock(), expected_from=DAFENG)
        assert receipt.status is ReceiptStatus.ACCEPTED
        assert receiver.read_packet(summary.packet_id).content == {"form": "申请书"}
        # the SM node reads its own copy of what it sent (sealed at rest under a key
        # derived from its SM2 encryption key)
        reply = await receiver.create_packet(
            to=WUCHANG, case_id="c1", matter=MATTER, action="accept",
            mode="proxy_receipt", content={"需补正": "身份证复印件"},
        )  # fmt: skip
        assert receiver.read_packet(reply.packet_id).content == {"需补正": "身份证复印件"}
        # ... with SM4-GCM (``r2``); a copy sealed before with AES-256-GCM (``r1``) opens
        own = pki.keys[DAFENG].hpke_keys[0]
        kid = own.public_key().kid
        stored = fed.stores[DAFENG].outgoing(reply.packet_id)
        assert stored is not None
        assert stored.own_copy.startswith(f"r2.{kid}.")
        inner = receiver.read_packet(reply.packet_id).content_jws
        info = seal_info("packet-copy", {"id": reply.packet_id})
        older = f"r1.{kid}.{b64url(seal_at_rest(inner.encode(), own, info=info))}"
        fed.stores[DAFENG].connection.execute(
            "UPDATE outbox_bodies SET own_copy = ?"
            " WHERE ord = (SELECT ord FROM outbox WHERE packet_id = ?)",
            (older, reply.packet_id),
        )
        assert receiver.read_packet(reply.packet_id).content_jws == inner
        # each province logs in its own profile: Jiangsu's audit log hashes with SM3
        logs = {node: AuditStore(fed.stores[node].connection) for node in (WUCHANG, DAFENG)}
        assert logs[WUCHANG].tree_hash is SHA256_TREE
        assert logs[DAFENG].tree_hash is SM3_TREE
        leaves = [logs[DAFENG].leaf(i) for i in range(logs[DAFENG].size())]
        assert leaves
        assert logs[DAFENG].root() == MemoryTree(leaves, tree_hash=SM3_TREE).root()
        hubei_only = TrustBundle(roots=pki.bundle.roots[:1], crls=pki.bundle.crls[:1])
        with pytest.raises(SigningError):  # without Jiangsu's SM2 root nothing verifies
            verify_receipt(item.receipt, hubei_only, at=fed.clock(), expected_from=DAFENG)
    finally:
        fed.close()
