"""Group commit (issue 12): packets created in the same event-loop turn share one
transaction; each creator is answered after that commit; a packet that cannot be built
fails alone; a commit that fails fails the whole group and queues nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from relay_core_support import ACTION, DAFENG, MATTER, MODE, WUCHANG, Federation, audit_size, drain

from relay.core.errors import PacketTooLarge
from relay.core.model import PacketSummary


@pytest.fixture
def backend() -> str:
    return "sqlite"  # these tests look into the SQLite file itself


async def create(fed: Federation, case: str, content: dict[str, object]) -> PacketSummary:
    return await fed.nodes[WUCHANG].create_packet(
        to=DAFENG, case_id=case, matter=MATTER, action=ACTION, mode=MODE, content=content
    )


def committed_ids(fed: Federation) -> set[str]:
    """Packet ids another connection sees: what is committed."""
    conn = sqlite3.connect(fed.root / WUCHANG / "relay.sqlite3")
    try:
        return {r[0] for r in conn.execute("SELECT packet_id FROM outbox")}
    finally:
        conn.close()


async def test_sixteen_concurrent_creations_share_one_commit(federation: Federation) -> None:
    node = federation.nodes[WUCHANG]
    leaves = audit_size(federation, WUCHANG)
    seen_committed: list[bool] = []

    async def one(i: int) -> PacketSummary:
        summary = await create(federation, f"case-{i % 4}", {"n": i})
        # answered only once its commit is visible to any other reader
        seen_committed.append(summary.packet_id in committed_ids(federation))
        return summary

    before = node._commits.commits
    made = await asyncio.gather(*(one(i) for i in range(16)))
    assert node._commits.commits - before == 1
    assert seen_committed == [True] * 16
    assert audit_size(federation, WUCHANG) == leaves + 16  # a packet-sent leaf each
    for case in range(4):
        assert [s.seq for s in made if s.case_id == f"case-{case}"] == [1, 2, 3, 4]
    await drain(federation, WUCHANG)
    got = federation.nodes[DAFENG].list_inbox()
    assert sorted(i.summary.packet_id for i in got) == sorted(s.packet_id for s in made)


async def test_a_packet_that_cannot_be_built_fails_alone(federation: Federation) -> None:
    federation.policy = replace(federation.policy, max_packet_bytes=6_000)
    node = federation.start(WUCHANG)
    results = await asyncio.gather(
        create(federation, "c", {"n": 1}),
        create(federation, "c", {"n": 2, "scan": "x" * 20_000}),  # too large
        create(federation, "c", {"n": 3}),
        return_exceptions=True,
    )
    first, big, third = results
    assert isinstance(big, PacketTooLarge)
    assert isinstance(first, PacketSummary)
    assert isinstance(third, PacketSummary)
    assert (first.seq, third.seq) == (1, 2)  # the failed one used no sequence number
    assert committed_ids(federation) == {first.packet_id, third.packet_id}
    assert node._commits.commits == 1


async def test_a_failing_commit_fails_the_group_and_the_next_group_goes_through(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = federation.stores[WUCHANG]
    real = store.enqueue_many

    def disk_error(items: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "enqueue_many", disk_error)
    results = await asyncio.gather(
        *(create(federation, f"c{i}", {"n": i}) for i in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [sqlite3.OperationalError] * 3
    assert committed_ids(federation) == set()
    monkeypatch.setattr(store, "enqueue_many", real)
    again = await asyncio.gather(*(create(federation, f"c{i}", {"n": i}) for i in range(3)))
    assert [s.seq for s in again] == [1, 1, 1]
    assert committed_ids(federation) == {s.packet_id for s in again}
