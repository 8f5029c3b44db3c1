"""blobs.write_through: an upload body handed to a worker thread — bounded in flight,
in order, stopped early by a failing sink, progress recorded after each sync, and the
periodic syncs run behind the writing."""

from __future__ import annotations

import errno
import threading
from collections.abc import AsyncIterator

import pytest

from relay.core import blobs
from relay.core.errors import AttachmentError

KIB = 1024


class ListSink:
    """Keeps what it is given; fails on the write that would pass ``fail_after`` bytes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.synced: list[int] = []
        self.fail_after = fail_after
        self.closed = False

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        if self.fail_after is not None and len(self.data) + len(data) > self.fail_after:
            raise OSError(28, "No space left on device")
        self.data += data

    def mark(self) -> int:
        return len(self.data)

    def fsync(self) -> None:
        self.synced.append(len(self.data))

    def sync(self, final: bool) -> int:
        self.synced.append(len(self.data))
        return len(self.data)

    def close(self) -> None:
        self.closed = True


async def body(pieces: list[bytes], pulled: list[int]) -> AsyncIterator[bytes]:
    for piece in pieces:
        pulled.append(len(piece))
        yield piece


async def test_the_body_arrives_in_order_and_the_end_is_recorded() -> None:
    pieces = [bytes([i]) * (i * 997 % 70_000 + 1) for i in range(200)]
    size = sum(map(len, pieces))
    sink, recorded, pulled = ListSink(), list[int](), list[int]()
    offset = await blobs.write_through(
        body(pieces, pulled), sink, start=0, size=size, record=recorded.append
    )
    assert offset == size
    assert bytes(sink.data) == b"".join(pieces)
    assert recorded == sink.synced
    assert recorded[-1] == size
    assert sink.closed


async def test_a_chunk_larger_than_the_budget_still_passes() -> None:
    big = b"x" * (3 * blobs._IN_FLIGHT)
    sink = ListSink()
    offset = await blobs.write_through(
        body([b"a", big, b"b"], []), sink, start=0, size=len(big) + 2, record=lambda o: None
    )
    assert offset == len(big) + 2


async def test_a_failing_sink_stops_the_reading_early_and_its_error_is_raised() -> None:
    pieces = [b"z" * (64 * KIB)] * 2000  # 125 MiB offered
    sink, pulled = ListSink(fail_after=1024 * KIB), list[int]()
    with pytest.raises(OSError, match="No space"):
        await blobs.write_through(
            body(pieces, pulled), sink, start=0, size=len(pieces) * 64 * KIB, record=lambda o: None
        )
    # at most the in-flight budget past the failure was read from the client
    assert sum(pulled) <= 1024 * KIB + blobs._IN_FLIGHT + 2 * 64 * KIB
    assert sink.closed


async def test_more_than_the_announced_size_is_refused_and_what_came_before_is_kept() -> None:
    sink, recorded = ListSink(), list[int]()
    with pytest.raises(AttachmentError) as err:
        await blobs.write_through(
            body([b"1" * 1000, b"2" * 1000], []), sink, start=0, size=1500, record=recorded.append
        )
    assert err.value.reason == "too-large"
    assert recorded == [1000]
    assert bytes(sink.data) == b"1" * 1000


class SlowDisk(ListSink):
    """Its first fsync returns only once the worker has written past the mark taken
    for it (or fails after a generous deadline): a worker that waited for it would
    never get there. ``durable``: the marks whose fsync had returned, in order."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.marks: list[int] = []
        self.durable: list[int] = []
        self.moved_on = threading.Event()

    def mark(self) -> int:
        self.marks.append(len(self.data))
        return len(self.data)

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.marks and len(self.data) > self.marks[0]:
            self.moved_on.set()

    def fsync(self) -> None:
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        if not self.durable and not self.moved_on.wait(timeout=60):
            raise AssertionError("the worker waited for the fsync instead of writing on")
        self.durable.append(self.marks[len(self.durable)])


async def test_a_periodic_sync_runs_behind_the_writing_and_records_only_durable_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blobs, "SYNC_BYTES", 64 * KIB)
    pieces = [bytes([i]) * (32 * KIB) for i in range(64)]
    size = sum(map(len, pieces))
    sink, recorded = SlowDisk(), list[int]()
    offset = await blobs.write_through(
        body(pieces, []), sink, start=0, size=size, record=recorded.append
    )
    assert offset == size
    assert bytes(sink.data) == b"".join(pieces)
    assert sink.moved_on.is_set()
    assert recorded[:-1] == sink.durable  # each mark once its fsync returned, in order
    assert sink.durable  # at least the one the worker did not wait for
    assert recorded == sorted(recorded)
    assert recorded[-1] == size


async def test_a_failing_periodic_fsync_fails_the_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "SYNC_BYTES", 64 * KIB)
    pieces = [b"q" * (32 * KIB)] * 64
    sink, recorded = SlowDisk(fail=True), list[int]()
    with pytest.raises(OSError, match="Input/output"):
        await blobs.write_through(
            body(pieces, []), sink, start=0, size=32 * KIB * 64, record=recorded.append
        )
    assert recorded == []
    assert sink.closed
