"""Leaf formats: every kind round-trips through its canonical bytes; anything else is
refused (unknown keys, wrong types, mismatched kind and body, non-canonical bytes)."""

from __future__ import annotations

import hashlib
import json

import pytest

from relay.audit.errors import AuditError
from relay.audit.leaves import (
    AgreementEventLeaf,
    AuditLeaf,
    LeafKind,
    LicenceEventLeaf,
    PacketLeaf,
    ReceiptLeaf,
    SurveyReportLeaf,
    decode_leaf,
    encode_leaf,
)


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


PACKET = PacketLeaf(
    digest=_h("packet"), id="p-1", case="c-1", from_node="420981", to_node="420106",
    matter="m-001", action="submit", agreement_id="hb-2026", agreement_version=1,
    agreement_digest=_h("agreement"), seq=0, prev=None, created=1764291723,
)  # fmt: skip

LEAVES = [
    AuditLeaf(LeafKind.PACKET_SENT, "420981", 1764291723, PACKET),
    AuditLeaf(LeafKind.PACKET_RECEIVED, "420106", 1764291724, PACKET),
    AuditLeaf(
        LeafKind.RECEIPT,
        "420106",
        1764291724,
        ReceiptLeaf(_h("r"), "sent", "p-1", _h("packet"), "420106", "420981", "accepted", None, 17),
    ),
    AuditLeaf(
        LeafKind.AGREEMENT_EVENT,
        "420106",
        1,
        AgreementEventLeaf("hb-2026", 1, _h("doc"), "activate", "420981", _h("event")),
    ),
    AuditLeaf(
        LeafKind.LICENCE_EVENT,
        "420106",
        2,
        LicenceEventLeaf("lic-9", "c-1", "issued", _h("vc"), 4711),
    ),
    AuditLeaf(
        LeafKind.SURVEY_REPORT,
        "320982",
        3,
        SurveyReportLeaf("s-1", "c-1", "320982", "420106", _h("report"), None),
    ),
]


@pytest.mark.parametrize("leaf", LEAVES, ids=[leaf.kind.value for leaf in LEAVES])
def test_every_kind_round_trips_through_canonical_bytes(leaf: AuditLeaf) -> None:
    data = encode_leaf(leaf)
    assert decode_leaf(data) == leaf
    obj = json.loads(data)
    assert obj["kind"] == leaf.kind.value
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_packet_leaf_from_routing_facts() -> None:
    facts = {
        "v": 1, "id": "p-1", "case": "c-1", "from": "420981", "to": "420106",
        "matter": "m-001", "action": "submit", "mode": "proxy_receipt",
        "agreement": {"id": "hb-2026", "version": 1, "digest": _h("agreement")},
        "seq": 0, "prev": None, "created": 1764291723, "expires": 1764378123,
        "attachments": [], "sealed": {"suite": "x", "kid": "k", "ct": "c"},
    }  # fmt: skip
    assert PacketLeaf.from_facts(_h("packet"), facts) == PACKET
    del facts["seq"]
    with pytest.raises(AuditError, match="seq"):
        PacketLeaf.from_facts(_h("packet"), facts)


def test_packet_leaf_wire_names() -> None:
    obj = json.loads(encode_leaf(LEAVES[0]))
    assert set(obj) == {"v", "kind", "node", "at", "packet"}
    assert obj["packet"]["from"] == "420981"
    assert obj["packet"]["to"] == "420106"
    assert obj["packet"]["prev"] is None


def _mutated(change: str) -> bytes:
    obj = json.loads(encode_leaf(LEAVES[2]))
    if change == "extra-key":
        obj["receipt"]["note"] = "x"
    elif change == "missing-key":
        del obj["receipt"]["reason"]
    elif change == "bad-digest":
        obj["receipt"]["digest"] = "ABC"
    elif change == "bad-node":
        obj["node"] = "4201"
    elif change == "bool-as-int":
        obj["receipt"]["log_index"] = True
    elif change == "bad-status":
        obj["receipt"]["status"] = "maybe"
    elif change == "reason-on-accept":
        obj["receipt"]["reason"] = "late"
    elif change == "kind-body-mismatch":
        obj["kind"] = "packet-sent"
    elif change == "unknown-kind":
        obj["kind"] = "gossip"
    elif change == "version":
        obj["v"] = 2
    elif change == "negative-time":
        obj["at"] = -1
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "change",
    [
        "extra-key", "missing-key", "bad-digest", "bad-node", "bool-as-int", "bad-status",
        "reason-on-accept", "kind-body-mismatch", "unknown-kind", "version", "negative-time",
    ],
)  # fmt: skip
def test_invalid_leaves_are_refused(change: str) -> None:
    with pytest.raises(AuditError):
        decode_leaf(_mutated(change))


def test_non_canonical_bytes_are_refused() -> None:
    data = encode_leaf(LEAVES[0])
    with pytest.raises(AuditError, match="canonical"):
        decode_leaf(json.dumps(json.loads(data), indent=1).encode())
    with pytest.raises(AuditError):
        decode_leaf(b"\xff")


def test_a_body_of_the_wrong_kind_cannot_be_built() -> None:
    with pytest.raises(AuditError):
        AuditLeaf(LeafKind.RECEIPT, "420106", 1, PACKET)
