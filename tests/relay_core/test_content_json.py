"""Issue 11, finding 3 in the core: what packet content may hold (protocol.md
"Conventions", tongban JSON values). Fractions are ordinary business data and travel
end to end; content outside the rules is refused at creation and, from a sender that
ignores them, refused by the receiver as ``malformed``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from relay_core_support import ACTION, DAFENG, MATTER, MODE, WUCHANG, Federation, facts, forge

import relay.core.packets
from relay.core.errors import MalformedPacket
from relay.core.model import OutboxState
from relay.core.receipts import RECEIPT_TYP, verify_receipt
from signing.jws import sign_compact

BUSINESS = {"area_m2": 12.5, "fee_yuan": 0.1, "floors": 3, "ratio": 1e-7, "max": 2**53 - 1}


async def test_fractional_numbers_are_delivered_and_read_back_unchanged(
    federation: Federation,
) -> None:
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    summary = await sender.create_packet(
        to=DAFENG, case_id="case-area", matter=MATTER, action=ACTION, mode=MODE,
        content=BUSINESS,
    )  # fmt: skip
    assert await sender.deliver_once() == 1
    [item] = sender.list_outbox()
    assert item.state is OutboxState.DELIVERED
    assert receiver.read_packet(summary.packet_id).content == BUSINESS
    assert sender.read_packet(summary.packet_id).content == BUSINESS


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("content", "case_id"),
    [
        pytest.param({"fee": float("nan")}, "case-x", id="nan"),
        pytest.param({"fee": float("inf")}, "case-x", id="infinity"),
        pytest.param({"n": 2**53}, "case-x", id="int-2^53"),
        pytest.param({"name": "\ud800"}, "case-x", id="lone-surrogate-content"),
        pytest.param({}, "case-\udc00", id="lone-surrogate-case"),
        pytest.param({}, "C" * 129, id="case-id-129"),
        pytest.param(_deep(32), "case-x", id="content-33-deep-in-payload"),
    ],
)
async def test_content_outside_the_rules_is_refused_at_creation(
    federation: Federation, content: dict[str, Any], case_id: str
) -> None:
    sender = federation.nodes[WUCHANG]
    with pytest.raises(MalformedPacket):
        await sender.create_packet(
            to=DAFENG, case_id=case_id, matter=MATTER, action=ACTION, mode=MODE, content=content
        )
    assert sender.list_outbox() == []


async def test_content_31_deep_is_accepted(federation: Federation) -> None:
    await federation.nodes[WUCHANG].create_packet(
        to=DAFENG, case_id="case-deep", matter=MATTER, action=ACTION, mode=MODE,
        content=_deep(31),
    )  # fmt: skip


def _lenient_canonical(value: Any) -> bytes:
    """What a sender ignoring the rules would sign (sorted keys, no checks)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def test_a_receiver_refuses_content_nested_too_deep_as_malformed(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = federation.pki.keys[WUCHANG]
    with monkeypatch.context() as patch:
        patch.setattr(relay.core.packets, "canonical_json", _lenient_canonical)
        token = forge(federation, keys, DAFENG, facts(federation, WUCHANG, DAFENG), body=_deep(40))
    [receipt] = await federation.nodes[DAFENG].receive_batch(WUCHANG, [token])
    verified = verify_receipt(
        receipt, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG
    )
    assert verified.reason == "malformed"
    assert federation.nodes[DAFENG].list_inbox() == []


def test_a_signed_receipt_nested_too_deep_is_malformed_not_a_crash(
    federation: Federation,
) -> None:
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    token = sign_compact(
        deep, federation.pki.keys[DAFENG].seal, typ=RECEIPT_TYP, at=federation.clock()
    )
    with pytest.raises(MalformedPacket):
        verify_receipt(token, federation.pki.bundle, at=federation.clock(), expected_from=DAFENG)
