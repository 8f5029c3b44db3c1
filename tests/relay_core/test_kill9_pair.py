"""Kill -9 a process holding both the sending and the receiving node, at random
moments, while 1,000 packets are created and delivered; after it finally completes,
every packet the sender created is in the receiver's inbox exactly once, in per-case
order, with the same receipt on both sides, and both SQLite files are intact."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from relay_core_support import DAFENG, WUCHANG, Pki

from relay.core.model import OutboxState
from relay.core.sqlite_store import SqliteStore

HERE = Path(__file__).parent
TOTAL, KILLS = 1000, 6


@pytest.mark.slow
async def test_kill_9_of_both_nodes_loses_and_duplicates_nothing(pki: Pki, tmp_path: Path) -> None:
    rng = random.Random(9)
    args = [sys.executable, str(HERE / "pair_process.py"), str(pki.federation_dir.parent),
            str(tmp_path), str(TOTAL)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    kills = 0
    for _ in range(KILLS + 5):
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, env=env)
        assert proc.stdout is not None
        lines: list[bytes] = []
        if kills < KILLS:
            # let it make some progress, then kill it somewhere inside the next step
            for _ in range(rng.randrange(1, 8)):
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
                lines.append(line)
                if not line or line.startswith(b"done"):
                    break
            await asyncio.sleep(rng.random() * 0.05)
            if proc.returncode is None and not lines[-1].startswith(b"done"):
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills += 1
                continue
        lines += (await asyncio.wait_for(proc.stdout.read(), timeout=240)).splitlines(True)
        assert await proc.wait() == 0
        assert lines[-1].strip() == b"done"
        break
    assert kills == KILLS
    sender, receiver = SqliteStore(tmp_path / WUCHANG), SqliteStore(tmp_path / DAFENG)
    try:
        outbox = sender.list_outbox(None, None)
        assert len(outbox) == TOTAL
        assert {i.state for i in outbox} == {OutboxState.DELIVERED}
        inbox = receiver.list_inbox(None)
        assert len(inbox) == TOTAL  # exactly once
        sent: dict[str, list[str]] = defaultdict(list)
        got: dict[str, list[str]] = defaultdict(list)
        for item in outbox:
            sent[item.summary.case_id].append(item.summary.packet_id)
        for item in inbox:
            got[item.summary.case_id].append(item.summary.packet_id)
        assert got == sent  # in per-case order
        receipts = {i.summary.packet_id: i.receipt for i in inbox}
        assert all(i.receipt == receipts[i.summary.packet_id] for i in outbox)
    finally:
        sender.close()
        receiver.close()
    for node in (WUCHANG, DAFENG):
        conn = sqlite3.connect(tmp_path / node / "relay.sqlite3")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
