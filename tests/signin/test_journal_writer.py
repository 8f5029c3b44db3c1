"""The staff journal's group commit (issue 12): lines of concurrent requests share one
transaction, each request is answered only after its line is committed, and a bearer
token request makes no SQLite write of its own."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dbkit import Database
from signin_kit import NODE, Desk

from relay.signin.journal import OFF_LOOP_FOR, SLOW_COMMIT, JournalWriter
from relay.signin.store import StaffStore, journal_row
from relay.staff_auth import StaffRole, issue_token

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a stamp written as data, never compared to now


def _row(i: int) -> Any:
    return journal_row(AT, "office-system", "request", "127.0.0.1", {"n": i})


async def test_concurrent_lines_share_one_commit_and_are_on_disk_when_write_returns(
    tmp_path: Path, database: Database
) -> None:
    store = StaffStore(tmp_path, connect=lambda: database.connect("staff"))
    writer = JournalWriter(store)
    try:
        await asyncio.gather(*(writer.write(_row(i)) for i in range(50)))
        assert writer.commits == 1
        other = StaffStore(tmp_path, connect=lambda: database.connect("staff"))  # committed
        try:
            assert sorted(e.detail["n"] for e in other.journal_entries()) == list(range(50))
        finally:
            other.close()
        await writer.write(_row(50))
        assert writer.commits == 2
    finally:
        store.close()


async def test_a_failed_commit_reaches_every_caller_of_its_group_and_the_next_group_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StaffStore(tmp_path)
    writer = JournalWriter(store)
    real = store.journal_many

    def full(rows: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    try:
        monkeypatch.setattr(store, "journal_many", full)
        results = await asyncio.gather(
            *(writer.write(_row(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        monkeypatch.setattr(store, "journal_many", real)
        await writer.write(_row(3))
        assert [e.detail["n"] for e in store.journal_entries()] == [3]
    finally:
        store.close()


class _Disk:
    """A staff store whose journal commits advance a monotonic clock by ``flush``
    seconds and note the thread they ran on, and a writer on that clock."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.flush = 0.0
        self.threads: list[int] = []
        self.store = StaffStore(tmp_path)
        commit = self.store.journal_many

        def journal_many(rows: Any) -> None:
            self.threads.append(threading.get_ident())
            self.now += self.flush
            commit(rows)

        monkeypatch.setattr(self.store, "journal_many", journal_many)
        self.writer = JournalWriter(self.store, clock=lambda: self.now)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Disk]:
    made = _Disk(tmp_path, monkeypatch)
    yield made
    made.store.close()


async def test_commits_run_on_the_event_loop_while_the_disk_is_quick(disk: _Disk) -> None:
    loop_thread = threading.get_ident()
    disk.flush = SLOW_COMMIT / 2
    for i in range(3):
        await asyncio.gather(*(disk.writer.write(_row(10 * i + k)) for k in range(4)))
    assert disk.threads == [loop_thread] * 3
    assert disk.writer.commits == 3
    assert not disk.writer.off_loop
    assert len(list(disk.store.journal_entries())) == 12


async def test_a_slow_commit_sends_the_next_ones_to_a_worker_thread_for_a_while(
    disk: _Disk, caplog: pytest.LogCaptureFixture
) -> None:
    loop_thread, writer = threading.get_ident(), disk.writer
    disk.flush = SLOW_COMMIT * 2  # the flush of a slow disk, on the loop
    with caplog.at_level(logging.INFO, logger="tongban.relay.signin"):
        await writer.write(_row(0))
    assert writer.off_loop
    assert "took 10.0 ms on the event loop" in caplog.text
    await asyncio.gather(*(writer.write(_row(k)) for k in range(1, 4)))
    disk.now += OFF_LOOP_FOR / 2
    await writer.write(_row(4))
    assert disk.threads[0] == loop_thread
    assert loop_thread not in disk.threads[1:]  # still slow: both in a worker thread
    disk.flush = 0.0
    disk.now += OFF_LOOP_FOR  # the while is over: the loop is tried again
    await writer.write(_row(5))
    assert disk.threads[-1] == loop_thread
    assert not writer.off_loop
    assert sorted(e.detail["n"] for e in disk.store.journal_entries()) == list(range(6))


async def test_bearer_token_requests_are_journaled_without_a_write_per_request(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    def per_request(*args: Any) -> None:
        raise AssertionError("a staff request wrote its own journal line")

    monkeypatch.setattr(desk.store, "journal", per_request)
    token = issue_token(
        desk.token_key, node_id=NODE, subject="office-system", roles=[StaffRole.CLERK],
        now=desk.clock(), ttl=600,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    packet = {
        "to": "320982", "matter": "business-licence", "action": "submit",
        "mode": "proxy_receipt", "content": {"applicant": "张三"},
    }  # fmt: skip

    async def post(i: int) -> int:
        body = {**packet, "case_id": f"C-2026-{i:04d}"}
        async with desk.http.post(
            f"{desk.url}/staff/v1/packets", json=body, headers=headers, ssl=desk.ssl
        ) as resp:
            return resp.status

    assert await asyncio.gather(*(post(i) for i in range(20))) == [201] * 20
    lines = [e for e in desk.store.journal_entries(name="office-system")]
    assert sorted(e.detail["path"] for e in lines) == ["/staff/v1/packets"] * 20
    assert {(e.event, e.detail["status"], e.detail["credential"]) for e in lines} == {
        ("request", 201, "token")
    }
