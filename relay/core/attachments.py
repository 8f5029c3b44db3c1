"""Attachments of one node: staff uploads (sealed as they stream in), peer uploads of
sealed blobs, and opening either in constant memory.

Every upload body goes through :func:`relay.core.blobs.write_through`: a worker thread
writes each byte once while the event loop keeps reading, hashing on the way in, with
progress fsync'd and recorded in the store's ``uploads`` row so a broken upload resumes
where it stopped.

Staged attachment (staff): sealed while it arrives (:mod:`relay.core.staging`) under a
fresh stream key, HPKE-sealed to this node's own current key (``info`` purpose
``attachment-key``) and kept beside the upload until it completes; the partial file is
the sealed blob so far. On completion the plaintext SHA-256 (taken on the way in) must
be the declared digest; the partial file is then published as the content-addressed
blob under the SHA-256 of its own bytes (also taken on the way in). Peer upload: the
sealed blob's bytes are appended the same way and published once their SHA-256
matches. A resumed call hashes what earlier calls wrote once, from the file; an upload
whose held bytes cannot be continued (damaged, or begun by an older version as
plaintext) is dropped and starts again from 0 (``offset-mismatch``). A received blob
opens with the key carried in the sealed content of the packet naming it.

Streams (:mod:`relay.core.streams`): a staged blob is in the stream of the node's own
current key — the Tink AES-GCM stream, or on an SM-profile node (an ``sm2-sm4gcm``
key, the switch of its ``r2`` own copies) the SM4-GCM stream from its first byte. A
packet carries a staged blob as it is when the recipient's suite has the same stream,
and otherwise a copy re-encrypted under a fresh key (:meth:`AttachmentVault.for_recipient`);
a received blob is in the stream its packet's ``sealed.suite`` names.

Which stream a staged blob is in follows from what is stored, with no column of its
own: the wrapped stream key names it in its ``info`` (``{"digest", "stream"}``) unless
it is the Tink stream (``{"digest"}``, as every wrap made before SM staging existed).
A wrap by a key whose suite has another stream is opened with that stream's ``info``
first, then the Tink one: what an SM node staged in the Tink stream before keeps opening
and going out, and so does a node's staging after it changed profile (the row's
``key_kid`` names the key it was wrapped to). The ``info`` is authenticated, so the
stream read is the stream the key was wrapped for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence

from relay.core import blobs, streams
from relay.core.blobs import Sink, UploadDamaged
from relay.core.errors import AttachmentError, NotFound
from relay.core.fields import is_digest
from relay.core.model import AttachmentInfo
from relay.core.packets import AttachmentKey, key_ring
from relay.core.staging import SealingSink, TailLost, drop_sidecars, read_key_file, write_key_file
from relay.core.store import RelayStore, StagedAttachment, Upload, UploadKind
from signing.errors import DecryptionFailed
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


def _wrap_info(digest: str, stream: streams.Stream) -> bytes:
    """The ``info`` a staged attachment's stream key is wrapped with (module docstring)."""
    context = {"digest": digest}
    if stream is not streams.Stream.TINK_AES256GCM:
        context["stream"] = stream.value
    return seal_info("attachment-key", context)


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
        self._writing: set[tuple[str, str]] = set()

    @contextlib.contextmanager
    def _exclusive(self, kind: str, digest: str) -> Iterator[None]:
        """One call at a time writes an upload (a second one, e.g. a retry while the
        first still runs, would interleave its bytes): the other is told to ask again."""
        if (kind, digest) in self._writing:
            raise AttachmentError("offset-mismatch", "this upload is being written; ask again")
        self._writing.add((kind, digest))
        try:
            yield
        finally:
            self._writing.discard((kind, digest))

    # -- sealed blobs (federation) ---------------------------------------------------

    def blob_offset(self, digest: str) -> int:
        size = self._store.blob_size(digest)
        if size is not None:
            return size
        upload = self._store.upload(UploadKind.BLOB, digest)
        if upload is None:
            return 0
        if upload.offset >= upload.size and (UploadKind.BLOB, digest) not in self._writing:
            # every byte held, never checked and published (a stop, or a storage error,
            # came in between): told "complete", the sender would never send it again
            _log.warning("blob upload %s was complete but never published: restarts at 0", digest)
            self._drop(upload)
            return 0
        return upload.offset

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        _check_digest(digest)
        held = self._store.blob_size(digest)
        if held is not None:
            if held != size:
                raise AttachmentError("size-mismatch", "a blob with this digest has another size")
            return held
        with self._exclusive(UploadKind.BLOB, digest):
            upload = self._begin(UploadKind.BLOB, digest, size, offset)
            sink = blobs.BlobSink(upload.path, offset)
            pos = await self._write(upload, size, offset, chunks, sink)
            if pos < size:
                return pos
            if sink.sha.hexdigest() != digest:
                self._drop(upload)
                raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
            self._store.publish_blob(upload.path, digest, size)
            self._store.drop_upload(UploadKind.BLOB, digest)
        _log.info("blob %s (%d bytes) received from %s", digest, size, peer_id)
        return size

    def open_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        if self._store.blob_size(digest) is None:
            raise NotFound(f"no blob {digest}")
        return blobs.read_from(self._store.blob_path(digest), offset)

    def _begin(self, kind: str, digest: str, size: int, offset: int) -> Upload:
        if size < 0:
            raise AttachmentError("size-mismatch", "size must not be negative")
        upload = self._store.begin_upload(kind, digest, size)
        if upload.size != size:
            raise AttachmentError("size-mismatch", f"upload started with size {upload.size}")
        if offset != upload.offset:
            raise AttachmentError("offset-mismatch", f"continue at offset {upload.offset}")
        return upload

    async def _write(
        self, upload: Upload, size: int, offset: int, chunks: AsyncIterable[bytes], sink: Sink
    ) -> int:
        """Write the body through ``sink``; the durable offset it reached."""

        def record(pos: int) -> None:
            self._store.advance_upload(upload.kind, upload.digest, pos)

        try:
            return await blobs.write_through(chunks, sink, start=offset, size=size, record=record)
        except UploadDamaged as exc:
            _log.warning("%s upload %s dropped, restarts at 0: %s", upload.kind, upload.digest, exc)
            self._drop(upload)
            raise AttachmentError(
                "offset-mismatch", "the held part could not be continued: continue at offset 0"
            ) from None

    def _drop(self, upload: Upload) -> None:
        self._store.drop_upload(upload.kind, upload.digest)
        drop_sidecars(upload.path)

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
            with self._exclusive(UploadKind.STAGE, digest):
                staged = await self._stage(digest, size, offset, chunks, media_type, name)
            if staged is None:
                return None
        return info_of(staged)

    async def _stage(
        self,
        digest: str,
        size: int,
        offset: int,
        chunks: AsyncIterable[bytes],
        media_type: str,
        name: str,
    ) -> StagedAttachment | None:
        upload = self._begin(UploadKind.STAGE, digest, size, offset)
        try:
            kid, wrapped, key, kind = await self._upload_key(upload, offset)
        except UploadDamaged as exc:
            _log.warning("staged upload %s dropped, restarts at 0: %s", digest, exc)
            self._drop(upload)
            raise AttachmentError(
                "offset-mismatch", "the held part could not be continued: continue at offset 0"
            ) from None
        aad = blobs.attachment_aad(digest)
        sink = SealingSink(
            upload.path, key, aad=aad, size=size, offset=offset, cipher=kind.segment_cipher
        )
        try:
            pos = await self._write(upload, size, offset, chunks, sink)
        except TailLost as lost:
            self._store.advance_upload(UploadKind.STAGE, digest, lost.boundary)
            raise AttachmentError(
                "offset-mismatch", f"continue at offset {lost.boundary}"
            ) from None
        if pos < size:
            return None
        if sink.plain_sha.hexdigest() != digest:
            self._drop(upload)
            raise AttachmentError("digest-mismatch", "the uploaded bytes have another SHA-256")
        staged = StagedAttachment(
            digest, size, sink.blob_sha.hexdigest(), sink.blob_size, media_type, name, kid, wrapped
        )
        self._store.publish_blob(upload.path, staged.blob_digest, staged.blob_size)
        self._store.put_attachment(staged)
        self._drop(upload)
        return staged

    async def _upload_key(
        self, upload: Upload, offset: int
    ) -> tuple[str, bytes, bytes, streams.Stream]:
        """(kid, wrapped key, key, stream) of a staged upload: a new key, in the stream of
        this node's current key, when it starts at 0."""
        if offset == 0:
            key = new_stream_key()
            own = self._keys[0].public_key()
            kind = streams.stream_for(own.suite)
            wrapped = hpke_seal(key, own, info=_wrap_info(upload.digest, kind))
            await asyncio.to_thread(write_key_file, upload.path, own.kid, wrapped)
            return own.kid, wrapped, key, kind
        held = read_key_file(upload.path)
        if held is None:
            raise UploadDamaged("no key file (begun as plaintext by an older version?)")
        kid, wrapped = held
        try:
            return kid, wrapped, *self._unwrap(kid, wrapped, upload.digest)
        except (NotFound, DecryptionFailed) as exc:
            raise UploadDamaged(f"the upload's key does not open: {exc}") from None

    def staged(self, digests: Sequence[str]) -> list[tuple[StagedAttachment, AttachmentKey]]:
        """The staged attachments ``digests`` with their stream keys, for a new packet;
        raises :class:`NotFound` for one not staged."""
        found = []
        for digest in digests:
            item = self._store.attachment(digest)
            if item is None:
                raise NotFound(f"attachment {digest} is not staged")
            key, kind = self._unwrap(item.key_kid, item.wrapped_key, item.plain_digest)
            akey = AttachmentKey(item.blob_digest, key, item.plain_digest, item.plain_size, kind)
            found.append((item, akey))
        return found

    async def for_recipient(
        self, staged: list[tuple[StagedAttachment, AttachmentKey]], suite: str
    ) -> list[tuple[StagedAttachment, AttachmentKey]]:
        """``staged`` as a packet sealed with ``suite`` carries them: a blob in the
        suite's stream as it is (an SM node's staged blob to an SM partner), a blob in
        the other stream re-encrypted, under a fresh key, into a new blob (published;
        the staged record and its blob stay as they are)."""
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

    def _unwrap(self, kid: str, wrapped: bytes, digest: str) -> tuple[bytes, streams.Stream]:
        """The stream key wrapped to our key ``kid`` for the attachment ``digest``, and
        the stream it seals (module docstring)."""
        own = key_by_kid(self._ring, kid)
        kind = streams.stream_for(own.suite)
        if kind is not streams.Stream.TINK_AES256GCM:
            with contextlib.suppress(DecryptionFailed):
                return hpke_open(wrapped, own, info=_wrap_info(digest, kind)), kind
        kind = streams.Stream.TINK_AES256GCM  # staged in the Tink stream (before SM staging)
        return hpke_open(wrapped, own, info=_wrap_info(digest, kind)), kind

    def open_attachment(self, digest: str) -> AsyncIterator[bytes]:
        staged = self._store.attachment(digest)
        if staged is not None:
            key, kind = self._unwrap(staged.key_kid, staged.wrapped_key, staged.plain_digest)
            blob, plain = staged.blob_digest, staged.plain_digest
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
