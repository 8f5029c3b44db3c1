"""Partners witness each other's audit logs over real mutual TLS (docs/protocol.md §7.5)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from audit_node_support import IDS, Federation, base_leaves, rewrite_log

from relay.audit.checkpoint import KeyType, NoteKey, open_checkpoint, origin_for
from relay.audit.service import Outcome
from relay.audit.witness import PartnerStatus
from relay.tls import client_context

A, B, C = IDS


def _seal_key(fed: Federation, node: str, kind: KeyType = KeyType.ED25519) -> NoteKey:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((fed.pki.dirs[node] / "seal.pem").read_bytes())
    return NoteKey.from_certificate(origin_for(node), cert, kind)


async def test_after_exchanging_packets_checkpoints_are_cosigned_both_ways(
    pair: Federation,
) -> None:
    a, b = pair[A], pair[B]
    await a.send(B, "CASE-1")
    await b.send(A, "CASE-2")

    results_a = await a.live.witness_round()
    results_b = await b.live.witness_round()
    assert [(r.partner, r.outcome) for r in results_a] == [(B, Outcome.COSIGNED)]
    assert [(r.partner, r.outcome) for r in results_b] == [(A, Outcome.COSIGNED)]

    # A keeps B's checkpoint with its own cosignature, and it verifies
    held = a.live.service.state.partner(origin_for(B))
    assert held.status is PartnerStatus.ACTIVE
    assert held.cosigned is not None
    opened = open_checkpoint(
        held.cosigned, _seal_key(pair, B), [_seal_key(pair, A, KeyType.COSIGNATURE_V1)]
    )
    expected = 4 + base_leaves(pair)  # agreement events, 2 packets, 2 receipts
    assert opened.checkpoint.size == b.live.service.state.log.size() == expected
    assert [c.key.name for c in opened.cosignatures] == [origin_for(A)]
    # ... and B kept its own checkpoint as A cosigned it (POST cosign)
    kept = b.live.service.state.cosignatures(opened.checkpoint.size)
    assert set(kept) == {origin_for(A)}
    open_checkpoint(
        kept[origin_for(A)], _seal_key(pair, B), [_seal_key(pair, A, KeyType.COSIGNATURE_V1)]
    )
    # and the other way round
    assert b.live.service.state.partner(origin_for(A)).cosigned is not None
    assert set(a.live.service.state.cosignatures(a.live.service.state.log.size())) == {
        origin_for(B)
    }

    # a second round after more traffic extends the cosigned checkpoint consistently
    await a.send(B, "CASE-3")
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    grown = a.live.service.state.partner(origin_for(B)).checkpoint
    assert grown is not None
    assert grown.size == 6 + base_leaves(pair)
    status, alerts = await a.staff_request(pair.pki, "GET", "/staff/v1/alerts")
    assert status == 200
    assert alerts == {"alerts": []}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"change": 0}, "same-size-different-root"),
        ({"keep": 2}, "rollback"),
    ],
    ids=["rewritten-leaf", "truncated"],
)
async def test_rewritten_or_truncated_log_is_detected_and_the_partner_halted(
    pair: Federation, tamper: dict[str, int], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair[A], pair[B]
    await a.send(B, "CASE-1")
    await b.send(A, "CASE-2")
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    before = a.live.service.state.partner(origin_for(B)).cosigned

    await b.stop()
    rewrite_log(b.db, **tamper)
    await b.start()

    with caplog.at_level(logging.ERROR, logger="tongban.relay.audit"):
        results = await a.live.witness_round()
    assert [(r.partner, r.outcome) for r in results] == [(B, Outcome.FORK)]
    assert any(
        r.levelno == logging.ERROR and "fork" in r.getMessage() and origin_for(B) in r.getMessage()
        for r in caplog.records
    )
    state = a.live.service.state.partner(origin_for(B))
    assert state.status is PartnerStatus.HALTED
    assert state.evidence is not None
    assert state.evidence.reason.value == reason
    assert state.evidence.first == before  # the note we cosigned, kept as evidence

    # staff see the alert with both signed checkpoints
    status, body = await a.staff_request(pair.pki, "GET", "/staff/v1/alerts")
    assert status == 200
    [alert] = body["alerts"]
    assert alert["origin"] == origin_for(B)
    assert alert["peer"] == B  # the console names the partner office by it
    assert alert["reason"] == reason
    second = alert["evidence"]["second"].encode()
    open_checkpoint(second, _seal_key(pair, B))  # B really signed the conflicting note
    assert alert["evidence"]["first"].encode() == before

    # A stops exchanging: B is not asked again, and B's audit requests are refused
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.HALTED]
    assert a.node is not None
    url = a.node.urls["federation"] + "/federation/v1/audit/checkpoint"
    ssl = client_context(
        pair.pki.bundle, pair.pki.dirs[B] / "tls.pem", pair.pki.dirs[B] / "tls.key"
    )
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ssl) as resp:
        assert resp.status == 403
        assert (await resp.json(content_type=None))["code"] == "audit-halted"
    # the halted state survives a restart of A
    await a.stop()
    await a.start()
    assert a.live.service.state.partner(origin_for(B)).status is PartnerStatus.HALTED

    # staff may resume witnessing: B's next checkpoint is taken afresh, the alert stays
    resume = f"/staff/v1/audit/partners/{B}/resume"
    status, body = await a.staff_request(pair.pki, "POST", resume)
    assert (status, body) == (200, {"node": B, "status": "active"})
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    status, body = await a.staff_request(pair.pki, "POST", resume)
    assert (status, body["code"]) == (409, "conflict")
    assert len(a.live.service.state.alerts()) == 1


async def test_exchange_endpoints_answer_problems_with_the_audit_codes(pair: Federation) -> None:
    a, b = pair[A], pair[B]
    await a.send(B, "CASE-1")
    assert a.node is not None
    base = a.node.urls["federation"] + "/federation/v1/audit"
    ssl = client_context(
        pair.pki.bundle, pair.pki.dirs[B] / "tls.pem", pair.pki.dirs[B] / "tls.key"
    )
    cases = [
        ("GET", "/consistency?from=1&to=99", 400, "audit-range"),
        ("GET", "/consistency?from=0&to=1", 400, "audit-range"),
        ("GET", "/consistency?from=x&to=1", 400, "invalid-request"),
        ("GET", "/inclusion?index=5&size=2", 400, "audit-range"),
        ("GET", f"/inclusion?packet={'0' * 64}&size=2", 404, "audit-unknown-leaf"),
        ("GET", f"/cosigned?origin={origin_for(C)}", 404, "audit-unknown-origin"),
    ]
    async with aiohttp.ClientSession() as session:
        for method, path, status, code in cases:
            async with session.request(method, base + path, ssl=ssl) as resp:
                assert (resp.status, (await resp.json(content_type=None))["code"]) == (
                    status,
                    code,
                ), path
        # a cosignature by another key than the requester's is refused
        async with session.get(base + "/checkpoint", ssl=ssl) as resp:
            note = (await resp.json())["checkpoint"]
        async with session.post(base + "/cosign", json={"checkpoint": note}, ssl=ssl) as resp:
            assert resp.status == 400
            assert (await resp.json(content_type=None))["code"] == "audit-cosignature"
        # inclusion by packet digest discloses the leaf to the node it names
        size = a.live.service.state.log.size()
        first = base_leaves(pair)  # the first packet leaf, after the agreement events
        async with session.get(base + f"/inclusion?index={first}&size={size}", ssl=ssl) as resp:
            answer = await resp.json()
        assert answer["leaf"] is not None
        assert answer["index"] == first
    # none of these refusals disturbs witnessing: B still cosigns A
    assert [r.outcome for r in await b.live.witness_round()] == [Outcome.COSIGNED]


async def test_an_unreachable_partner_is_no_verdict_and_is_witnessed_again_later(
    pair: Federation,
) -> None:
    a, b = pair[A], pair[B]
    await b.send(A, "CASE-1")
    await b.stop()
    [result] = await a.live.witness_round()
    assert result.outcome is Outcome.UNAVAILABLE
    assert a.live.service.state.partner(origin_for(B)).status is PartnerStatus.ACTIVE
    assert a.live.service.state.alerts() == []
    await b.start()
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]


async def test_a_node_refuses_to_sign_a_log_that_does_not_extend_its_last_checkpoint(
    pair: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair[A], pair[B]
    await a.send(B, "CASE-1")
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    await b.stop()
    rewrite_log(b.db, change=1, forget=False)  # B still holds the checkpoints it signed
    await b.start()
    with caplog.at_level(logging.ERROR, logger="tongban.relay.audit"):
        [result] = await a.live.witness_round()
    # B answers audit-unavailable: nothing signed, so no evidence and no verdict for A
    assert result.outcome is Outcome.UNAVAILABLE
    assert "audit-unavailable" in result.detail
    assert a.live.service.state.partner(origin_for(B)).status is PartnerStatus.ACTIVE
    # ... while B logged the inconsistency of its own database at ERROR
    assert any("not consistent with our last checkpoint" in r.getMessage() for r in caplog.records)


async def test_resuming_a_code_that_is_no_node_id_is_404_not_500(pair: Federation) -> None:
    """Issue 11, finding 3: ``000000`` matches the route's six digits but is no node id."""
    status, body = await pair[A].staff_request(
        pair.pki, "POST", "/staff/v1/audit/partners/000000/resume"
    )
    assert (status, body["code"]) == (404, "not-found")
