"""An SM-profile node stages staff uploads in the SM4-GCM stream (protocol.md §4.4) from
the first byte — segments, and the tail kept between calls — and sends the staged blob
as it is to an SM partner, a Tink copy to a default one; what it staged in the Tink
stream before keeps opening and going out; a default node stages as before.

Real nodes (RelayNode on SQLite files) of a mixed PKI: Hubei's WUCHANG in the default
profile, Jiangsu's DAFENG and DONGTAI in the SM profile, on the FakeNetwork."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    chunks_of,
    collect,
    drain,
    mixed_pki,
    stage,
)

from relay.core.attachments import AttachmentVault
from relay.core.blobs import attachment_aad
from relay.core.fakes import FakeNetwork
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy
from relay.core.packets import AttachmentKey
from relay.core.sqlite_store import SqliteStore
from relay.core.store import StagedAttachment, UploadKind
from signing import sm_seal, stream
from signing.encoding import b64url_decode
from signing.errors import DecryptionFailed
from signing.hpke import (
    HpkePrivateKey,
    HpkeSuite,
    generate_hpke_key,
    hpke_open,
    hpke_seal,
    seal_info,
)
from signing.segments import SegmentCipher, open_tail
from signing.stream import HEADER_SIZE, new_stream_key

DONGTAI = "320981"  # a second Jiangsu node, SM profile
SM4_STREAM = "sm4gcm-hkdf-sm3-64k"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return mixed_pki(tmp_path_factory.mktemp("pki"), more_sm=(DONGTAI,))


@pytest.fixture
def fed(pki: Pki, tmp_path: Path) -> Iterator[Federation]:
    (tmp_path / "nodes").mkdir()
    federation = Federation(
        pki=pki,
        root=tmp_path / "nodes",
        clock=FakeClock(),
        agreement=FakeAgreement(parties={WUCHANG, DAFENG, DONGTAI}),
        network=FakeNetwork(rng=random.Random(19)),
        policy=OutboxPolicy(batch_size=16),
    )
    for node in (WUCHANG, DAFENG, DONGTAI):
        federation.start(node)
    try:
        yield federation
    finally:
        federation.close()


def own_key(fed: Federation, node: str) -> HpkePrivateKey:
    return fed.pki.keys[node].hpke_keys[0]


def stream_of(blob: bytes, key: bytes, plain: bytes) -> str:
    """Which segmented stream ``blob`` is: opened by one reader, refused by the other."""
    aad = attachment_aad(hashlib.sha256(plain).hexdigest())
    opened = {}
    for name, decrypt in (("sm4", sm_seal.decrypt_stream), ("tink", stream.decrypt_stream)):
        out = io.BytesIO()
        try:
            decrypt(io.BytesIO(blob), out, key, aad=aad)
        except DecryptionFailed:
            continue
        opened[name] = out.getvalue()
    assert list(opened.values()) == [plain], list(opened)
    return next(iter(opened))


def blob_of(fed: Federation, node: str, digest: str) -> bytes:
    return fed.stores[node].blob_path(digest).read_bytes()


def blob_count(fed: Federation, node: str) -> int:
    return sum(1 for p in (fed.root / node / "blobs").rglob("*") if p.is_file())


async def send(fed: Federation, sender: str, to: str, digest: str) -> tuple[str, str]:
    """Send a packet carrying the staged ``digest`` and deliver it: (packet id, blob)."""
    summary = await fed.nodes[sender].create_packet(
        to=to, case_id=f"{sender}-{to}", matter=MATTER, action=ACTION, mode=MODE,
        content={"材料": 1}, attachments=[digest],
    )  # fmt: skip
    await drain(fed, sender)
    [item] = [
        i for i in fed.nodes[sender].list_outbox() if i.summary.packet_id == summary.packet_id
    ]
    assert item.state is OutboxState.DELIVERED
    return summary.packet_id, summary.attachments[0].digest


def received_key(fed: Federation, node: str, packet_id: str) -> bytes:
    """The stream key the packet carried (sealed content, as the recipient opened it)."""
    opened = fed.nodes[node].read_packet(packet_id)
    [akey] = json.loads(b64url_decode(opened.content_jws.split(".")[1]))["attachments"]
    return b64url_decode(akey["key"])


async def test_an_sm_node_stages_in_the_sm4_gcm_stream_and_resumes_inside_a_segment(
    fed: Federation,
) -> None:
    node = fed.nodes[DAFENG]
    data = os.urandom(3 * 65_536 + 123)
    digest = hashlib.sha256(data).hexdigest()
    assert await node.write_attachment(digest, len(data), 0, chunks_of(data[:100_000])) is None
    assert node.attachment_offset(digest) == 100_000  # 65,480 sealed, the rest in the tail
    # while it waits: the key is wrapped to the node's SM2 key naming the SM4-GCM stream,
    # and the tail is SM4-GCM (no AES ciphertext on an SM node)
    partial = fed.root / DAFENG / "partial"
    [tail] = partial.glob("*.tail")
    part = tail.with_name(tail.name.removesuffix(".tail"))
    held = fed.stores[DAFENG].upload(UploadKind.STAGE, digest)
    assert held is not None
    assert held.path == part
    key_file = json.loads((partial / f"{part.name}.key").read_text())
    wrapped = base64.urlsafe_b64decode(key_file["wrapped"])
    own = own_key(fed, DAFENG)
    assert own.suite is HpkeSuite.SM2_SM4GCM
    context = {"digest": digest, "stream": SM4_STREAM}
    key = hpke_open(wrapped, own, info=seal_info("attachment-key", context))
    header = part.read_bytes()[:HEADER_SIZE]
    kept_tail = tail.read_bytes()
    sm4 = open_tail(key, header, 65_480, kept_tail, cipher=SegmentCipher.SM4GCM)
    assert sm4 == data[65_480:100_000]
    with pytest.raises(DecryptionFailed):
        open_tail(key, header, 65_480, kept_tail, cipher=SegmentCipher.AES256GCM)

    info = await node.write_attachment(digest, len(data), 100_000, chunks_of(data[100_000:], 4096))
    assert info is not None
    assert info.plain_digest == digest
    assert list(partial.iterdir()) == []
    blob = blob_of(fed, DAFENG, info.digest)
    assert hashlib.sha256(blob).hexdigest() == info.digest
    assert stream_of(blob, key, data) == "sm4"  # Tink refuses it
    assert hashlib.sha256(await collect(node.open_attachment(digest))).hexdigest() == digest


async def test_sm_to_sm_carries_the_staged_blob_itself_and_sm_to_default_a_tink_copy(
    fed: Federation,
) -> None:
    data = os.urandom(200_000)
    digest = await stage(fed.nodes[DAFENG], data)
    staged = fed.stores[DAFENG].attachment(digest)
    assert staged is not None
    held = blob_count(fed, DAFENG)

    # to an SM partner: the staged blob as it is, no second blob at the sender
    packet_id, blob = await send(fed, DAFENG, DONGTAI, digest)
    assert blob == staged.blob_digest
    assert blob_count(fed, DAFENG) == held
    assert blob_of(fed, DONGTAI, blob) == blob_of(fed, DAFENG, blob)
    assert (
        stream_of(blob_of(fed, DONGTAI, blob), received_key(fed, DONGTAI, packet_id), data) == "sm4"
    )
    assert (
        hashlib.sha256(await collect(fed.nodes[DONGTAI].open_attachment(blob))).hexdigest()
        == digest
    )

    # to a default partner: a copy re-encrypted into the Tink stream under a fresh key
    packet_id, blob = await send(fed, DAFENG, WUCHANG, digest)
    assert blob != staged.blob_digest
    assert blob_count(fed, DAFENG) == held + 1
    assert (
        stream_of(blob_of(fed, WUCHANG, blob), received_key(fed, WUCHANG, packet_id), data)
        == "tink"
    )
    assert (
        hashlib.sha256(await collect(fed.nodes[WUCHANG].open_attachment(blob))).hexdigest()
        == digest
    )
    assert fed.stores[DAFENG].attachment(digest) == staged  # the staged record stays as it was


async def test_a_default_node_stages_in_the_tink_stream_as_before(fed: Federation) -> None:
    """The key is wrapped with the info it always had (no stream named), the blob is the
    Tink stream; an SM partner gets an SM4-GCM copy."""
    data = os.urandom(100_000)
    digest = await stage(fed.nodes[WUCHANG], data)
    staged = fed.stores[WUCHANG].attachment(digest)
    assert staged is not None
    info = seal_info("attachment-key", {"digest": digest})
    key = hpke_open(staged.wrapped_key, own_key(fed, WUCHANG), info=info)
    assert stream_of(blob_of(fed, WUCHANG, staged.blob_digest), key, data) == "tink"
    packet_id, blob = await send(fed, WUCHANG, DAFENG, digest)
    assert blob != staged.blob_digest
    assert (
        stream_of(blob_of(fed, DAFENG, blob), received_key(fed, DAFENG, packet_id), data) == "sm4"
    )


async def test_what_an_sm_node_staged_in_the_tink_stream_keeps_opening_and_going_out(
    fed: Federation, tmp_path: Path
) -> None:
    """A row staged before SM staging existed: a Tink blob, its key wrapped to the SM2
    key with the old info. It opens, goes as it is to a default partner and as an
    SM4-GCM copy to an SM partner."""
    data = os.urandom(150_000)
    digest = hashlib.sha256(data).hexdigest()
    key = new_stream_key()
    store = fed.stores[DAFENG]
    tmp = store.temp_path()
    with open(tmp, "wb") as out:
        stream.encrypt_stream(io.BytesIO(data), out, key, aad=attachment_aad(digest))
    sealed = tmp.read_bytes()
    blob_digest = hashlib.sha256(sealed).hexdigest()
    store.publish_blob(tmp, blob_digest, len(sealed))
    own = own_key(fed, DAFENG)
    wrapped = hpke_seal(key, own.public_key(), info=seal_info("attachment-key", {"digest": digest}))
    store.put_attachment(
        StagedAttachment(
            digest,
            len(data),
            blob_digest,
            len(sealed),
            "image/jpeg",
            "现场照片.jpg",
            own.public_key().kid,
            wrapped,
        )
    )
    assert await collect(fed.nodes[DAFENG].open_attachment(digest)) == data

    packet_id, blob = await send(fed, DAFENG, WUCHANG, digest)
    assert blob == blob_digest  # already the Tink stream: sent as it is
    assert await collect(fed.nodes[WUCHANG].open_attachment(blob)) == data

    packet_id, blob = await send(fed, DAFENG, DONGTAI, digest)
    assert blob != blob_digest
    assert (
        stream_of(blob_of(fed, DONGTAI, blob), received_key(fed, DONGTAI, packet_id), data) == "sm4"
    )
    assert await collect(fed.nodes[DONGTAI].open_attachment(blob)) == data


def unwrap(staged: StagedAttachment, key: HpkePrivateKey) -> tuple[bytes, str]:
    """The stream key of ``staged`` as the wrap's info names its stream, and that stream."""
    for context, name in (({"stream": SM4_STREAM}, "sm4"), ({}, "tink")):
        info = seal_info("attachment-key", {"digest": staged.plain_digest, **context})
        try:
            return hpke_open(staged.wrapped_key, key, info=info), name
        except DecryptionFailed:
            continue
    raise AssertionError("the wrap opens with neither info")


@pytest.mark.parametrize(
    "suites",
    [
        (HpkeSuite.X25519, HpkeSuite.SM2_SM4GCM),
        (HpkeSuite.SM2_SM4GCM, HpkeSuite.MLKEM768_X25519),
    ],
    ids=["default-to-sm", "sm-to-default"],
)
async def test_a_node_that_changes_profile_keeps_its_staged_uploads_in_their_stream(
    tmp_path: Path, suites: tuple[HpkeSuite, HpkeSuite]
) -> None:
    """Staged, and half-uploaded (broken inside a segment), under the old key; the node
    then leads with a key of the other profile and keeps the old one in the overlap:
    the finished upload and the staged one stay in the old stream and open, a new
    upload goes into the new one."""
    old, new = (generate_hpke_key(suite) for suite in suites)
    streams = {HpkeSuite.SM2_SM4GCM: "sm4"}

    def no_packets(packet_id: str) -> tuple[AttachmentKey, ...]:
        raise AssertionError("no received packets here")

    store = SqliteStore(tmp_path / "node")
    try:
        before = AttachmentVault(store, [old], no_packets)
        first, second, third = (os.urandom(150_000) for _ in range(3))
        digests = [hashlib.sha256(d).hexdigest() for d in (first, second, third)]
        assert await before.write_attachment(
            digests[0], len(first), 0, chunks_of(first), media_type="a/b", name="1"
        )
        assert not await before.write_attachment(
            digests[1], len(second), 0, chunks_of(second[:100_000]), media_type="a/b", name="2"
        )
        after = AttachmentVault(store, [new, old], no_packets)
        assert await after.write_attachment(
            digests[1], len(second), 100_000, chunks_of(second[100_000:]),
            media_type="a/b", name="2",
        )  # fmt: skip
        assert await after.write_attachment(
            digests[2], len(third), 0, chunks_of(third), media_type="a/b", name="3"
        )
        for data, digest, key in zip((first, second, third), digests, (old, old, new), strict=True):
            staged = store.attachment(digest)
            assert staged is not None
            assert staged.key_kid == key.public_key().kid
            stream_key, named = unwrap(staged, key)
            blob = store.blob_path(staged.blob_digest).read_bytes()
            assert stream_of(blob, stream_key, data) == named == streams.get(key.suite, "tink")
            assert await collect(after.open_attachment(digest)) == data
    finally:
        store.close()
