"""Two real nodes (RelayNode on SQLite) exchange a case packet over mutual TLS."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from relay_http_support import (
    NOW,
    Pki,
    free_ports,
    schema_check,
    write_agreement,
    write_config,
)

from relay.cli import main
from relay.config import load_config
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient

A, B = "420106", "320982"


@dataclass
class Pair:
    a: Node
    b: Node
    config_a: Path
    config_b: Path


def _client(node: Node, role: StaffRole = StaffRole.CLERK) -> StaffClient:
    key = load_or_create_token_key(node.config.staff.token_key)
    token = issue_token(
        key, node_id=node.config.node_id, subject="test", roles=[role], now=NOW, ttl=3600
    )
    return StaffClient.for_config(node.config, token)


@pytest.fixture
async def pair(pki: Pki, tmp_path: Path) -> AsyncIterator[Pair]:
    agreement = write_agreement(tmp_path / "agreement.json", {A: pki.a, B: pki.b}, at=NOW)
    pa, pb = free_ports(3), free_ports(3)
    extra = f'[agreements]\nfiles = ["{agreement}"]\n[outbox]\nbase_backoff = "50ms"\n'
    config_a = write_config(
        tmp_path / "a",
        pki,
        pki.a,
        A,
        ports=pa,  # type: ignore[arg-type]
        partners=((B, pki.b / "node.json", f"https://127.0.0.1:{pb[0]}"),),
        extra=extra,
    )
    config_b = write_config(
        tmp_path / "b",
        pki,
        pki.b,
        B,
        ports=pb,  # type: ignore[arg-type]
        partners=((A, pki.a / "node.json", f"https://127.0.0.1:{pa[0]}"),),
        extra=extra,
    )
    a, b = Node(load_config(config_a)), Node(load_config(config_b))
    await b.start()
    await a.start()
    try:
        yield Pair(a, b, config_a, config_b)
    finally:
        await a.stop()
        await b.stop()


async def _settled(client: StaffClient, packet_id: str) -> dict[str, Any]:
    """The outbox item of ``packet_id`` once it is no longer queued or in flight."""
    async with asyncio.timeout(30):
        while True:
            outbox = await client.get("/staff/v1/outbox")
            for item in outbox["items"]:
                if item["packet"]["packet_id"] == packet_id and item["state"] not in (
                    "queued",
                    "in_flight",
                ):
                    return dict(item)
            await asyncio.sleep(0.05)  # the outbox runs on its own task; poll its state


async def test_packet_with_attachment_crosses_between_two_nodes(pair: Pair, tmp_path: Path) -> None:
    scan = tmp_path / "营业执照.pdf"
    scan.write_bytes(b"%PDF-1.7 licence scan\n" * 40_000)
    plain_digest = hashlib.sha256(scan.read_bytes()).hexdigest()
    request = {
        "to": B,
        "case_id": "WC-2026-000123",
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "张三", "shop": "武昌区中山路 1 号"},
    }
    sent = await _client(pair.a).send(request, [scan])
    item = await _settled(_client(pair.a), sent["packet_id"])
    assert item["state"] == "delivered", item
    assert item["receipt"]

    reader = _client(pair.b, StaffRole.READER)
    inbox = await reader.get("/staff/v1/inbox")
    assert [i["packet"]["packet_id"] for i in inbox["items"]] == [sent["packet_id"]]
    assert inbox["items"][0]["packet"]["from"] == A
    opened = await reader.get(f"/staff/v1/packets/{sent['packet_id']}")
    assert opened["content"] == request["content"]
    assert opened["packet"]["attachments"][0]["plain_digest"] == plain_digest
    assert opened["receipt"] == item["receipt"]
    schema_check(sent, "PacketSummary")
    schema_check(item, "OutboxItem")
    schema_check(inbox["items"][0], "InboxItem")
    schema_check(opened, "PacketContent")


async def test_cli_send_then_inbox_on_the_other_node(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = tmp_path / "content.json"
    content.write_text(json.dumps({"applicant": "李四"}, ensure_ascii=False), encoding="utf-8")
    argv = ["send", "--config", str(pair.config_a), "--to", B, "--case", "WC-9"]
    argv += ["--matter", "food-business-licence", "--action", "submit"]
    argv += ["--content", str(content)]
    assert await asyncio.to_thread(main, argv) == 0
    sent = json.loads(capsys.readouterr().out)
    item = await _settled(_client(pair.a), sent["packet_id"])
    assert item["state"] == "delivered"
    assert await asyncio.to_thread(main, ["inbox", "--config", str(pair.config_b)]) == 0
    out = capsys.readouterr().out
    assert sent["packet_id"] in out
    assert f"{A}→{B}" in out


async def test_action_the_agreement_does_not_grant_is_refused_before_sending(pair: Pair) -> None:
    from relay.staff_client import StaffApiError

    request = {
        "to": B,
        "case_id": "WC-2",
        "matter": "pesticide-retail-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {},
    }
    with pytest.raises(StaffApiError) as info:
        await _client(pair.a).send(request, [])
    assert info.value.status == 403
    assert info.value.code == "not-authorized"


async def test_refused_peers_store_nothing_on_a_real_node(pki: Pki, pair: Pair) -> None:
    """A revoked or foreign client, even carrying a well-formed packet, leaves no trace."""
    import aiohttp
    from relay_http_support import client_ssl

    request = {
        "to": B,
        "case_id": "WC-3",
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"x": 1},
    }
    sent = await _client(pair.a).send(request, [])
    await _settled(_client(pair.a), sent["packet_id"])
    packet = pair.a.core.read_packet(sent["packet_id"]).packet
    before = await _client(pair.b, StaffRole.READER).get("/staff/v1/inbox")
    url = pair.b.urls["federation"] + "/federation/v1/packets"
    async with aiohttp.ClientSession() as session:
        revoked = await session.post(
            url, json={"packets": [packet]}, ssl=client_ssl(pki, pki.revoked)
        )
        assert revoked.status == 403
        assert (await revoked.json(content_type=None))["code"] == "peer-revoked"
        for node_dir in (pki.foreign, None):
            with pytest.raises(aiohttp.ClientError):
                await session.post(url, json={"packets": [packet]}, ssl=client_ssl(pki, node_dir))
    after = await _client(pair.b, StaffRole.READER).get("/staff/v1/inbox")
    assert after == before


async def test_interrupted_blob_upload_resumes_from_the_held_offset(pki: Pki, pair: Pair) -> None:
    """A connection cut mid-body keeps what arrived; the upload resumes from there."""
    import ssl as _ssl
    from urllib.parse import urlsplit

    import aiohttp
    from relay_http_support import client_ssl

    blob = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB
    digest = hashlib.sha256(blob).hexdigest()
    path = f"/federation/v1/attachments/{digest}"
    base = pair.b.urls["federation"]
    parts = urlsplit(base)
    context: _ssl.SSLContext = client_ssl(pki, pki.a)
    reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port, ssl=context, server_hostname=parts.hostname
    )
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Range: bytes 0-{len(blob) - 1}/{len(blob)}\r\n"
        f"Content-Length: {len(blob)}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 3 * 1024 * 1024
    writer.write(head + blob[:sent])
    await writer.drain()
    writer.transport.abort()  # the line drops mid-body

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with asyncio.timeout(20):
            while True:  # the node notices the drop on its own task
                resp = await session.head(base + path)
                offset = int(resp.headers["Upload-Offset"])
                if offset > 0:
                    break
                await asyncio.sleep(0.05)
        assert 0 < offset <= sent
        rest = await session.put(
            base + path,
            data=io.BytesIO(blob[offset:]),
            headers={"Content-Range": f"bytes {offset}-{len(blob) - 1}/{len(blob)}"},
        )
        assert rest.status == 200, await rest.text()
        assert rest.headers["Upload-Offset"] == str(len(blob))
    del reader


async def test_staff_upload_resumes_where_an_earlier_attempt_stopped(
    pair: Pair, tmp_path: Path
) -> None:
    """Half a file staged by a cut-off PUT; the client then sends only the rest."""
    import aiohttp

    scan = tmp_path / "floor-plan.pdf"
    scan.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    data = scan.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    client = _client(pair.a)
    url = f"{client.base_url}/staff/v1/attachments/{digest}"
    half = len(data) // 2
    headers = {"Authorization": f"Bearer {client.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        first = await session.put(
            url,
            data=io.BytesIO(data[:half]),
            headers={"Content-Range": f"bytes 0-{half - 1}/{len(data)}"},
            ssl=client.ssl_context,
        )
        assert first.status == 200
        assert first.headers["Upload-Offset"] == str(half)
    reply = await client.upload_file(scan)
    assert reply["offset_before"] == half
    assert reply["reply"]["attachment"]["plain_digest"] == digest
