"""Group commit (issue 12): packets created in the same event-loop turn share one
transaction; each creator is answered after that commit; a packet that cannot be built
fails alone; a commit that fails fails the whole group and queues nothing. On SQLite a
group commits in a worker thread: the event loop takes the next requests meanwhile,
which form the next group; the case heads the grouped writes keep stay those the
outbox table implies. A group waits, a bounded time, for the creations announced as
still sealing, so that they share its commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    Federation,
    audit_size,
    drain,
    heads,
)

from relay.core.errors import PacketTooLarge, StoreError
from relay.core.group_commit import GroupCommit
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


async def test_a_group_commits_off_the_event_loop(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = federation.nodes[WUCHANG]
    store = federation.stores[WUCHANG]
    real = store.enqueue_many
    committing, release = threading.Event(), threading.Event()

    def held(items: object) -> object:  # the first group's transaction, held open
        if not committing.is_set():
            committing.set()
            # on the event loop this would block the loop that is to release it
            assert release.wait(20), "the event loop was blocked by the commit"
        return real(items)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "enqueue_many", held)
    before = node._commits.commits
    first = asyncio.ensure_future(create(federation, "c", {"n": 1}))
    assert await asyncio.to_thread(committing.wait, 20)
    later = [asyncio.ensure_future(create(federation, "c", {"n": n})) for n in (2, 3)]
    async with asyncio.timeout(20):  # the loop runs: both queue up behind the group
        while node._commits.waiting < 2:
            await asyncio.sleep(0.01)
    assert not first.done()  # answered only after its commit
    assert committed_ids(federation) == set()
    release.set()
    made = await asyncio.gather(first, *later)
    assert [s.seq for s in made] == [1, 2, 3]
    assert node._commits.commits - before == 2  # the two that waited: one group
    assert committed_ids(federation) == {s.packet_id for s in made}


async def test_grouped_writes_keep_each_case_head(federation: Federation) -> None:
    await asyncio.gather(create(federation, "a", {"n": 1}), create(federation, "a", {"n": 2}))
    kept, implied = heads(federation)
    assert kept == implied
    [head_a] = kept
    # a case with an open head keeps it; a new case gets one
    await asyncio.gather(create(federation, "a", {"n": 3}), create(federation, "b", {"n": 1}))
    kept, implied = heads(federation)
    assert kept == implied
    assert head_a in kept
    assert {case for _, case, _ in kept} == {"a", "b"}
    await drain(federation, WUCHANG)
    assert heads(federation) == (set(), set())
    # after everything was delivered, the next packet of a case heads it again
    again = await create(federation, "a", {"n": 4})
    assert again.seq == 4
    kept, implied = heads(federation)
    assert kept == implied
    assert len(kept) == 1


async def test_a_closed_store_queues_nothing(federation: Federation) -> None:
    federation.stores[WUCHANG].close()  # its writer connection is not opened again
    with pytest.raises(StoreError, match="closed"):
        await create(federation, "c", {"n": 1})


async def test_a_group_reads_its_cases_and_the_log_frontier_in_one_statement_each(
    federation: Federation,
) -> None:
    """The transaction is the serial section of creation, and each statement there may
    wait for the interpreter lock: a group of sixteen packets over eight cases reads the
    cases' last packets in one statement, and the log's right edge in another, not one
    statement per case and per subtree."""
    await create(federation, "warm", {"n": 0})  # opens the writer connection
    writer = federation.stores[WUCHANG]._writer
    assert writer is not None
    statements: list[str] = []
    writer.set_trace_callback(statements.append)
    try:
        made = await asyncio.gather(
            *(create(federation, f"c-{i % 8}", {"n": i}) for i in range(16))
        )
    finally:
        writer.set_trace_callback(None)
    assert sorted(s.seq for s in made) == sorted([1, 2] * 8)
    reads_cases = [s for s in statements if s.startswith("SELECT") and "send_seq" in s]
    reads_log = [s for s in statements if s.startswith("SELECT") and "audit_nodes" in s]
    assert len(reads_cases) == 1, reads_cases
    assert len(reads_log) == 1, reads_log


class _GroupsStore:
    """A store that only records the groups it is asked to commit (the waiting rule is
    the group commit's own: no file needed)."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []

    def enqueue_many(self, items: list[tuple[str, str, object]]) -> list[str]:
        self.groups.append([case for _, case, _ in items])
        return [case for _, case, _ in items]


async def _sealed(commits: GroupCommit, case: str, seconds: float) -> object:
    """A creator that seals for ``seconds`` (announced), then enqueues."""
    with commits.coming():
        await asyncio.sleep(seconds)
    return await commits.enqueue("peer", case, lambda seq, prev: None)  # type: ignore[arg-type,return-value]


async def test_a_group_waits_for_the_creations_still_sealing() -> None:
    store = _GroupsStore()
    commits = GroupCommit(store, linger=30)  # type: ignore[arg-type]
    async with asyncio.timeout(10):  # the wait ends when the last one arrived
        got = await asyncio.gather(*(_sealed(commits, f"c{i}", 0.01 * i) for i in range(4)))
    assert got == ["c0", "c1", "c2", "c3"]
    assert store.groups == [["c0", "c1", "c2", "c3"]]


async def test_without_linger_each_arrival_commits_at_once() -> None:
    store = _GroupsStore()
    commits = GroupCommit(store)  # type: ignore[arg-type]
    await asyncio.gather(*(_sealed(commits, f"c{i}", 0.01 * i) for i in range(4)))
    assert store.groups == [["c0"], ["c1"], ["c2"], ["c3"]]


async def test_a_group_waits_no_longer_than_the_linger() -> None:
    store = _GroupsStore()
    commits = GroupCommit(store, linger=0.05)  # type: ignore[arg-type]
    release = asyncio.Event()

    async def slow() -> object:
        with commits.coming():
            await release.wait()
        return await commits.enqueue("peer", "slow", lambda seq, prev: None)  # type: ignore[arg-type,return-value]

    late = asyncio.ensure_future(slow())
    async with asyncio.timeout(10):
        assert await _sealed(commits, "quick", 0) == "quick"
    assert store.groups == [["quick"]]  # committed while "slow" was still sealing
    release.set()
    assert await late == "slow"
    assert store.groups == [["quick"], ["slow"]]


async def test_a_creation_that_gives_up_ends_the_wait() -> None:
    store = _GroupsStore()
    commits = GroupCommit(store, linger=30)  # type: ignore[arg-type]

    async def failing() -> None:
        with commits.coming():
            await asyncio.sleep(0.02)
            raise PacketTooLarge(1, 0)

    async with asyncio.timeout(10):
        results = await asyncio.gather(
            _sealed(commits, "kept", 0), failing(), return_exceptions=True
        )
    assert results[0] == "kept"
    assert isinstance(results[1], PacketTooLarge)
    assert store.groups == [["kept"]]


async def test_a_lone_creation_never_waits() -> None:
    store = _GroupsStore()
    commits = GroupCommit(store, linger=30)  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        assert await _sealed(commits, "alone", 0) == "alone"
    assert store.groups == [["alone"]]
