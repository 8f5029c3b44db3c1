"""Failures inside the receiving node roll back the whole batch; revocations published
in a fresh CRL apply to packets without a restart."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from relay_core_support import (
    DAFENG,
    OUTSIDER,
    START,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    audit_size,
    drain,
    facts,
    forge,
    make_pki,
    send,
)

import relay.core.inbox
from certs.pki import revoke
from relay.core.fakes import FakeNetwork
from relay.core.outbox import OutboxPolicy
from relay.core.receipts import ReceiptStatus, verify_receipt


async def test_a_failure_inside_the_receive_transaction_stores_nothing_of_the_batch(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = []
    for case in range(5):
        ids += await send(federation, WUCHANG, DAFENG, f"case-{case}")
    real = relay.core.inbox.sign_receipt
    calls = 0

    def flaky(*args: object, **kwargs: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 3:  # the node dies while answering the third packet of the batch
            raise OSError("disk gone")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(relay.core.inbox, "sign_receipt", flaky)
    await federation.nodes[WUCHANG].deliver_once()
    assert federation.nodes[DAFENG].list_inbox() == []
    assert audit_size(federation, DAFENG) == 0
    monkeypatch.setattr(relay.core.inbox, "sign_receipt", real)
    await drain(federation, WUCHANG)
    assert sorted(i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()) == sorted(ids)
    assert audit_size(federation, DAFENG) == 10


async def test_a_revoked_seal_certificate_is_refused_once_the_new_crl_is_in_force(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    fed = Federation(
        pki=pki,
        root=tmp_path,
        clock=FakeClock(),
        agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)),
        policy=OutboxPolicy(),
    )
    fed.agreement.parties.add(OUTSIDER)
    try:
        receiver = fed.start(DAFENG, bundle=pki.current_bundle)  # re-reads crl.pem
        keys = pki.keys[OUTSIDER]
        first = forge(fed, keys, DAFENG, facts(fed, OUTSIDER, DAFENG, case="r"))
        [ok] = await receiver.receive_batch(OUTSIDER, [first])
        accepted = verify_receipt(ok, pki.bundle, at=START, expected_from=DAFENG)
        assert accepted.status is ReceiptStatus.ACCEPTED
        revoke(pki.federation_dir, (keys.directory / "seal.pem").read_bytes(), now=START)
        second = forge(fed, keys, DAFENG, facts(fed, OUTSIDER, DAFENG, case="s"))
        [refused] = await receiver.receive_batch(OUTSIDER, [second])
        r = verify_receipt(refused, pki.bundle, at=START, expected_from=DAFENG)
        assert r.reason == "bad-signature"
        assert len(receiver.list_inbox()) == 1
    finally:
        fed.close()


async def test_reopening_a_store_drops_half_written_temporary_files(
    federation: Federation,
) -> None:
    leftover = federation.stores[WUCHANG].temp_path()  # where this store seals files
    assert leftover.is_relative_to(federation.root / WUCHANG / "tmp")
    leftover.write_bytes(b"\0" * 100)
    federation.start(WUCHANG)
    assert not leftover.exists()
