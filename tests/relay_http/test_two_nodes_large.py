"""A 64 MiB attachment crosses between two real nodes in bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest
from relay_http_support import NOW, Pki, free_ports, write_agreement, write_config

from relay.config import load_config
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient

A, B = "420106", "320982"
MIB = 1024 * 1024


def _client(node: Node, role: StaffRole = StaffRole.CLERK) -> StaffClient:
    key = load_or_create_token_key(node.config.staff.token_key)
    token = issue_token(
        key, node_id=node.config.node_id, subject="test", roles=[role], now=NOW, ttl=3600
    )
    return StaffClient.for_config(node.config, token)


@pytest.mark.slow
async def test_64_mib_attachment_crosses_in_bounded_memory(pki: Pki, tmp_path: Path) -> None:
    big = tmp_path / "survey-video.bin"
    sha = hashlib.sha256()
    with big.open("wb") as fh:
        for i in range(64):
            block = hashlib.sha256(i.to_bytes(4, "big")).digest() * (MIB // 32)
            fh.write(block)
            sha.update(block)
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
    tracemalloc.start()
    try:
        request = {
            "to": B,
            "case_id": "WC-BIG",
            "matter": "food-business-licence",
            "action": "submit",
            "mode": "proxy_receipt",
            "content": {"note": "site survey recording"},
        }
        sent = await _client(a).send(request, [big])
        reader = _client(b, StaffRole.READER)
        async with asyncio.timeout(120):
            while not (await reader.get("/staff/v1/inbox"))["items"]:
                await asyncio.sleep(0.1)  # the outbox runs on its own task
        opened = await reader.get(f"/staff/v1/packets/{sent['packet_id']}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await a.stop()
        await b.stop()
    print(f"64 MiB across two nodes: peak traced Python memory {peak / MIB:.1f} MiB")
    assert sent["attachments"][0]["plain_digest"] == sha.hexdigest()
    received = opened["packet"]["attachments"][0]
    assert received["plain_digest"] == sha.hexdigest()
    assert received["plain_size"] == 64 * MIB
    assert peak < 32 * MIB
