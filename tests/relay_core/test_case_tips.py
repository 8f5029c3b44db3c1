"""Guessed sequence numbers (issue 12, relay.core.tips): a new packet's outer JWS is
signed before the transaction that queues it, for the ``(seq, prev)`` the node guesses
the store will allocate; the transaction only checks the guess. A right guess leaves no
signature inside the serial section; a wrong one (another worker moved the case on, a
packet before it failed) is signed again there, and the chain of each case stays
exactly what the store allocated."""

from __future__ import annotations

import asyncio
import random

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    Federation,
    OuterSignatures,
    drain,
)

from relay.core.model import PacketSummary
from relay.core.packets import verify_packet
from relay.core.service import RelayNode
from relay.core.tips import CaseTips, Guess

KEY = ("320982", "case-1")


class _Store:
    """What the tips read on a miss: each case's last (seq, digest), and how often."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], tuple[int, str | None]] = {}
        self.reads = 0

    def read(self, peer: str, case_id: str) -> tuple[int, str | None]:
        self.reads += 1
        return self.last.get((peer, case_id), (0, None))


def test_a_new_case_is_guessed_from_the_store_then_from_memory() -> None:
    store = _Store()
    tips = CaseTips(store.read)
    assert tips.claim(KEY, "p1") == Guess(1, None)
    tips.signed(KEY, "p1", "d1")
    assert tips.claim(KEY, "p2") == Guess(2, "d1")  # p1 is not committed yet: chained in memory
    tips.signed(KEY, "p2", "d2")
    tips.committed(KEY, "p1", 1, "d1")  # p2 holds the case's last allocation: kept
    assert tips.claim(KEY, "p3") == Guess(3, "d2")
    assert store.reads == 1


def test_no_guess_while_the_last_packet_is_unsigned() -> None:
    tips = CaseTips(_Store().read)
    assert tips.claim(KEY, "p1") == Guess(1, None)
    assert tips.claim(KEY, "p2") is None  # its prev is not known yet
    tips.signed(KEY, "p1", "d1")
    assert tips.claim(KEY, "p3") == Guess(2, "d1")


def test_a_failed_packet_gives_the_tip_back() -> None:
    store = _Store()
    store.last[KEY] = (4, "d4")
    tips = CaseTips(store.read)
    assert tips.claim(KEY, "p5") == Guess(5, "d4")
    tips.failed(KEY, "p5")
    assert tips.claim(KEY, "p5b") == Guess(5, "d4")
    tips.signed(KEY, "p5b", "d5")
    assert tips.claim(KEY, "p6") == Guess(6, "d5")
    tips.failed(KEY, "p5b")  # not the last allocation: nothing changes
    tips.signed(KEY, "p6", "d6")
    assert tips.claim(KEY, "p7") == Guess(7, "d6")
    assert store.reads == 1


def test_the_store_corrects_a_wrong_guess() -> None:
    store = _Store()
    tips = CaseTips(store.read)
    assert tips.claim(KEY, "p1") == Guess(1, None)
    tips.signed(KEY, "p1", "guessed")
    tips.committed(KEY, "p1", 3, "actual")  # another worker had queued two meanwhile
    assert tips.claim(KEY, "p2") == Guess(4, "actual")


def test_the_tips_kept_are_bounded_and_a_forgotten_case_is_read_again() -> None:
    store = _Store()
    tips = CaseTips(store.read, kept=3)
    for i in range(10):
        key = ("320982", f"case-{i}")
        tips.claim(key, f"p{i}")
        tips.signed(key, f"p{i}", f"d{i}")
        tips.committed(key, f"p{i}", 1, f"d{i}")
        store.last[key] = (1, f"d{i}")
    assert len(tips) == 3
    reads = store.reads
    assert tips.claim(("320982", "case-9"), "q9") == Guess(2, "d9")
    assert store.reads == reads  # still kept
    assert tips.claim(("320982", "case-0"), "q0") == Guess(2, "d0")
    assert store.reads == reads + 1  # forgotten: read again


# -- through the node, on both backends ---------------------------------------------------


async def _create(node: RelayNode, case: str, content: dict[str, object]) -> PacketSummary:
    return await node.create_packet(
        to=DAFENG, case_id=case, matter=MATTER, action=ACTION, mode=MODE, content=content
    )


def _assert_chained(fed: Federation, node_id: str, made: list[PacketSummary]) -> None:
    """Each case's packets are 1, 2, 3…, their outer JWS valid, each naming the digest
    of the one before and digested as the store keeps it."""
    store = fed.stores[node_id]
    for case in {s.case_id for s in made}:
        chain = sorted((s for s in made if s.case_id == case), key=lambda s: s.seq)
        assert [s.seq for s in chain] == list(range(1, len(chain) + 1))
        prev = None
        for s in chain:
            kept = store.outgoing(s.packet_id)
            assert kept is not None
            packet = verify_packet(kept.token, fed.pki.bundle, at=fed.clock())
            assert (packet.facts.seq, packet.facts.prev) == (s.seq, prev)
            assert packet.digest == s.digest == kept.item.summary.digest
            prev = s.digest


async def test_guessed_packets_are_signed_outside_the_transaction(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = federation.nodes[WUCHANG]
    signatures = OuterSignatures()
    made: list[PacketSummary] = []
    with signatures.watch(monkeypatch, node):
        for round_ in range(3):  # sixteen at once over four cases, three times
            made += await asyncio.gather(
                *(_create(node, f"case-{i % 4}", {"n": round_ * 16 + i}) for i in range(16))
            )
        made.append(await _create(node, "case-0", {"n": "alone"}))
    # the first creation of a case in a crowd finds the one before it unsigned: those
    # (at most one per case and crowd) are signed in the transaction, the rest before it
    assert signatures.inside <= 4 * 3 * 3
    assert signatures.outside >= len(made) - signatures.inside
    assert signatures.outside + signatures.inside == len(made)
    _assert_chained(federation, WUCHANG, made)
    await drain(federation, WUCHANG)
    assert len(federation.nodes[DAFENG].list_inbox()) == len(made)  # the partner took them all


async def test_one_creation_at_a_time_signs_nothing_in_the_transaction(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = federation.nodes[WUCHANG]
    signatures = OuterSignatures()
    with signatures.watch(monkeypatch, node):
        made = [await _create(node, f"case-{i % 3}", {"n": i}) for i in range(9)]
    assert (signatures.inside, signatures.outside) == (0, 9)
    _assert_chained(federation, WUCHANG, made)


async def test_a_case_another_worker_moved_on_is_signed_again_in_the_transaction(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers of one node share the store (PostgreSQL in production; here two
    nodes on one store object): each guesses from what it saw, the store allocates."""
    first = federation.nodes[WUCHANG]
    second = RelayNode(
        node_id=WUCHANG, keys=federation.pki.keys[WUCHANG], bundle=federation.pki.bundle,
        directory=federation.directory(), authorizer=federation.agreement,
        store=federation.stores[WUCHANG], link=federation.network.link(WUCHANG),
        clock=federation.clock, rng=random.Random(7), policy=federation.policy,
    )  # fmt: skip
    signatures = OuterSignatures()
    with signatures.watch(monkeypatch, first):
        made = [await _create(first, "shared", {"n": 1})]
        made.append(await _create(second, "shared", {"n": 2}))  # first's tip is stale now
        made.append(await _create(first, "shared", {"n": 3}))  # guessed (2, …): wrong
        made.append(await _create(first, "shared", {"n": 4}))  # corrected: right again
    assert [s.seq for s in made] == [1, 2, 3, 4]
    assert signatures.inside == 1  # the third, signed again as seq 3 after the second
    _assert_chained(federation, WUCHANG, made)
    await drain(federation, WUCHANG)
    got = {i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()}
    assert got == {s.packet_id for s in made}  # the partner checks the chain: all accepted
