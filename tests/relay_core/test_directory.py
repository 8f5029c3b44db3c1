"""Partner directory and key rotation: a partner rolls its HPKE keys without a failed
delivery — old and new keys both open packets through the overlap window."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from relay_core_support import DAFENG, WUCHANG, Federation, facts, forge, send

from relay.core.directory import Directory
from relay.core.errors import UnknownNode
from relay.core.model import OutboxState
from relay.core.receipts import ReceiptStatus, verify_receipt
from signing.descriptor import sign_descriptor, verify_descriptor
from signing.errors import InvalidSignature
from signing.hpke import HpkeSuite, generate_hpke_key


def rotate(fed: Federation, node: str, *, days: int) -> tuple[bytes, tuple]:  # type: ignore[type-arg]
    """New HPKE keys for ``node`` and its new signed descriptor, ``days`` from now."""
    keys = fed.pki.keys[node]
    old = verify_descriptor(fed.pki.descriptors[node], fed.pki.bundle, at=fed.clock())
    new_private = (
        generate_hpke_key(HpkeSuite.MLKEM768_X25519),
        generate_hpke_key(HpkeSuite.X25519),
    )
    when = fed.clock() + timedelta(days=days)
    descriptor = replace(old, hpke_keys=tuple(k.public_key() for k in new_private), issued_at=when)
    return sign_descriptor(descriptor, keys.seal, at=when), new_private


def test_the_directory_verifies_descriptors_and_keeps_old_ones_through_the_overlap(
    federation: Federation,
) -> None:
    d = Directory(federation.pki.bundle, overlap=timedelta(days=7))
    with pytest.raises(UnknownNode):
        d.sealing_key(DAFENG)
    original = federation.pki.descriptors[DAFENG]
    middle = len(original) // 2
    flipped = b"B" if original[middle : middle + 1] == b"A" else b"A"
    tampered = original[:middle] + flipped + original[middle + 1 :]
    with pytest.raises(InvalidSignature):
        d.add(tampered, at=federation.clock())
    assert not d.knows(DAFENG)
    d.add(federation.pki.descriptors[DAFENG], at=federation.clock())
    assert d.sealing_key(DAFENG).suite is HpkeSuite.MLKEM768_X25519
    new_bytes, new_private = rotate(federation, DAFENG, days=1)
    d.add(new_bytes, at=federation.clock() + timedelta(days=1))
    assert d.sealing_key(DAFENG) == new_private[0].public_key()
    in_overlap = federation.clock() + timedelta(days=3)
    assert len(d.valid(DAFENG, at=in_overlap)) == 2
    assert len(d.hpke_keys(DAFENG, at=in_overlap)) == 4
    after = federation.clock() + timedelta(days=9)
    assert [x.issued_at for x in d.valid(DAFENG, at=after)] == [
        federation.clock() + timedelta(days=1)
    ]


async def test_a_partner_rolls_its_keys_without_a_failed_delivery(federation: Federation) -> None:
    old_keys = federation.pki.keys[DAFENG]
    federation.network.down.add(DAFENG)
    [queued_before] = await send(federation, WUCHANG, DAFENG, "case-r")  # sealed to old keys
    await federation.nodes[WUCHANG].deliver_once()
    new_bytes, new_private = rotate(federation, DAFENG, days=0)
    federation.nodes[WUCHANG]._directory.add(new_bytes, at=federation.clock())
    [after] = await send(federation, WUCHANG, DAFENG, "case-r")  # sealed to the new keys
    # Dafeng restarts with the new keys first and the old ones kept for the overlap
    federation.start(DAFENG, keys=replace(old_keys, hpke_keys=new_private + old_keys.hpke_keys))
    federation.network.down.clear()
    federation.clock.advance(minutes=10)
    await federation.nodes[WUCHANG].deliver_once()
    federation.clock.advance(minutes=10)
    await federation.nodes[WUCHANG].deliver_once()
    states = [i.state for i in federation.nodes[WUCHANG].list_outbox()]
    assert states == [OutboxState.DELIVERED, OutboxState.DELIVERED]
    reader = federation.nodes[DAFENG]
    assert reader.read_packet(queued_before).content == {"step": 0, "applicant": "张三"}
    assert reader.read_packet(after).content == {"step": 0, "applicant": "张三"}
    # once the overlap is over and the old keys are gone, old-key packets no longer open
    federation.start(DAFENG, keys=replace(old_keys, hpke_keys=new_private))
    stale = forge(
        federation, federation.pki.keys[WUCHANG], DAFENG, facts(federation, WUCHANG, DAFENG)
    )
    [receipt] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [stale])
    r = verify_receipt(receipt, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
    assert r.status is ReceiptStatus.REJECTED
    assert r.reason == "malformed"
