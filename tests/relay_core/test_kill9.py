"""Kill -9 the receiving node (a real process on a real SQLite file) again and again
while 1,000 packets are in flight, and restart the sending node once: afterwards every
packet is delivered exactly once, in per-case order, and every receipt verifies."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest
from relay_core_support import DAFENG, WUCHANG, Federation

from relay.core.errors import PeerUnavailable
from relay.core.model import OutboxState
from relay.core.ports import OpenAt
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.core.sqlite_store import SqliteStore


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the receiver under kill -9 is a SQLite node; one sender backend


HERE = Path(__file__).parent
CASES, PER_CASE = 50, 20


class ProcessLink:
    """A PeerLink to a receiver process; kills it with SIGKILL at random moments."""

    def __init__(self, pki_dir: Path, data_dir: Path, rng: random.Random, kills: int) -> None:
        self._args = [sys.executable, str(HERE / "receiver_process.py"), str(pki_dir),
                      str(data_dir), DAFENG]  # fmt: skip
        self._rng = rng
        self.kills_left = kills
        self.kills = 0
        self.after_commit = 0
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._pipe = asyncio.Lock()  # one request at a time on the pipe (the outbox
        # sends several batches at once, as it may over HTTP)

    async def _process(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
            self._proc = await asyncio.create_subprocess_exec(
                *self._args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=env,
            )  # fmt: skip
            self.starts += 1
            assert self._proc.stdout is not None
            ready = await asyncio.wait_for(self._proc.stdout.readline(), timeout=60)
            assert json.loads(ready) == {"ready": True}
        return self._proc

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        async with self._pipe:
            return await self._deliver(peer, packets)

    async def _deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        assert peer == DAFENG
        proc = await self._process()
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps({"peer": WUCHANG, "packets": list(packets)}).encode() + b"\n")
        await proc.stdin.drain()
        if self.kills_left and self._rng.random() < 0.5:
            if self.kills % 2:
                # after the receiver committed and answered, before the answer is used
                await asyncio.wait_for(proc.stdout.readline(), timeout=60)
                self.after_commit += 1
            else:
                await asyncio.sleep(self._rng.random() * 0.05)  # somewhere inside the batch
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            self.kills_left -= 1
            self.kills += 1
            raise PeerUnavailable("receiver killed")
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if not line:
            raise PeerUnavailable("receiver gone")
        receipts: list[str] = json.loads(line)
        return receipts

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        raise PeerUnavailable("no attachments in this test")

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()


@pytest.mark.slow
async def test_kill_9_of_the_receiver_loses_and_duplicates_nothing(
    federation: Federation, tmp_path: Path
) -> None:
    pki_dir = federation.pki.federation_dir.parent
    receiver_dir = tmp_path / "receiver-process"
    link = ProcessLink(pki_dir, receiver_dir, random.Random(3), kills=8)
    federation.network.nodes.pop(DAFENG)
    sender = federation.start(WUCHANG)
    sender._sender._link = link
    sent: dict[str, list[str]] = defaultdict(list)
    try:
        for seq in range(PER_CASE):
            for case in range(CASES):
                summary = await sender.create_packet(
                    to=DAFENG, case_id=f"case-{case}", matter="food-business-licence",
                    action="submit", mode="proxy_receipt", content={"seq": seq},
                )  # fmt: skip
                sent[f"case-{case}"].append(summary.packet_id)
        restarted = False
        for _ in range(400):
            if not federation.stores[WUCHANG].open_rows():
                break
            await federation.nodes[WUCHANG].deliver_once()
            federation.clock.advance(minutes=5)
            delivered = len(federation.nodes[WUCHANG].list_outbox(state=OutboxState.DELIVERED))
            if not restarted and delivered > 400:  # the sending node dies once too
                federation.start(WUCHANG)._sender._link = link
                restarted = True
        assert restarted
    finally:
        await link.close()
    assert link.kills == 8
    assert link.after_commit == 4  # four batches were committed but never acknowledged
    assert link.starts >= 9
    outbox = federation.nodes[WUCHANG].list_outbox()
    assert len(outbox) == CASES * PER_CASE
    assert {i.state for i in outbox} == {OutboxState.DELIVERED}
    store = SqliteStore(receiver_dir)
    try:
        inbox = store.list_inbox(None)
        assert len(inbox) == CASES * PER_CASE  # exactly once
        by_case: dict[str, list[str]] = defaultdict(list)
        for item in inbox:
            by_case[item.summary.case_id].append(item.summary.packet_id)
        assert by_case == sent  # in per-case order
        receipts = {i.summary.packet_id: i.receipt for i in inbox}
        for item in outbox:
            assert item.receipt == receipts[item.summary.packet_id]  # the original receipt
            r = verify_receipt(
                item.receipt or "", federation.pki.bundle, at=federation.clock(),
                expected_from=DAFENG,
            )  # fmt: skip
            assert r.status is ReceiptStatus.ACCEPTED
    finally:
        store.close()
    conn = sqlite3.connect(receiver_dir / "relay.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        leaves = conn.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()[0]
        assert leaves == 2 * CASES * PER_CASE  # packet-received + receipt, once each
    finally:
        conn.close()
