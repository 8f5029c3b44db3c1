"""A node that shows two partners different histories is caught when they compare."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_node_support import (
    IDS,
    Federation,
    base_leaves,
    copy_data,
    rewrite_log,
    swap_data,
)
from cryptography import x509

from relay.audit.checkpoint import NoteKey, open_checkpoint, origin_for
from relay.audit.service import Outcome
from relay.audit.witness import PartnerStatus

A, B, C = IDS


@pytest.mark.parametrize("grow", [False, True], ids=["same-size", "forked-log-grew"])
async def test_two_partners_shown_different_histories_detect_the_split_view(
    trio: Federation, tmp_path: Path, grow: bool
) -> None:
    """Same sizes: the roots differ. Different sizes: C's consistency proof between
    the two cosigned sizes cannot verify against both roots (or C cannot give one)."""
    a, b, c = trio[A], trio[B], trio[C]
    await c.send(A, "CASE-1")
    await c.send(B, "CASE-2")

    # C keeps two databases: the honest one (X) and one with its last leaf rewritten (Y)
    await c.stop()
    copy_data(c, tmp_path / "x")
    rewrite_log(c.db, change=3)
    copy_data(c, tmp_path / "y")
    swap_data(c, tmp_path / "x")
    await c.start()

    # A witnesses C while C shows it X ...
    assert {(r.partner, r.outcome) for r in await a.live.witness_round()} == {
        (B, Outcome.COSIGNED),
        (C, Outcome.COSIGNED),
    }
    # ... and B, which never saw C before, is shown Y: nothing to compare with in C's
    # own answers, but A's cosigned checkpoint of C disagrees
    await c.stop()
    swap_data(c, tmp_path / "y")
    await c.start()
    if grow:
        await c.send(B, "CASE-3")  # Y grows to 6 leaves
    results_b = await b.live.witness_round()
    assert (C, Outcome.SPLIT_VIEW) in {(r.partner, r.outcome) for r in results_b}
    assert b.live.service.state.partner(origin_for(C)).status is PartnerStatus.HALTED

    # C goes back to X for A: A's own check of C passes, the comparison with B does not
    await c.stop()
    swap_data(c, tmp_path / "x")
    await c.start()
    results_a = await a.live.witness_round()
    outcomes = [(r.partner, r.outcome) for r in results_a]
    assert (C, Outcome.COSIGNED) in outcomes
    assert (C, Outcome.SPLIT_VIEW) in outcomes

    cert = x509.load_pem_x509_certificate((trio.pki.dirs[C] / "seal.pem").read_bytes())
    c_key = NoteKey.from_certificate(origin_for(C), cert)
    for witness in (a, b):
        status, body = await witness.staff_request(trio.pki, "GET", "/staff/v1/alerts")
        assert status == 200
        [alert] = body["alerts"]
        assert alert["origin"] == origin_for(C)
        assert alert["reason"] == "split-view"
        first = open_checkpoint(alert["evidence"]["first"].encode(), c_key).checkpoint
        second = open_checkpoint(alert["evidence"]["second"].encode(), c_key).checkpoint
        # C signed both, and they cannot both be true
        n = base_leaves(trio)  # agreement-event leaves first
        assert {first.size, second.size} == ({4 + n, 6 + n} if grow else {4 + n})
        assert first.root_hash != second.root_hash
        assert witness.live.service.state.partner(origin_for(C)).status is PartnerStatus.HALTED
    # the honest partners still witness each other
    assert [r.outcome for r in await a.live.witness_round() if r.partner == B] == [Outcome.COSIGNED]
