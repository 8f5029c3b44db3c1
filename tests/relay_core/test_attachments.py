"""Attachments: staged resumably, sealed at rest, uploaded resumably before the packet,
digest-checked, opened by the recipient — in constant memory."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pagecache import cached_bytes
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    Federation,
    chunks_of,
    collect,
    drain,
    stage,
)

from relay.core.errors import AttachmentError
from relay.core.model import OutboxState
from signing.stream import ciphertext_size

MIB = 1 << 20


async def test_a_staff_upload_resumes_at_its_offset_and_is_sealed_at_rest(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    assert await node.write_attachment(digest, len(data), 0, chunks_of(data[:100_000])) is None
    assert node.attachment_offset(digest) == 100_000
    with pytest.raises(AttachmentError) as wrong:
        await node.write_attachment(digest, len(data), 50_000, chunks_of(data[50_000:]))
    assert wrong.value.reason == "offset-mismatch"
    info = await node.write_attachment(digest, len(data), 100_000, chunks_of(data[100_000:]))
    assert info is not None
    assert info.plain_digest == digest
    assert info.plain_size == len(data)
    assert node.attachment_offset(digest) == len(data)
    blob = (federation.root / WUCHANG / "blobs" / info.digest[:2] / info.digest).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == info.digest
    assert data[:64] not in blob
    assert await collect(node.open_attachment(digest)) == data
    assert list((federation.root / WUCHANG / "partial").iterdir()) == []


async def test_a_staff_upload_with_the_wrong_digest_is_refused_and_dropped(
    federation: Federation,
) -> None:
    node = federation.nodes[WUCHANG]
    data = b"x" * 1000
    with pytest.raises(AttachmentError) as err:
        await node.write_attachment("0" * 64, len(data), 0, chunks_of(data))
    assert err.value.reason == "digest-mismatch"
    assert node.attachment_offset("0" * 64) == 0


async def test_an_attachment_crosses_a_breaking_link_and_opens_at_the_recipient(
    federation: Federation,
) -> None:
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    data = os.urandom(1_000_000)
    digest = await stage(sender, data, name="场地照片.pdf")
    federation.network.cut_uploads_after = 200_000  # every upload connection breaks
    summary = await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE,
        content={"photos": 1}, attachments=[digest],
    )  # fmt: skip
    await drain(federation, WUCHANG)
    [item] = sender.list_outbox()
    assert item.state is OutboxState.DELIVERED
    assert federation.network.requests >= 6  # five broken uploads, then the packet
    blob = summary.attachments[0].digest
    assert receiver.blob_offset(blob) == summary.attachments[0].size
    assert await collect(receiver.open_attachment(blob)) == data
    opened = receiver.read_packet(summary.packet_id)
    assert opened.summary.attachments[0].plain_digest == digest
    assert opened.summary.attachments[0].name == "场地照片.pdf"


async def test_a_blob_upload_with_the_wrong_digest_is_refused(federation: Federation) -> None:
    receiver = federation.nodes[DAFENG]
    with pytest.raises(AttachmentError) as err:
        await receiver.write_blob(WUCHANG, "1" * 64, 10, 0, chunks_of(b"0123456789"))
    assert err.value.reason == "digest-mismatch"
    assert receiver.blob_offset("1" * 64) == 0
    with pytest.raises(AttachmentError) as big:
        await receiver.write_blob(WUCHANG, "2" * 64, 5, 0, chunks_of(b"0123456789"))
    assert big.value.reason == "too-large"


async def test_staging_sending_and_opening_run_in_constant_memory(federation: Federation) -> None:
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    size = 48 * 1024 * 1024
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(size // len(block)):
        h.update(block)
    digest = h.hexdigest()

    async def source() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    tracemalloc.start()
    try:
        await sender.write_attachment(digest, size, 0, source())
        await sender.create_packet(
            to=DAFENG, case_id="big", matter=MATTER, action=ACTION, mode=MODE,
            content={}, attachments=[digest],
        )  # fmt: skip
        await drain(federation, WUCHANG)
        blob = sender.list_outbox()[0].summary.attachments[0].digest
        out = hashlib.sha256()
        async for chunk in receiver.open_attachment(blob):
            out.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.hexdigest() == digest
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB file"


def _io() -> tuple[int, int]:
    """(bytes read, bytes written) by this process through read/write system calls so
    far, every thread counted (/proc/self/io ``rchar``, ``wchar``)."""
    fields = dict(
        line.split(": ") for line in Path("/proc/self/io").read_text().splitlines() if ": " in line
    )
    return int(fields["rchar"]), int(fields["wchar"])


async def test_each_byte_is_written_once_per_node_and_read_back_only_when_resumed(
    federation: Federation,
) -> None:
    """Issue 12: a staff upload is sealed as it streams in (the staged file is written
    once, already sealed, nothing read back); the partner writes the blob once, hashed
    on the way in; the sender reads it once to send it. A resumed call reads back what
    earlier calls kept, once."""
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    size, slack = 8 * MIB, MIB // 2  # slack: SQLite pages, logs; the blob is size + 0.04%
    data = os.urandom(size)
    read0, written0 = _io()
    digest = await stage(sender, data, name="场地照片.pdf")
    read1, written1 = _io()
    assert size <= written1 - written0 < size + slack  # not plaintext, then sealed copy
    assert read1 - read0 < slack
    await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={},
        attachments=[digest],
    )  # fmt: skip
    await drain(federation, WUCHANG)
    read2, written2 = _io()
    [item] = sender.list_outbox()
    assert item.state is OutboxState.DELIVERED
    assert size <= written2 - written1 < size + slack  # the partner's copy, once
    assert size <= read2 - read1 < size + slack  # the sender reads its blob to send it
    blob = item.summary.attachments[0].digest
    assert await collect(receiver.open_attachment(blob)) == data

    other = os.urandom(2 * MIB)
    other_digest = hashlib.sha256(other).hexdigest()
    first = 700_000
    assert (
        await sender.write_attachment(other_digest, len(other), 0, chunks_of(other[:first])) is None
    )
    read3, written3 = _io()
    info = await sender.write_attachment(other_digest, len(other), first, chunks_of(other[first:]))
    read4, written4 = _io()
    assert info is not None
    assert first - 70_000 <= read4 - read3 < first + slack  # the kept segments, once
    assert written4 - written3 < len(other) - first + slack
    assert await collect(sender.open_attachment(other_digest)) == other


async def test_an_attachment_leaves_the_page_cache_once_durable_and_once_sent(
    federation: Federation,
) -> None:
    """Issue 12: a blob is written once and read once, so neither node keeps it in the
    page cache (it would push the databases' pages out, and growing the cache by a GiB
    cost this machine seconds of kernel time): the staged blob once its syncs made it
    durable, the sender's copy once read to be sent, the partner's once durable and
    again once opened."""
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    size = 8 * MIB
    data = os.urandom(size)
    digest = await stage(sender, data)
    await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={},
        attachments=[digest],
    )  # fmt: skip
    [item] = sender.list_outbox()
    blob = item.summary.attachments[0].digest
    staged = federation.stores[WUCHANG].blob_path(blob)
    assert cached_bytes(staged) < MIB, "the staged blob stayed in the page cache"
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == blob  # now in the cache
    assert cached_bytes(staged) > size - MIB, (
        "reading the file did not cache it: this test needs a disk-backed file system"
        f" for {staged} (tmpfs keeps every page)"
    )
    await drain(federation, WUCHANG)
    assert sender.list_outbox()[0].state is OutboxState.DELIVERED
    assert cached_bytes(staged) < MIB, "the sent blob stayed in the page cache"
    received = federation.stores[DAFENG].blob_path(blob)
    assert received.stat().st_size == staged.stat().st_size
    assert cached_bytes(received) < MIB, "the partner's blob stayed in the page cache"
    assert await collect(receiver.open_attachment(blob)) == data
    assert cached_bytes(received) < MIB, "the opened blob stayed in the page cache"


async def test_a_blob_read_only_in_part_leaves_the_page_cache_too(
    federation: Federation, tmp_path: Path
) -> None:
    """A send the partner breaks off, a download the clerk abandons: what was read of the
    blob leaves the page cache when the reading stops, not only at the end of the file.
    (The kernel's read-ahead still in flight then may stay: at most its window, 8 MiB on
    the test machine; half of what was read is the bound asserted.)"""
    from relay.core import blobs

    path = tmp_path / "blob"
    with path.open("wb") as f:
        f.write(os.urandom(40 * MIB))
        f.flush()
        os.fsync(f.fileno())
        blobs.release_cached(f.fileno())  # durable, then out of the cache
    reading = blobs.read_from(path, 0)
    for _ in range(20):  # 20 MiB sent, then the partner went away
        assert len(await anext(reading)) == blobs.CHUNK
    assert cached_bytes(path) >= 20 * MIB, "reading did not cache: needs a disk-backed fs"
    await reading.aclose()
    assert cached_bytes(path) < 10 * MIB, "the blob read in part stayed in the page cache"

    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    digest = await stage(sender, os.urandom(40 * MIB))
    await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={},
        attachments=[digest],
    )  # fmt: skip
    await drain(federation, WUCHANG)
    blob = sender.list_outbox()[0].summary.attachments[0].digest
    received = federation.stores[DAFENG].blob_path(blob)
    download, opened = receiver.open_attachment(blob), 0
    while opened < 20 * MIB:  # the clerk closed the page half-way
        opened += len(await anext(download))
    assert cached_bytes(received) >= 20 * MIB
    await download.aclose()
    assert cached_bytes(received) < 10 * MIB, "the blob opened in part stayed in the cache"


async def test_a_file_system_that_refuses_the_cache_advice_still_takes_attachments(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page-cache release is advice: where posix_fadvise fails, staging, sending
    and opening an attachment work as before."""
    from relay.core import blobs

    refused: list[int] = []

    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        refused.append(fd)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(blobs, "_FADVISE", refuse)
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    data = os.urandom(3 * MIB)
    digest = await stage(sender, data)
    await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={},
        attachments=[digest],
    )  # fmt: skip
    await drain(federation, WUCHANG)
    [item] = sender.list_outbox()
    assert item.state is OutboxState.DELIVERED
    assert await collect(receiver.open_attachment(item.summary.attachments[0].digest)) == data
    assert refused  # the advice was asked for, and refused


async def test_a_staged_upload_resumes_from_any_offset_and_small_pieces_make_progress(
    federation: Federation,
) -> None:
    """Pieces smaller than a sealing segment still move the offset (the plaintext past
    the last whole segment waits sealed beside the upload), across segment boundaries,
    and the result is the one sealed blob of the whole file."""
    node = federation.nodes[WUCHANG]
    data = os.urandom(3 * 65_536 + 123)
    digest = hashlib.sha256(data).hexdigest()
    cuts = [0, 1, 10_000, 65_479, 65_480, 65_481, 131_000, 131_001, 140_000, 196_000]
    for start, end in itertools.pairwise([*cuts, len(data)]):
        assert node.attachment_offset(digest) == start
        info = await node.write_attachment(
            digest, len(data), start, chunks_of(data[start:end], 4096), media_type="a/b", name="x"
        )
        assert (info is None) == (end < len(data))
    assert info is not None
    assert node.attachment_offset(digest) == len(data)
    partial = federation.root / WUCHANG / "partial"
    assert list(partial.iterdir()) == []  # no part file, key or tail left behind
    blob = (federation.root / WUCHANG / "blobs" / info.digest[:2] / info.digest).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == info.digest
    assert len(blob) == info.size == ciphertext_size(len(data))
    assert await collect(node.open_attachment(digest)) == data


async def test_an_upload_whose_held_part_cannot_continue_starts_again(
    federation: Federation,
) -> None:
    """A lost tail (a crash between keeping it and recording its offset) sends the
    client back to the segment boundary; a damaged or foreign held part (no key file:
    begun as plaintext by an older version) back to 0 — never a wrong blob."""
    node = federation.nodes[WUCHANG]
    data = os.urandom(200_000)
    digest = hashlib.sha256(data).hexdigest()
    assert await node.write_attachment(digest, len(data), 0, chunks_of(data[:100_000])) is None
    partial = federation.root / WUCHANG / "partial"
    [tail] = partial.glob("*.tail")
    tail.unlink()
    with pytest.raises(AttachmentError) as lost:
        await node.write_attachment(digest, len(data), 100_000, chunks_of(data[100_000:]))
    assert lost.value.reason == "offset-mismatch"
    assert node.attachment_offset(digest) == 65_480  # the boundary before 100,000
    [key] = partial.glob("*.key")
    key.unlink()
    with pytest.raises(AttachmentError) as damaged:
        await node.write_attachment(digest, len(data), 65_480, chunks_of(data[65_480:]))
    assert damaged.value.reason == "offset-mismatch"
    assert node.attachment_offset(digest) == 0
    assert list(partial.iterdir()) == []
    info = await node.write_attachment(digest, len(data), 0, chunks_of(data))
    assert info is not None
    assert await collect(node.open_attachment(digest)) == data


async def test_a_second_writer_of_the_same_upload_is_told_to_ask_again(
    federation: Federation,
) -> None:
    """A retry that arrives while the first call still writes does not interleave its
    bytes (nor replace the stream key): it is refused, the first call completes."""
    node = federation.nodes[WUCHANG]
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    gate, pulled = asyncio.Event(), asyncio.Event()

    async def held_open() -> AsyncIterator[bytes]:
        yield data[:100_000]
        pulled.set()  # the first call is writing
        await gate.wait()
        yield data[100_000:]

    first = asyncio.create_task(node.write_attachment(digest, len(data), 0, held_open()))
    await asyncio.wait_for(pulled.wait(), 30)
    with pytest.raises(AttachmentError) as second:
        await node.write_attachment(digest, len(data), 0, chunks_of(data))
    assert second.value.reason == "offset-mismatch"
    gate.set()
    info = await first
    assert info is not None
    assert await collect(node.open_attachment(digest)) == data
