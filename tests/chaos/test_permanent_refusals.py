"""Permanent refusals must not wedge delivery (issue 11 findings 1 and 2; the contract
the *outbox* branch implements): a packet that can never be delivered is parked — outbox
state ``dead`` with a stable reason other than ``expired``, and a standing staff alert
(source ``outbox``, code ``packet-parked``, subject the packet id) — while the other
cases to the same partner keep moving; batches fit the partner's body limit, and a
packet too big for any batch is refused at creation (413 ``packet-too-large``).

These tests fail until the outbox branch is merged; they are written to the contract.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from chaoskit import (
    MATTER,
    B,
    Federation,
    Proc,
    assert_exactly_once,
    make_federation,
    send_backlog,
    staff,
    wait_for,
)
from relay_http_support import Pki

from relay.staff_auth import StaffRole
from relay.staff_client import StaffApiError


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def outbox_states(config: Path) -> dict[str, dict]:
    items = (await staff(config).get("/staff/v1/outbox"))["items"]
    return {item["packet"]["packet_id"]: item for item in items}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_corrupted_attachment_blob_is_parked_and_others_flow(
    federation: Federation, tmp_path: Path
) -> None:
    node_a, node_b = Proc(federation.config_a), Proc(federation.config_b)
    await node_a.start()
    try:
        plan = tmp_path / "plan.pdf"
        plan.write_bytes(os.urandom(300_000))
        async with staff(federation.config_a, StaffRole.CLERK) as clerk:
            bad = await clerk.send(
                {"to": B, "case_id": "BAD-001", "matter": MATTER, "action": "submit",
                 "mode": "proxy_receipt", "content": {"plan": "attached"}},
                [plan],
            )  # fmt: skip
        blobs = sorted((federation.data_a / "blobs").rglob("*"), key=lambda p: p.stat().st_size)
        flip_one_byte(blobs[-1])  # the sealed attachment, by far the largest blob
        others = await send_backlog(federation.config_a, 4, 3)
        await node_b.start()
        started = time.monotonic()

        async def settled() -> bool:
            states = await outbox_states(federation.config_a)
            return states[bad["packet_id"]]["state"] == "dead" and all(
                states[p]["state"] == "delivered" for p in others
            )

        await wait_for(settled, "the bad packet parked and the others delivered", 180)
        print(f"corrupt blob: parked, {len(others)} others drained in "
              f"{time.monotonic() - started:.1f}s")  # fmt: skip
        parked = (await outbox_states(federation.config_a))[bad["packet_id"]]
        assert parked["reason"], parked
        assert parked["reason"] != "expired", parked
        alerts = (await staff(federation.config_a).get("/staff/v1/alerts"))["alerts"]
        mine = [a for a in alerts if a["source"] == "outbox" and a["code"] == "packet-parked"]
        assert [a["subject"] for a in mine] == [bad["packet_id"]], alerts
        await assert_exactly_once(federation, others)
    finally:
        await node_a.stop()
        await node_b.stop()


SMALL_LIMIT = "[limits]\nmax_body_bytes = 65536\n"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_batches_fit_the_partners_body_limit(chaos_pki: Pki, tmp_path: Path) -> None:
    fed = make_federation(chaos_pki, tmp_path, extra_b=SMALL_LIMIT)
    node_a, node_b = Proc(fed.config_a), Proc(fed.config_b)
    await node_a.start()
    try:
        sent = await send_backlog(fed.config_a, 10, 2, filler=3000)  # ~10 x 64 KiB batches
        await node_b.start()

        async def drained() -> bool:
            states = await outbox_states(fed.config_a)
            return all(states[p]["state"] == "delivered" for p in sent)

        await wait_for(drained, "every packet delivered in batches within B's limit", 180)
        await assert_exactly_once(fed, sent)
    finally:
        await node_a.stop()
        await node_b.stop()


@pytest.mark.timeout(300)
async def test_packet_too_large_for_any_batch_is_refused_at_creation(
    chaos_pki: Pki, tmp_path: Path
) -> None:
    fed = make_federation(chaos_pki, tmp_path, extra_b=SMALL_LIMIT)
    node_a = Proc(fed.config_a)
    await node_a.start()
    try:
        with pytest.raises(StaffApiError) as refused:
            await send_backlog(fed.config_a, 1, 1, filler=40_000)  # > 64 KiB sealed
        assert (refused.value.status, refused.value.code) == (413, "packet-too-large")
        outbox = (await staff(fed.config_a).get("/staff/v1/outbox"))["items"]
        assert outbox == [], "a refused packet was queued"
    finally:
        await node_a.stop()
