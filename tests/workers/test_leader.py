"""The node's leader among its workers: a PostgreSQL advisory lock held by one
session, taken over when the leader stops, is killed -9 or loses its session; the
once-per-node work follows the leadership. Against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import psycopg
import pytest

from relay.workers import LEADER_KEY, AdvisoryLeadership, SoleWorker, while_leading


async def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"waited {timeout}s for {what}") from None


class Campaign:
    """A worker's campaign running in this event loop, stopped at the end."""

    def __init__(self, url: str, name: str) -> None:
        self.leadership = AdvisoryLeadership(url, poll=0.05, check_timeout=5, name=name)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.leadership.run(self.stop))

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def test_one_worker_leads_and_another_takes_over_when_it_stops(pg_url: str) -> None:
    first = Campaign(pg_url, "first")
    await until(lambda: first.leadership.leading, "the first worker to lead")
    second = Campaign(pg_url, "second")
    try:
        assert await second.leadership.step() is False  # asked, and refused: one leader
        assert first.leadership.leading
        await first.end()
        assert not first.leadership.leading
        await until(lambda: second.leadership.leading, "the second worker to take over")
    finally:
        await first.end()
        await second.end()


async def test_a_leader_killed_9_is_replaced(pg_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, psycopg\n"
         f"c = psycopg.connect({pg_url!r}, autocommit=True)\n"
         f"c.execute('SELECT pg_advisory_lock({LEADER_KEY})')\n"
         "print('leading', flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "leading\n"
        waiting = Campaign(pg_url, "waiting")
        try:
            assert await waiting.leadership.step() is False
            holder.kill()  # SIGKILL: no goodbye to the server
            await asyncio.to_thread(holder.wait, 30)
            await until(lambda: waiting.leadership.leading, "a worker to take over")
        finally:
            await waiting.end()
    finally:
        holder.kill()
        holder.wait(30)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_a_leader_whose_session_ends_steps_down_and_its_work_moves(pg_url: str) -> None:
    running: dict[str, int] = {"a": 0, "b": 0}  # work instances running per worker
    terms: list[str] = []

    def work(name: str) -> Callable[[asyncio.Event], object]:
        async def run(stop: asyncio.Event) -> None:
            running[name] += 1
            terms.append(name)
            await stop.wait()
            running[name] -= 1

        return run

    a = Campaign(pg_url, "a")
    await until(lambda: a.leadership.leading, "worker a to lead")
    b = Campaign(pg_url, "b")
    done = asyncio.Event()
    jobs = [
        asyncio.create_task(while_leading(a.leadership, work("a"), done)),  # type: ignore[arg-type]
        asyncio.create_task(while_leading(b.leadership, work("b"), done)),  # type: ignore[arg-type]
    ]
    try:
        await until(lambda: running["a"] == 1, "a's work to start")
        assert await b.leadership.step() is False
        assert running == {"a": 1, "b": 0}
        pid = a.leadership.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the server ends a's session
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await until(lambda: b.leadership.leading and running == {"a": 0, "b": 1},
                    "b to lead and run the work, a to stop it")  # fmt: skip
        assert not a.leadership.leading
        assert terms[:1] == ["a"]
        assert "b" in terms
    finally:
        done.set()
        await asyncio.wait_for(asyncio.gather(*jobs), 30)
        await a.end()
        await b.end()
    assert running == {"a": 0, "b": 0}  # the node's stop ends the work everywhere


async def test_the_sole_worker_of_a_sqlite_node_always_leads() -> None:
    sole = SoleWorker()
    done, started = asyncio.Event(), asyncio.Event()

    async def work(stop: asyncio.Event) -> None:
        started.set()
        await stop.wait()

    job = asyncio.create_task(while_leading(sole, work, done))
    await asyncio.wait_for(started.wait(), 30)
    done.set()
    await asyncio.wait_for(job, 30)


@pytest.mark.parametrize("url", ["postgresql://tongban@127.0.0.1:1/nowhere"])
async def test_a_worker_that_cannot_reach_the_database_does_not_lead(url: str) -> None:
    leadership = AdvisoryLeadership(url, poll=0.05, check_timeout=3, name="cut off")
    assert await leadership.step() is False
    assert not leadership.leading


async def test_cancelling_the_leadership_task_ends_the_work_it_runs() -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def work(stop: asyncio.Event) -> None:
        started.set()
        try:
            await stop.wait()
        finally:
            ended.set()

    job = asyncio.create_task(while_leading(SoleWorker(), work, asyncio.Event()))
    await asyncio.wait_for(started.wait(), 30)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert ended.is_set()  # not left running behind the cancelled task
