"""A mixed federation over real mutual TLS (issue 19): Jiangsu in the SM profile (SM2
root, SM2 seals, a P-256 transport root for the channel) and Hubei in the default
profile run real nodes on loopback and exchange packets with attachments both ways
under one agreement. What crosses is SM where the recipient is SM: the SM node signs
SM2SM3, seals to it are ``sm2-sm4gcm`` and its attachments SM4-GCM streams; the
default node gets HPKE and Tink AES-GCM. Each node stages in its own profile's stream
(the SM node SM4-GCM). OpenSSL judges an SM2 signature taken from
the run."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from relay_http_support import NOW, free_ports, schema_check, write_agreement

from certs.pki import init_federation, issue_node
from relay.config import load_config
from relay.core.blobs import attachment_aad
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffApiError, StaffClient
from relay.tls import client_context
from signing import sm_seal, stream
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode
from signing.errors import DecryptionFailed
from signing.hpke import HpkeSuite, hpke_open, seal_info
from signing.nodedir import load_node_keys
from signing.sm2 import raw_to_der

HUBEI, JIANGSU = "420106", "320982"  # default profile, SM profile


@dataclass
class Mixed:
    hubei: Node
    jiangsu: Node
    dirs: dict[str, Path]
    bundle: TrustBundle


def _write_config(
    folder: Path,
    node: str,
    key_dir: Path,
    bundle: Path,
    ports: tuple[int, ...],
    partner: tuple[str, Path, int],
    agreements: list[Path],
) -> Path:
    folder.mkdir(parents=True)
    pid, descriptor, port = partner
    text = f"""[node]
id = "{node}"
key_dir = "{key_dir}"
data_dir = "data"
trust_bundle = "{bundle}"
[listeners.federation]
port = {ports[0]}
[listeners.public]
port = {ports[1]}
[listeners.staff]
port = {ports[2]}
[[partners]]
id = "{pid}"
descriptor = "{descriptor}"
federation_url = "https://127.0.0.1:{port}"
[agreements]
files = {json.dumps([str(a) for a in agreements])}
[outbox]
base_backoff = "50ms"
"""
    (folder / "node.toml").write_text(text, encoding="utf-8")
    return folder / "node.toml"


Agreements = Callable[[dict[str, Path]], dict[str, list[Path]]]
"""The agreement files each node loads, written for the node directories given."""


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, agreements: Agreements) -> AsyncIterator[Mixed]:
    base = tmp_path / "pki"
    init_federation(base / "hubei", "Hubei", now=NOW)
    init_federation(base / "jiangsu", "Jiangsu", now=NOW, profile="sm")
    dirs = {HUBEI: base / HUBEI, JIANGSU: base / JIANGSU}
    issue_node(base / "hubei", HUBEI, "武昌区政务服务中心", "127.0.0.1", dirs[HUBEI], now=NOW)
    issue_node(base / "jiangsu", JIANGSU, "大丰区行政审批局", "127.0.0.1", dirs[JIANGSU], now=NOW)
    bundle = tmp_path / "trust-bundle.pem"
    bundle.write_bytes(
        b"".join(
            (base / fed / name).read_bytes()
            for fed in ("hubei", "jiangsu")
            for name in ("root.pem", "crl.pem")
        )
    )
    files = agreements(dirs)
    ports = {HUBEI: free_ports(3), JIANGSU: free_ports(3)}
    configs = {
        node: _write_config(
            tmp_path / node,
            node,
            dirs[node],
            bundle,
            ports[node],
            (other, dirs[other] / "node.json", ports[other][0]),
            files[node],
        )
        for node, other in ((HUBEI, JIANGSU), (JIANGSU, HUBEI))
    }
    hubei, jiangsu = Node(load_config(configs[HUBEI])), Node(load_config(configs[JIANGSU]))
    await jiangsu.start()
    await hubei.start()
    try:
        yield Mixed(hubei, jiangsu, dirs, TrustBundle.from_pem(bundle.read_bytes()))
    finally:
        await hubei.stop()
        await jiangsu.stop()


@pytest.fixture
async def mixed(tmp_path: Path) -> AsyncIterator[Mixed]:
    """Both nodes hold one agreement that names both profiles."""

    def both(dirs: dict[str, Path]) -> dict[str, list[Path]]:
        path = write_agreement(
            tmp_path / "agreement.json", dirs, at=NOW, crypto_profiles=["default", "sm"]
        )
        return {HUBEI: [path], JIANGSU: [path]}

    async with _running(tmp_path, both) as running:
        yield running


def _client(node: Node, role: StaffRole = StaffRole.CLERK) -> StaffClient:
    key = load_or_create_token_key(node.config.staff.token_key)
    token = issue_token(
        key,
        node_id=node.config.node_id,
        subject="test",
        roles=[role],
        now=datetime.now(UTC),
        ttl=3600,
    )
    return StaffClient.for_config(node.config, token)


async def _settled(client: StaffClient, packet_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            outbox = await client.get("/staff/v1/outbox")
            for item in outbox["items"]:
                if item["packet"]["packet_id"] == packet_id and item["state"] not in (
                    "queued",
                    "in_flight",
                ):
                    return dict(item)
            await asyncio.sleep(0.05)  # the outbox runs on its own task; poll its state


def _header(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[0])))


def _payload(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


async def _plaintext(node: Node, digest: str) -> bytes:
    return b"".join([chunk async for chunk in node.core.open_attachment(digest)])


def _stream_of(blob: Path, key: bytes, plain: bytes) -> str:
    """Which segmented stream the sealed blob is: decrypted by one, refused by the other."""
    aad = attachment_aad(hashlib.sha256(plain).hexdigest())
    opened = {}
    for name, decrypt in (("sm4", sm_seal.decrypt_stream), ("tink", stream.decrypt_stream)):
        out = io.BytesIO()
        with open(blob, "rb") as src:
            try:
                decrypt(src, out, key, aad=aad)
            except DecryptionFailed:
                continue
        opened[name] = out.getvalue()
    assert list(opened.values()) == [plain], list(opened)
    return next(iter(opened))


async def _exchange(
    sender: Node, receiver: Node, case: str, scan: Path
) -> tuple[dict[str, Any], str, str]:
    """Send a packet with ``scan`` attached; return the settled outbox item, the packet
    token as the receiver holds it and the stream of the blob the receiver got, after
    checking content and attachment."""
    request = {
        "to": receiver.config.node_id,
        "case_id": case,
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "张三", "shop": "中山路 1 号"},
    }
    sent = await _client(sender).send(request, [scan])
    item = await _settled(_client(sender), sent["packet_id"])
    assert item["state"] == "delivered", item
    opened = receiver.core.read_packet(sent["packet_id"])
    assert opened.content == request["content"]
    [attachment] = opened.summary.attachments
    assert attachment.plain_digest == hashlib.sha256(scan.read_bytes()).hexdigest()
    assert await _plaintext(receiver, attachment.digest) == scan.read_bytes()
    [akey] = _payload(opened.content_jws)["attachments"]  # the stream key, sealed inside
    blob = receiver.core._store.blob_path(attachment.digest)
    kind = _stream_of(blob, b64url_decode(akey["key"]), scan.read_bytes())
    return item, opened.packet, kind


async def test_sm_and_default_provinces_exchange_packets_over_mutual_tls(
    mixed: Mixed, tmp_path: Path
) -> None:
    scan = tmp_path / "营业执照.pdf"
    scan.write_bytes(b"%PDF-1.7 licence scan\n" * 9_000)  # 198 KB: four stream segments

    # default -> SM: sealed to Jiangsu's SM2 key, attachment re-encrypted as SM4-GCM
    item, packet, kind = await _exchange(mixed.hubei, mixed.jiangsu, "HB-1", scan)
    assert _header(packet)["alg"] == "EdDSA"
    assert _payload(packet)["sealed"]["suite"] == "sm2-sm4gcm"
    assert kind == "sm4"
    assert _header(item["receipt"])["alg"] == "SM2SM3"  # Jiangsu's receipt
    now = datetime.now(UTC)  # the nodes sign on the wall clock (NOW is import time)
    receipt = verify_receipt(item["receipt"], mixed.bundle, at=now, expected_from=JIANGSU)
    assert receipt.status is ReceiptStatus.ACCEPTED

    # SM -> default: signed SM2SM3, HPKE to Hubei, attachment as Tink AES-GCM
    item, packet, kind = await _exchange(mixed.jiangsu, mixed.hubei, "JS-1", scan)
    assert _header(packet)["alg"] == "SM2SM3"
    assert _payload(packet)["sealed"]["suite"] == "mlkem768x25519-sha256-aes256gcm"
    assert kind == "tink"
    assert _header(item["receipt"])["alg"] == "EdDSA"
    now = datetime.now(UTC)
    receipt = verify_receipt(item["receipt"], mixed.bundle, at=now, expected_from=HUBEI)
    assert receipt.status is ReceiptStatus.ACCEPTED
    # the SM node's own staged copy: the SM4-GCM stream (密评: no AES at rest either), its
    # key sealed to its SM2 key naming that stream; Hubei got a Tink copy of it (above)
    store = mixed.jiangsu.core._store
    staged = store.attachment(hashlib.sha256(scan.read_bytes()).hexdigest())
    assert staged is not None
    [own] = load_node_keys(mixed.dirs[JIANGSU]).hpke_keys
    assert own.suite is HpkeSuite.SM2_SM4GCM
    assert staged.key_kid == own.public_key().kid
    context = {"digest": staged.plain_digest, "stream": "sm4gcm-hkdf-sm3-64k"}
    key = hpke_open(staged.wrapped_key, own, info=seal_info("attachment-key", context))
    assert _stream_of(store.blob_path(staged.blob_digest), key, scan.read_bytes()) == "sm4"
    assert staged.blob_digest != _payload(packet)["attachments"][0]["digest"]

    # OpenSSL, as the independent judge, verifies the SM2 signature of that packet
    head, body, sig = packet.split(".")
    (tmp_path / "input").write_bytes(f"{head}.{body}".encode("ascii"))
    (tmp_path / "sig.der").write_bytes(raw_to_der(b64url_decode(sig)))
    seal = mixed.dirs[JIANGSU] / "seal.pem"
    pub = subprocess.run(
        ["openssl", "x509", "-in", str(seal), "-pubkey", "-noout"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    (tmp_path / "pub.pem").write_text(pub.stdout)
    judge = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin",
         "-digest", "sm3", "-in", "input", "-sigfile", "sig.der",
         "-pkeyopt", "distid:1234567812345678"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert judge.returncode == 0, judge.stderr + judge.stdout
    assert "Signature Verified Successfully" in judge.stdout


async def test_the_sm_node_serves_tls_from_its_transport_root(mixed: Mixed) -> None:
    """The federation listener of the SM node presents the P-256 leaf of Jiangsu's
    transport root and asks for a client certificate: TLS 1.3 with mutual auth."""
    context = client_context(
        mixed.bundle, mixed.dirs[HUBEI] / "tls.pem", mixed.dirs[HUBEI] / "tls.key"
    )
    context.check_hostname = False
    port = int(mixed.jiangsu.urls["federation"].rsplit(":", 1)[1])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        tls = writer.get_extra_info("ssl_object")
        assert isinstance(tls, ssl.SSLObject)
        assert tls.version() == "TLSv1.3"
        peer = tls.getpeercert()
        issuer = dict(x[0] for x in peer["issuer"])
        subject = dict(x[0] for x in peer["subject"])
        assert issuer["commonName"] == "Jiangsu Transport Root"
        assert subject["commonName"] == JIANGSU
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def narrowed(tmp_path: Path) -> AsyncIterator[Mixed]:
    """v1 names both profiles; v2 supersedes it and names only ``default``. Hubei holds
    both versions (v2 in force), Jiangsu has not taken v2 yet."""

    def versions(dirs: dict[str, Path]) -> dict[str, list[Path]]:
        v1 = write_agreement(
            tmp_path / "agreement-v1.json", dirs, at=NOW, crypto_profiles=["default", "sm"]
        )
        v2 = write_agreement(
            tmp_path / "agreement-v2.json", dirs, at=NOW, crypto_profiles=["default"], version=2
        )
        return {HUBEI: [v1, v2], JIANGSU: [v1]}

    async with _running(tmp_path, versions) as running:
        yield running


async def test_an_agreement_allowing_only_the_default_profile_refuses_the_sm_partner(
    narrowed: Mixed,
) -> None:
    request = {
        "case_id": "JS-2",
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "李四"},
    }
    # Jiangsu (v1: both profiles) creates and sends; Hubei (v2: default only) refuses it
    # for Jiangsu's SM profile with a signed receipt, final for that packet
    jiangsu = _client(narrowed.jiangsu)
    sent = await jiangsu.send({**request, "to": HUBEI}, [])
    item = await _settled(jiangsu, sent["packet_id"])
    assert item["state"] == "rejected", item
    assert item["reason"] == "agreement-denied:profile-not-allowed"
    now = datetime.now(UTC)
    receipt = verify_receipt(item["receipt"], narrowed.bundle, at=now, expected_from=HUBEI)
    assert receipt.status is ReceiptStatus.REJECTED
    assert receipt.reason == "agreement-denied:profile-not-allowed"
    assert narrowed.hubei.core.list_inbox() == []
    alerts = (await jiangsu.get("/staff/v1/alerts"))["alerts"]
    [alert] = [a for a in alerts if a["subject"] == sent["packet_id"]]
    assert alert["code"] == "profile-not-allowed"
    schema_check(alert, "StaffAlert")
    assert "agreement-denied:profile-not-allowed" in alert["detail"]
    assert alert["title"]["zh"].startswith("对方按协议拒收了案卷")

    # Hubei refuses to create a packet to its SM partner: a problem document, nothing queued
    hubei = _client(narrowed.hubei)
    with pytest.raises(StaffApiError) as refused:
        await hubei.send({**request, "case_id": "HB-2", "to": JIANGSU}, [])
    assert (refused.value.status, refused.value.code) == (403, "not-authorized")
    assert "profile-not-allowed" in refused.value.detail
    assert "allows the cryptographic profiles [default]" in refused.value.detail
    assert f"node {JIANGSU} in the sm profile" in refused.value.detail
    assert (await hubei.get("/staff/v1/outbox"))["items"] == []
