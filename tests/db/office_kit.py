"""A real SQLite office that has worked, for the moving tests (helpers).

Two real ``tongban serve`` processes (A 420106 receives applications, B 320982 handles
them; the fault-injection suite's kit) exchange, over mutual TLS on 127.0.0.1: a case
opened at A and accepted at B, case packets on several cases, one with an attachment.
Then both stop. A's data holds an outbox with B's receipts; B's an inbox with its own
receipts, the case, the blob; both an audit log with signed checkpoints.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

_TESTS = Path(__file__).resolve().parent.parent
for folder in ("relay_http", "chaos"):
    if str(_TESTS / folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / folder))

from chaoskit import MATTER, A, B, Federation, Proc, make_federation, send_backlog, staff  # noqa: E402
from relay_http_support import Pki  # noqa: E402

from relay.config import load_config  # noqa: E402
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key  # noqa: E402
from relay.staff_client import staff_base_url  # noqa: E402
from relay.tls import client_context  # noqa: E402

__all__ = ["CASE", "A", "B", "Office", "Proc", "make_office", "staff"]

CASE = "WC-MOVE-1"


@dataclass(frozen=True)
class Office:
    federation: Federation
    packets: int  # packets A sent and B accepted

    @property
    def config_a(self) -> Path:
        return self.federation.config_a

    @property
    def config_b(self) -> Path:
        return self.federation.config_b


async def _staff_post(config: Path, pki: Pki, path: str, body: dict[str, Any]) -> Any:
    cfg = load_config(config)
    key = load_or_create_token_key(cfg.staff.token_key)
    token = issue_token(key, node_id=cfg.node_id, subject="mover", roles=[StaffRole.CLERK,
                        StaffRole.APPROVER], now=datetime.now(UTC), ttl=600)  # fmt: skip
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(staff_base_url(cfg) + path, json=body, ssl=client_context(pki.bundle)) as resp,
    ):
        assert resp.status < 300, f"{path}: {resp.status} {await resp.text()}"
        return await resp.json()


async def _settled(config: Path) -> int:
    """Wait until the node's outbox has nothing open; the number delivered."""
    async with asyncio.timeout(120):
        while True:
            items = (await staff(config).get("/staff/v1/outbox"))["items"]
            if not any(i["state"] in ("queued", "in_flight") for i in items):
                assert all(i["state"] == "delivered" for i in items), items
                return len(items)
            await asyncio.sleep(0.05)  # the outbox runs on the node's own task


async def _work(fed: Federation, pki: Pki) -> int:
    await _staff_post(fed.config_a, pki, "/staff/v1/cases",
                      {"matter": MATTER, "handling": B, "case_id": CASE})  # fmt: skip
    async with asyncio.timeout(60):
        while (await staff(fed.config_b).get("/staff/v1/inbox", {"case": CASE}))["items"] == []:
            await asyncio.sleep(0.05)
    await _staff_post(fed.config_b, pki, f"/staff/v1/cases/{CASE}/events", {"event": "accept"})
    await send_backlog(fed.config_a, cases=3, per_case=3, tag="M")
    scan = fed.config_a.parent / "scan.pdf"
    scan.write_bytes(os.urandom(50_000))
    async with staff(fed.config_a, StaffRole.CLERK) as clerk:
        await clerk.send({"to": B, "case_id": "M-ATT", "matter": MATTER, "action": "submit",
                          "mode": "proxy_receipt", "content": {"scan": 1}}, [scan])  # fmt: skip
    sent = await _settled(fed.config_a)
    await _settled(fed.config_b)
    for config in (fed.config_a, fed.config_b):  # a signed checkpoint on each side
        await _staff_post(config, pki, "/staff/v1/audit/checkpoint", {})
    return sent


def make_office(pki: Pki, base: Path) -> Office:
    """Run A and B until their work is delivered and checkpointed; both stopped after."""
    fed = make_federation(pki, base)
    procs = [Proc(fed.config_a), Proc(fed.config_b)]

    async def run() -> int:
        try:
            for proc in procs:
                await proc.start()
            return await _work(fed, pki)
        finally:
            for proc in procs:
                await proc.stop()

    return Office(fed, asyncio.run(run()))
