"""Attachments of one node: staff uploads (plaintext, sealed at rest when complete),
peer uploads of sealed blobs, and opening either in constant memory.

Staged attachment: the plaintext is appended to ``partial/stage-<digest>`` (offset
recorded after fsync), checked against its SHA-256 on completion (hashed while it is
written; an upload resumed after a break hashes the file once instead), encrypted with a
fresh stream key into a content-addressed blob, and the key HPKE-sealed to this node's
own current key (``info`` purpose ``attachment-key``). Peer upload: the sealed blob's
bytes are appended the same way (hashed while written) and published once their SHA-256
matches. The sealed blob's own digest is taken while it is encrypted, not read back. A received
blob opens with the key carried in the sealed content of the packet naming it.

Streams (:mod:`relay.core.streams`): staged blobs are the Tink AES-GCM stream; a packet
sealed to an SM partner's ``sm2-sm4gcm`` key carries SM4-GCM copies, re-encrypted
under fresh keys (:meth:`AttachmentVault.for_recipient`); a received blob is in the
stream its packet's ``sealed.suite`` names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence

from relay.core import blobs, streams
from relay.core.errors import AttachmentError, NotFound
from relay.core.fields import is_digest
from relay.core.model import AttachmentInfo
from relay.core.packets import AttachmentKey, key_ring
from relay.core.store import RelayStore, StagedAttachment, UploadKind
from signing.hpke import HpkePrivateKey, hpke_open, hpke_seal, seal_info
from signing.stream import new_stream_key

__all__ = ["AttachmentVault", "key_by_kid"]

_log = logging.getLogger("tongban.relay")


def key_by_kid(ring: Mapping[str, HpkePrivateKey], kid: str) -> HpkePrivateKey:
    key = ring.get(kid)
    if key is None:
        raise NotFound(f"no HPKE private key {kid} (rotated out?)")
    return key


def _check_digest(digest: str) -> None:
    if not is_digest(digest):
        raise AttachmentError("bad-digest", "a digest is 64 lowercase hex characters")


def info_of(staged: StagedAttachment) -> AttachmentInfo:
    return AttachmentInfo(
        staged.blob_digest, staged.blob_size, staged.media_type, staged.name,
        staged.plain_digest, staged.plain_size,
    )  # fmt: skip


class AttachmentVault:
    """``incoming_keys(packet_id)`` opens an accepted packet's sealed content and
    returns its attachment keys (the service provides it)."""

    def __init__(
        self,
        store: RelayStore,
        keys: Sequence[HpkePrivateKey],
        incoming_keys: Callable[[str], tuple[AttachmentKey, ...]],
    ) -> None:
        self._store = store
        self._keys = tuple(keys)
        self._ring = key_ring(keys)
        self._incoming_keys = incoming_keys

    # -- sealed blobs (federation) ---------------------------------------------------

    def blob_offset(self, digest: str) -> int:
        size = self._store.blob_size(digest)
        if size is not None:
            return size
        upload = self._store.upload(UploadKind.BLOB, digest)
        return 0 if upload is None else upload.offset

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        _check_digest(digest)
        held = self._store.blob_size(digest)
        if held is not None:
            if held != size:
                raise AttachmentError("size-mismatch", "a blob with this digest has another size")
            return held
        pos, actual = await self._append(UploadKind.BLOB, digest, size, offset, chunks)
        if pos < size:
            return pos
        upload = self._store.upload(UploadKind.BLOB, digest)
        assert upload is not None
        if actual is None:  # resumed: the bytes of earlier calls are hashed from the file
            actual, _ = await asyncio.to_thread(blobs.sha256_file, upload.path)
        if actual != digest:
            self._store.drop_upload(UploadKind.BLOB, digest)
            raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
        self._store.publish_blob(upload.path, digest, size)
        self._store.drop_upload(UploadKind.BLOB, digest)
        _log.info("blob %s (%d bytes) received from %s", digest, size, peer_id)
        return size

    def open_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        if self._store.blob_size(digest) is None:
            raise NotFound(f"no blob {digest}")
        return blobs.read_from(self._store.blob_path(digest), offset)

    async def _append(
        self, kind: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> tuple[int, str | None]:
        """Append to the upload; (new offset, SHA-256 of the whole upload when this call
        wrote all of it — hashed while writing — else None)."""
        if size < 0:
            raise AttachmentError("size-mismatch", "size must not be negative")
        upload = self._store.begin_upload(kind, digest, size)
        if upload.size != size:
            raise AttachmentError("size-mismatch", f"upload started with size {upload.size}")
        if offset != upload.offset:
            raise AttachmentError("offset-mismatch", f"continue at offset {upload.offset}")

        def record(pos: int) -> None:
            self._store.advance_upload(kind, digest, pos)

        sha = hashlib.sha256() if offset == 0 else None
        pos = await blobs.append_stream(upload.path, offset, size, chunks, record, sha)
        return pos, None if sha is None else sha.hexdigest()

    # -- staged attachments (staff) --------------------------------------------------

    def attachment_offset(self, digest: str) -> int:
        staged = self._store.attachment(digest)
        if staged is not None and staged.plain_digest == digest:
            return staged.plain_size
        upload = self._store.upload(UploadKind.STAGE, digest)
        return 0 if upload is None else upload.offset

    async def write_attachment(
        self,
        digest: str,
        size: int,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str,
        name: str,
    ) -> AttachmentInfo | None:
        _check_digest(digest)
        staged = self._store.attachment(digest)
        if staged is None:
            pos, actual = await self._append(UploadKind.STAGE, digest, size, offset, chunks)
            if pos < size:
                return None
            staged = await self._seal_staged(digest, size, media_type, name, actual)
        return info_of(staged)

    async def _seal_staged(
        self, digest: str, size: int, media_type: str, name: str, actual: str | None
    ) -> StagedAttachment:
        upload = self._store.upload(UploadKind.STAGE, digest)
        assert upload is not None
        if actual is None:  # resumed: the bytes of earlier calls are hashed from the file
            actual, _ = await asyncio.to_thread(blobs.sha256_file, upload.path)
        if actual != digest:
            self._store.drop_upload(UploadKind.STAGE, digest)
            raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
        key = new_stream_key()
        tmp = self._store.temp_path()
        aad = blobs.attachment_aad(digest)
        blob_digest, blob_size = await asyncio.to_thread(
            blobs.seal_file, upload.path, tmp, key, aad=aad
        )
        self._store.publish_blob(tmp, blob_digest, blob_size)
        own = self._keys[0].public_key()
        wrapped = hpke_seal(key, own, info=seal_info("attachment-key", {"digest": digest}))
        staged = StagedAttachment(
            digest, size, blob_digest, blob_size, media_type, name, own.kid, wrapped
        )
        self._store.put_attachment(staged)
        self._store.drop_upload(UploadKind.STAGE, digest)
        return staged

    def staged(self, digests: Sequence[str]) -> list[tuple[StagedAttachment, AttachmentKey]]:
        """The staged attachments ``digests`` with their stream keys, for a new packet;
        raises :class:`NotFound` for one not staged."""
        found = []
        for digest in digests:
            item = self._store.attachment(digest)
            if item is None:
                raise NotFound(f"attachment {digest} is not staged")
            key = AttachmentKey(
                item.blob_digest, self._unwrap(item), item.plain_digest, item.plain_size
            )
            found.append((item, key))
        return found

    async def for_recipient(
        self, staged: list[tuple[StagedAttachment, AttachmentKey]], suite: str
    ) -> list[tuple[StagedAttachment, AttachmentKey]]:
        """``staged`` as a packet sealed with ``suite`` carries them: a blob in another
        stream than the suite's is re-encrypted, under a fresh key, into a new blob
        (published; the staged record and its blob stay as they are)."""
        want = streams.stream_for(suite)
        out = []
        for item, key in staged:
            if key.stream is want:
                out.append((item, key))
                continue
            fresh, tmp = new_stream_key(), self._store.temp_path()
            digest, size = await asyncio.to_thread(
                streams.transcode_file,
                self._store.blob_path(item.blob_digest),
                tmp,
                (key.key, fresh),
                aad=blobs.attachment_aad(item.plain_digest),
                kinds=(key.stream, want),
            )
            self._store.publish_blob(tmp, digest, size)
            copy = dataclasses.replace(item, blob_digest=digest, blob_size=size)
            out.append((copy, AttachmentKey(digest, fresh, key.plain_digest, key.plain_size, want)))
        return out

    def _unwrap(self, staged: StagedAttachment) -> bytes:
        info = seal_info("attachment-key", {"digest": staged.plain_digest})
        return hpke_open(staged.wrapped_key, key_by_kid(self._ring, staged.key_kid), info=info)

    def open_attachment(self, digest: str) -> AsyncIterator[bytes]:
        staged = self._store.attachment(digest)
        if staged is not None:
            key, blob, plain = self._unwrap(staged), staged.blob_digest, staged.plain_digest
            kind = streams.Stream.TINK_AES256GCM
        else:
            packet_id = self._store.packet_naming_blob(digest)
            if packet_id is None:
                raise NotFound(f"no attachment {digest}")
            match = [k for k in self._incoming_keys(packet_id) if k.digest == digest]
            if not match or self._store.blob_size(digest) is None:
                raise NotFound(f"no attachment {digest}")
            key, blob, plain = match[0].key, digest, match[0].plain_digest
            kind = match[0].stream
        return blobs.decrypt_to_async(
            self._store.blob_path(blob),
            key,
            aad=blobs.attachment_aad(plain),
            plain_digest=plain,
            kind=kind,
        )
