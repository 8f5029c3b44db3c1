"""A full disk on either side: the node's data directory is a small ``tmpfs`` mount
(root is needed; the test fails, never skips, when it cannot mount), filled up while
packets are on their way. Nothing accepted is lost or half-written; once space is freed
delivery resumes by itself and every packet arrives exactly once, in per-case order."""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from chaoskit import (
    Federation,
    Proc,
    assert_exactly_once,
    delivered_count,
    send_backlog,
    staff,
    wait_drained,
    wait_for,
)

from relay.staff_client import StaffApiError


@contextmanager
def small_disk(directory: Path, size: str = "16m") -> Iterator[Path]:
    """Mount a ``size`` tmpfs on ``directory``; always unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, f"cannot mount a tmpfs (root needed): {done.stderr}"
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the disk holding ``directory`` is full; its path.

    Unbuffered: a buffered file would keep the bytes of the write that failed and
    fail again when closed (ENOSPC from ``close``), depending on how many bytes the
    node's files happened to leave free."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_full_disk_at_the_receiver(federation: Federation) -> None:
    node_a, node_b = Proc(federation.config_a), Proc(federation.config_b)
    with small_disk(federation.data_b):
        await node_a.start()
        await node_b.start()
        try:
            filler = fill(federation.data_b)
            sent = await send_backlog(federation.config_a, 5, 6, filler=3000)

            async def retrying() -> bool:
                outbox = (await staff(federation.config_a).get("/staff/v1/outbox"))["items"]
                return any(item["attempts"] > 0 for item in outbox)

            await wait_for(retrying, "A to see B failing and retry", 120)
            stuck = len(sent) - (await delivered_count(federation.config_a) or 0)
            assert stuck > 0, "everything was delivered onto a full disk"
            filler.unlink()
            freed = time.monotonic()
            await wait_drained(federation.config_a, len(sent))
            print(f"receiver full disk: {stuck} of {len(sent)} packets held back, drained "
                  f"{time.monotonic() - freed:.1f}s after space was freed")  # fmt: skip
            await assert_exactly_once(federation, sent)
        finally:
            await node_a.stop()
            await node_b.stop()


_BIG = 20_000  # characters of content: ~60 KB a packet before sealing
_ATTEMPTS = 150  # ~9 MB in all: more than a WAL file (4 MB at the autocheckpoint) holds


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_full_disk_at_the_sender(federation: Federation) -> None:
    node_a, node_b = Proc(federation.config_a), Proc(federation.config_b)
    with small_disk(federation.data_a):
        await node_a.start()
        try:
            sent = await send_backlog(federation.config_a, 5, 6, filler=3000)
            filler = fill(federation.data_a)
            refusals: list[tuple[int, str]] = []
            # a full disk refuses new packets with a clear problem, once what SQLite
            # already holds (free pages, a WAL file of an earlier size) is used up
            for attempt in range(_ATTEMPTS):
                try:
                    more = await send_backlog(federation.config_a, 1, 1, tag=f"FULL{attempt}",
                                              filler=_BIG)  # fmt: skip
                except StaffApiError as exc:
                    refusals.append((exc.status, exc.code))
                    break
                sent.update(more)  # SQLite found room: it must arrive too
            assert refusals, "a full disk accepted every new packet"
            refused = len(refusals)
            await node_b.start()  # delivery onto the sender's full disk: state updates fail

            async def some_delivered() -> bool:
                return bool(await delivered_count(federation.config_a))

            filler.unlink()
            freed = time.monotonic()
            await wait_for(some_delivered, "delivery after space was freed", 120)
            await wait_drained(federation.config_a, len(sent))
            print(f"sender full disk: {refused} new packets refused, {len(sent)} drained "
                  f"{time.monotonic() - freed:.1f}s after space was freed")  # fmt: skip
            await assert_exactly_once(federation, sent)
        finally:
            await node_a.stop()
            await node_b.stop()


@pytest.mark.timeout(300)
async def test_full_disk_at_the_sender_answers_503_storage_unavailable(
    federation: Federation,
) -> None:
    """The contract of the input branch: a storage fault is 503 ``storage-unavailable``."""
    node_a = Proc(federation.config_a)
    with small_disk(federation.data_a):
        await node_a.start()
        try:
            fill(federation.data_a)
            refusals: list[tuple[int, str]] = []
            for attempt in range(_ATTEMPTS):
                try:
                    await send_backlog(federation.config_a, 1, 1, tag=f"FULL{attempt}", filler=_BIG)
                except StaffApiError as exc:
                    refusals.append((exc.status, exc.code))
                    if len(refusals) == 3:
                        break
            assert refusals, "a full disk accepted every new packet"
            assert set(refusals) == {(503, "storage-unavailable")}, refusals
        finally:
            await node_a.stop()
