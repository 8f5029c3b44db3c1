"""A corrupted database page: bytes flipped in the middle of a stopped node's SQLite file.
Started again, the node must refuse to start with a clear message naming the problem, or
come up reporting not ready (``GET /readyz`` 503) — never serve as if nothing happened."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest
from chaoskit import Federation, Proc, send_backlog, wait_drained

PAGE = 4096


def flip_middle_page(path: Path, rng: random.Random) -> int:
    """Scramble a whole page (header, cell pointers, cells) in the middle of ``path``;
    its offset."""
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    assert pages >= 4, f"{path} is too small to corrupt a middle page ({len(data)} bytes)"
    offset = (pages // 2) * PAGE
    for i in range(offset, offset + PAGE):
        data[i] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    return offset


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("side", ["sender", "receiver"])
async def test_corrupted_database_page_is_refused_or_not_ready(side: str, federation: Federation):
    node_a, node_b = Proc(federation.config_a), Proc(federation.config_b)
    await node_a.start()
    await node_b.start()
    try:
        sent = await send_backlog(federation.config_a, 6, 8, filler=1500)
        await wait_drained(federation.config_a, len(sent))
    finally:
        await node_a.stop()
        await node_b.stop()
    victim, data, public = (
        (node_a, federation.data_a, federation.public_port_a)
        if side == "sender"
        else (node_b, federation.data_b, federation.public_port_b)
    )
    database = data / "relay.sqlite3"
    flip_middle_page(database, random.Random(11))

    serving, said = await victim.start_or_refuse()
    try:
        if not serving:
            assert "Traceback" not in said, said
            assert "relay.sqlite3" in said or "database" in said.lower(), said
            return
        # the database check runs in the background from the start (it reads the whole
        # file): readiness fails once it has, within seconds on this small file
        url = f"http://127.0.0.1:{public}/readyz"
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    async with http.get(url) as resp:
                        status, body = resp.status, await resp.text()
                    if status == 503:
                        break
                    await asyncio.sleep(0.1)
            assert "storage" in body, body
    finally:
        await victim.stop()
