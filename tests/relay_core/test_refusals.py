"""Every refusal of the receive pipeline, with its stable reason code; refused packets
store nothing, a replay gets the original receipt back and stores nothing twice."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    NINGJIN,
    OUTSIDER,
    WUCHANG,
    Federation,
    audit_size,
    facts,
    forge,
)

from relay.core.errors import NotAuthorized
from relay.core.packets import AttachmentKey, packet_digest
from relay.core.receipts import ReceiptStatus, verify_receipt
from signing.encoding import canonical_json
from signing.jws import sign_compact


async def created(fed: Federation, case: str = "case-1", **kw: object) -> str:
    summary = await fed.nodes[WUCHANG].create_packet(
        to=DAFENG, case_id=case, matter=MATTER, action=ACTION, mode=MODE,
        content={"hello": "world"}, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    out = fed.stores[WUCHANG].outgoing(summary.packet_id)
    assert out is not None
    return out.token


async def refusal(fed: Federation, token: str, *, peer: str = WUCHANG, to: str = DAFENG) -> str:
    [receipt] = await fed.nodes[to].receive_batch(peer, [token])
    r = verify_receipt(receipt, fed.pki.bundle, at=fed.clock(), expected_from=to)
    assert r.status is ReceiptStatus.REJECTED
    assert r.to == peer
    assert r.log_index is None
    assert r.reason is not None
    return r.reason


async def test_a_packet_with_any_byte_changed_is_refused_as_bad_signature(
    federation: Federation,
) -> None:
    token = await created(federation)
    # every byte of the protected header's start, both dots and the whole signature;
    # a seeded sample of the rest (all 5,800 positions take ~20 s and prove no more)
    head, payload, _ = token.split(".")
    sig_start = len(head) + len(payload) + 2
    positions = set(range(80)) | {len(head), sig_start - 1} | set(range(sig_start, len(token)))
    positions |= set(random.Random(5).sample(range(len(token)), 400))
    mutated = []
    for i in sorted(positions):
        c = token[i]
        mutated.append(token[:i] + ("B" if c == "A" else "A") + token[i + 1 :])
    receipts = await federation.nodes[DAFENG].receive_batch(WUCHANG, mutated)
    reasons = {
        verify_receipt(r, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG).reason
        for r in receipts
    }
    assert reasons == {"bad-signature"}
    assert federation.nodes[DAFENG].list_inbox() == []
    assert audit_size(federation, DAFENG) == 0
    [ok] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    good = verify_receipt(ok, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
    assert good.status is ReceiptStatus.ACCEPTED


async def test_a_replay_returns_the_original_receipt_and_stores_nothing_twice(
    federation: Federation,
) -> None:
    token = await created(federation)
    [first] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    federation.clock.advance(hours=1)
    federation.agreement.denied_actions.add(ACTION)  # later refusals do not matter
    second, third = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token, token])
    assert first == second == third
    assert len(federation.nodes[DAFENG].list_inbox()) == 1
    assert audit_size(federation, DAFENG) == 2  # packet-received and receipt, once


async def test_the_same_packet_id_with_other_content_is_refused(federation: Federation) -> None:
    obj = facts(federation, WUCHANG, DAFENG)
    keys = federation.pki.keys[WUCHANG]
    original = forge(federation, keys, DAFENG, obj, body={"v": 1})
    await federation.nodes[DAFENG].receive_batch(WUCHANG, [original])
    other = forge(federation, keys, DAFENG, obj, body={"v": 2})
    assert await refusal(federation, other) == "duplicate-id-different-content"


async def test_a_packet_signed_by_a_non_party_is_refused_by_the_agreement(
    federation: Federation,
) -> None:
    outsider = federation.start(OUTSIDER)
    with pytest.raises(NotAuthorized):
        await outsider.create_packet(
            to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={}
        )
    token = forge(
        federation, federation.pki.keys[OUTSIDER], DAFENG, facts(federation, OUTSIDER, DAFENG)
    )
    assert await refusal(federation, token, peer=OUTSIDER) == "agreement-denied:not-a-party"


async def test_a_packet_signed_under_an_untrusted_root_is_refused(federation: Federation) -> None:
    token = forge(
        federation, federation.pki.rogue_keys, NINGJIN, facts(federation, DAFENG, NINGJIN)
    )
    assert await refusal(federation, token, peer=DAFENG, to=NINGJIN) == "bad-signature"


async def test_a_matter_or_action_the_agreement_does_not_grant_is_refused(
    federation: Federation,
) -> None:
    keys = federation.pki.keys[WUCHANG]
    token = forge(federation, keys, DAFENG, facts(federation, WUCHANG, DAFENG, matter="other"))
    assert await refusal(federation, token) == "agreement-denied:matter-not-granted"
    token = await created(federation)
    federation.agreement.denied_actions.add(ACTION)
    assert await refusal(federation, token) == "agreement-denied:action-not-granted"
    with pytest.raises(NotAuthorized):
        await created(federation)  # the sending node checks the agreement too
    assert federation.nodes[DAFENG].list_inbox() == []


async def test_a_packet_from_another_node_than_the_tls_peer_is_refused(
    federation: Federation,
) -> None:
    token = await created(federation)
    assert await refusal(federation, token, peer=NINGJIN) == "sender-mismatch"
    # a node signing a packet that claims another sender
    forged = forge(
        federation, federation.pki.keys[NINGJIN], DAFENG, facts(federation, WUCHANG, DAFENG)
    )
    assert await refusal(federation, forged) == "sender-mismatch"


async def test_a_packet_for_another_node_is_refused(federation: Federation) -> None:
    token = await created(federation)
    assert await refusal(federation, token, to=NINGJIN) == "not-for-me"


async def test_a_sender_without_a_descriptor_is_refused(federation: Federation) -> None:
    federation.agreement.parties.add(OUTSIDER)
    node = federation.nodes[DAFENG]
    node._directory._by_node.pop(OUTSIDER)
    token = forge(
        federation, federation.pki.keys[OUTSIDER], DAFENG, facts(federation, OUTSIDER, DAFENG)
    )
    assert await refusal(federation, token, peer=OUTSIDER) == "unknown-sender"


async def test_an_expired_packet_is_refused(federation: Federation) -> None:
    token = await created(federation, expires_in=timedelta(minutes=5))
    federation.clock.advance(minutes=6)
    assert await refusal(federation, token) == "expired"


async def test_packets_out_of_sequence_are_refused_until_they_come_in_order(
    federation: Federation,
) -> None:
    first = await created(federation)
    second = await created(federation)
    assert await refusal(federation, second) == "gap"
    accepted = await federation.nodes[DAFENG].receive_batch(WUCHANG, [first, second])
    assert len(accepted) == 2
    assert [i.summary.seq for i in federation.nodes[DAFENG].list_inbox()] == [1, 2]
    keys = federation.pki.keys[WUCHANG]
    again = forge(
        federation,
        keys,
        DAFENG,
        facts(federation, WUCHANG, DAFENG, case="case-1", seq=2, prev=packet_digest(first)),
    )
    assert await refusal(federation, again) == "out-of-order"
    wrong_prev = forge(
        federation,
        keys,
        DAFENG,
        facts(federation, WUCHANG, DAFENG, case="case-1", seq=3, prev=packet_digest(first)),
    )
    assert await refusal(federation, wrong_prev) == "out-of-order"


async def test_a_packet_naming_an_attachment_not_held_is_refused(federation: Federation) -> None:
    keys = federation.pki.keys[WUCHANG]
    ref = {"digest": "b" * 64, "size": 10, "media_type": "application/pdf", "name": "a.pdf"}
    akey = AttachmentKey("b" * 64, b"k" * 32, "c" * 64, 1)
    token = forge(
        federation, keys, DAFENG, facts(federation, WUCHANG, DAFENG, attachments=[ref]), keys=[akey]
    )
    assert await refusal(federation, token) == "attachment-missing"


async def test_a_signed_payload_that_is_not_a_packet_is_refused_as_malformed(
    federation: Federation,
) -> None:
    keys = federation.pki.keys[WUCHANG]
    token = sign_compact(
        canonical_json({"v": 1, "id": "x"}),
        keys.seal,
        typ="tongban-packet+jws",
        at=federation.clock(),
    )
    assert await refusal(federation, token) == "malformed"
    assert await refusal(federation, "not a token at all") == "bad-signature"
    assert await refusal(federation, "申请.书.x") == "malformed"  # not even ASCII
    [receipt] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [42])  # type: ignore[list-item]
    r = verify_receipt(receipt, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
    assert r.reason == "malformed"
