"""kill -9 the receiving node repeatedly, and the sending node once, while 1,000 packets
are in flight between two ``tongban serve`` processes over mutual TLS: afterwards every
packet is delivered exactly once, in per-case order, and every receipt verifies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from relay_http_support import NOW, Pki, free_ports, write_agreement, write_config

from relay.config import load_config
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffApiError, StaffClient
from signing.jws import verify_compact

A, B = "420106", "320982"
CASES, PER_CASE = 50, 20  # 1,000 packets
B_KILLS = 5


class Proc:
    """One ``tongban serve`` process that the test may kill -9 and start again."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay.cli",
            "serve",
            "--config",
            str(self.config),
            "--log-level",
            "WARNING",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode()
        assert "serving" in line, line

    def helpers(self) -> list[int]:
        """The process ids of the node's crypto helpers (its children running
        ``relay.core.helper_worker``)."""
        assert self.proc is not None
        found = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    if b"relay.core.helper_worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                        found.append(int(child))
        return found

    async def kill9(self) -> None:
        """kill -9 the node; its crypto helper must end by itself (its pipe closes)."""
        assert self.proc is not None
        helpers = self.helpers()
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        async with asyncio.timeout(10):
            while any(_alive(pid) for pid in helpers):
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended (its parent, the node, is gone)


def _client(config: Path, role: StaffRole) -> StaffClient:
    cfg = load_config(config)
    key = load_or_create_token_key(cfg.staff.token_key)
    token = issue_token(key, node_id=cfg.node_id, subject="t", roles=[role], now=NOW, ttl=7200)
    return StaffClient.for_config(cfg, token)


async def _delivered(config: Path) -> int | None:
    """How many packets A's outbox has delivered, or None while A is unreachable."""
    try:
        outbox = await _client(config, StaffRole.READER).get(
            "/staff/v1/outbox", {"state": "delivered"}
        )
    except StaffApiError as exc:
        if exc.code != "unreachable":
            raise
        return None  # A is being restarted
    return len(outbox["items"])


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_kill_9_during_delivery_loses_and_duplicates_nothing(
    pki: Pki, tmp_path: Path
) -> None:
    agreement = write_agreement(tmp_path / "agreement.json", {A: pki.a, B: pki.b}, at=NOW)
    pa, pb = free_ports(3), free_ports(3)
    extra = (
        f'[agreements]\nfiles = ["{agreement}"]\n'
        '[outbox]\nbase_backoff = "50ms"\nmax_backoff = "500ms"\nbatch_size = 20\n'
        "[helper]\nenabled = true\n"
    )
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
    node_a, node_b = Proc(config_a), Proc(config_b)
    await node_a.start()
    try:
        # 1,000 packets queued at A while B is down: 50 cases, 20 steps each, interleaved
        sent: dict[str, tuple[str, int]] = {}
        async with _client(config_a, StaffRole.CLERK) as staff:
            for step in range(PER_CASE):
                for case in range(CASES):
                    summary = await staff.send(
                        {
                            "to": B,
                            "case_id": f"CASE-{case:03d}",
                            "matter": "food-business-licence",
                            "action": "submit",
                            "mode": "proxy_receipt",
                            "content": {"case": case, "step": step},
                        },
                        [],
                    )
                    sent[summary["packet_id"]] = (summary["case_id"], summary["seq"])
        total = len(sent)
        assert total == CASES * PER_CASE

        # B comes up and is killed -9 again and again while A delivers; A once too
        await node_b.start()
        progress = [0]
        helped = False
        for kill in range(B_KILLS):
            async with asyncio.timeout(120):
                while (done := await _delivered(config_a)) is None or done <= progress[-1]:
                    await asyncio.sleep(0.05)  # wait for some delivery progress
            progress.append(done)
            helped = helped or bool(node_b.helpers())
            await node_b.kill9()
            if kill == B_KILLS // 2:
                await node_a.kill9()
                await node_a.start()
            await node_b.start()
        assert progress[-1] < total, "everything was delivered before the last kill"
        assert helped, "B never ran its crypto helper"

        async with asyncio.timeout(300):
            while (done := await _delivered(config_a)) != total:
                await asyncio.sleep(0.1)
        outbox = (await _client(config_a, StaffRole.READER).get("/staff/v1/outbox"))["items"]
        inbox = (await _client(config_b, StaffRole.READER).get("/staff/v1/inbox"))["items"]
    finally:
        await node_a.stop()
        await node_b.stop()

    # exactly once: every packet sent is in B's inbox once, nothing else is
    received = [item["packet"]["packet_id"] for item in inbox]
    assert len(received) == len(set(received)) == total
    assert set(received) == set(sent)
    # per-case order: within each case the arrival order is seq 1, 2, ..., 20
    order: dict[str, list[int]] = defaultdict(list)
    for item in inbox:
        order[item["packet"]["case_id"]].append(item["packet"]["seq"])
    assert all(seqs == list(range(1, PER_CASE + 1)) for seqs in order.values())
    # every receipt verifies (B's seal), accepts, and is the one B keeps for the packet
    bundle = pki.bundle
    kept = {item["packet"]["packet_id"]: item["receipt"] for item in inbox}
    assert {item["state"] for item in outbox} == {"delivered"}
    for item in outbox:
        receipt = item["receipt"]
        verified = verify_compact(
            receipt, bundle, at=datetime.now(UTC), typ="tongban-receipt+jws", node_id=B
        )
        body: dict[str, Any] = json.loads(verified.payload)
        assert body["status"] == "accepted"
        assert body["packet_id"] == item["packet"]["packet_id"]
        assert body["from"] == B
        assert body["to"] == A
        assert receipt == kept[body["packet_id"]]
