"""Attachments: staged resumably, sealed at rest, uploaded resumably before the packet,
digest-checked, opened by the recipient — in constant memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest
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
)

from relay.core.errors import AttachmentError
from relay.core.model import OutboxState
from relay.core.service import RelayNode


async def stage(node: RelayNode, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = await node.write_attachment(
        digest, len(data), 0, chunks_of(data), media_type="application/pdf", name="场地照片.pdf"
    )
    assert info is not None
    return digest


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
    digest = await stage(sender, data)
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


async def test_uploads_are_hashed_while_written_and_read_back_only_when_resumed(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a complete upload is hashed as it is written (staged plaintext, sealed
    blob, received blob): no file is read back to hash it. An upload resumed after a
    break hashes its file once, since the earlier bytes came in another call."""
    from relay.core import blobs

    reads: list[str] = []
    real = blobs.sha256_file

    def counting(path: os.PathLike[str]) -> tuple[str, int]:
        reads.append(os.fspath(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs, "sha256_file", counting)
    sender, receiver = federation.nodes[WUCHANG], federation.nodes[DAFENG]
    data = os.urandom(300_000)
    digest = await stage(sender, data)
    await sender.create_packet(
        to=DAFENG, case_id="c", matter=MATTER, action=ACTION, mode=MODE, content={},
        attachments=[digest],
    )  # fmt: skip
    await drain(federation, WUCHANG)
    [item] = sender.list_outbox()
    assert item.state is OutboxState.DELIVERED
    blob = item.summary.attachments[0].digest
    assert await collect(receiver.open_attachment(blob)) == data
    assert reads == []

    other = os.urandom(200_000)
    other_digest = hashlib.sha256(other).hexdigest()
    assert (
        await sender.write_attachment(other_digest, len(other), 0, chunks_of(other[:70_000]))
        is None
    )
    info = await sender.write_attachment(
        other_digest, len(other), 70_000, chunks_of(other[70_000:])
    )
    assert info is not None
    assert len(reads) == 1  # the resumed upload, once
    assert await collect(sender.open_attachment(other_digest)) == other
