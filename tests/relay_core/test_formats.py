"""Packet, content and receipt formats: exact members, the content an auditor can check
with an independent JOSE implementation, and sealed content bound to its packet."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import load_der_x509_certificate
from joserfc import jws
from joserfc.jwk import OKPKey
from joserfc.registry import HeaderParameter
from relay_core_support import DAFENG, WUCHANG, Federation, send

from relay.core.errors import MalformedPacket
from relay.core.packets import open_content, packet_digest, verify_packet
from relay.core.receipts import Receipt
from signing.errors import SigningError


def joserfc_verify(token: str) -> dict[str, object]:
    """Verify a compact JWS with joserfc, using the x5c leaf's public key."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    leaf = load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    pem = leaf.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    key = OKPKey.import_key(pem)
    registry = jws.JWSRegistry(
        header_registry={"iat": HeaderParameter("signing time", "int")}, algorithms=["EdDSA"]
    )
    registry.max_header_length = 8192  # x5c chains make headers long
    obj = jws.deserialize_compact(token, key, registry=registry)
    return {"header": obj.protected, "payload": json.loads(obj.payload)}


# joserfc warns that RFC 9864 deprecates "EdDSA" in favour of "Ed25519"; protocol v1
# writes "EdDSA" (docs/protocol.md § jws).
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
async def test_packet_content_and_receipt_have_exactly_the_documented_members(
    federation: Federation,
) -> None:
    [pid] = await send(federation, WUCHANG, DAFENG, "case-f")
    await federation.nodes[WUCHANG].deliver_once()
    opened = federation.nodes[DAFENG].read_packet(pid)
    outer = joserfc_verify(opened.packet)
    assert outer["header"]["typ"] == "tongban-packet+jws"  # type: ignore[index]
    payload = outer["payload"]
    assert isinstance(payload, dict)
    assert set(payload) == {
        "v", "id", "case", "from", "to", "matter", "action", "mode", "agreement", "seq",
        "prev", "created", "expires", "attachments", "sealed",
    }  # fmt: skip
    assert set(payload["sealed"]) == {"suite", "kid", "ct"}
    assert payload["sealed"]["suite"] == "mlkem768x25519-sha256-aes256gcm"
    inner = joserfc_verify(opened.content_jws)
    assert inner["header"]["typ"] == "tongban-content+jws"  # type: ignore[index]
    assert inner["payload"] == {
        "v": 1, "packet_id": pid, "case": "case-f", "from": WUCHANG, "to": DAFENG,
        "body": {"step": 0, "applicant": "张三"}, "attachments": [],
    }  # fmt: skip
    receipt = joserfc_verify(opened.receipt or "")
    assert receipt["header"]["typ"] == "tongban-receipt+jws"  # type: ignore[index]
    assert receipt["payload"] == {
        "v": 1, "packet_id": pid, "packet_digest": packet_digest(opened.packet),
        "from": DAFENG, "to": WUCHANG, "status": "accepted", "reason": None,
        "received_at": 1795827600, "log": {"index": 0, "size": 1},
    }  # fmt: skip


async def test_sealed_content_opens_only_inside_its_own_packet(federation: Federation) -> None:
    [pid] = await send(federation, WUCHANG, DAFENG, "case-f")
    out = federation.stores[WUCHANG].outgoing(pid)
    assert out is not None
    at = federation.clock()
    facts = verify_packet(out.token, federation.pki.bundle, at=at).facts
    keys = federation.pki.keys[DAFENG].hpke_keys
    assert open_content(facts, keys, federation.pki.bundle, at=at).body["step"] == 0
    with pytest.raises(SigningError):
        open_content(replace(facts, id="another-id"), keys, federation.pki.bundle, at=at)
    with pytest.raises(SigningError):  # not addressed to Wuchang's keys
        open_content(facts, federation.pki.keys[WUCHANG].hpke_keys, federation.pki.bundle, at=at)
    relabelled = replace(facts, sealed=replace(facts.sealed, suite="sm2-sm4gcm"))
    with pytest.raises(SigningError, match="suite"):  # the suite must be the kid's
        open_content(relabelled, keys, federation.pki.bundle, at=at)


def test_a_receipt_must_be_consistent_to_parse() -> None:
    good = {
        "v": 1, "packet_id": "p", "packet_digest": "a" * 64, "from": DAFENG, "to": WUCHANG,
        "status": "accepted", "reason": None, "received_at": 1795827600,
        "log": {"index": 0, "size": 1},
    }  # fmt: skip
    assert Receipt.from_json(good).log_size == 1
    for bad in (
        {**good, "reason": "gap"},
        {**good, "status": "rejected"},
        {**good, "log": {"index": 1, "size": 1}},
        {**good, "received_at": "2026-11-28T01:00:00Z"},
        {**good, "extra": 1},
    ):
        with pytest.raises(MalformedPacket):
            Receipt.from_json(bad)
