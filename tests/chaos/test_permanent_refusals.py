"""Permanent refusals must not wedge delivery (issue 11 findings 1 and 2; the contract
the *outbox* branch implements): a packet that can never be delivered is parked — outbox
state ``dead`` with a stable reason other than ``expired``, and a standing staff alert
(source ``outbox``, code ``packet-parked``, subject the packet id) — while the other
cases to the same partner keep moving; batches fit the partner's body limit (learned
from its 413), a packet too big for any batch the sender could send is refused at
creation (413 ``packet-too-large``), and one over a partner's smaller limit is parked.
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
    """Over the sender's own body limit (which bounds every batch it could send): 413
    at creation, nothing queued."""
    fed = make_federation(chaos_pki, tmp_path, extra=SMALL_LIMIT)
    node_a = Proc(fed.config_a)
    await node_a.start()
    try:
        # a 40 KB request (within A's 64 KiB body limit) whose packet, sealed and signed
        # (base64url twice), is over 64 KiB
        async with staff(fed.config_a, StaffRole.CLERK) as clerk:
            with pytest.raises(StaffApiError) as refused:
                await clerk.send(
                    {"to": B, "case_id": "BIG-001", "matter": MATTER, "action": "submit",
                     "mode": "proxy_receipt", "content": {"note": "x" * 40_000}},
                    [],
                )  # fmt: skip
        assert (refused.value.status, refused.value.code) == (413, "packet-too-large")
        outbox = (await staff(fed.config_a).get("/staff/v1/outbox"))["items"]
        assert outbox == [], "a refused packet was queued"
    finally:
        await node_a.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_packet_over_the_partners_smaller_limit_is_parked_and_others_flow(
    chaos_pki: Pki, tmp_path: Path
) -> None:
    """A packet within the sender's limit but over the partner's smaller one: the
    partner's 413 for it alone parks it (``packet-too-large``, with an alert); the
    other cases are delivered."""
    fed = make_federation(chaos_pki, tmp_path, extra_b=SMALL_LIMIT)
    node_a, node_b = Proc(fed.config_a), Proc(fed.config_b)
    await node_a.start()
    try:
        big = await send_backlog(fed.config_a, 1, 1, tag="BIG", filler=40_000)
        others = await send_backlog(fed.config_a, 4, 2, filler=100)
        [big_id] = big
        await node_b.start()

        async def settled() -> bool:
            states = await outbox_states(fed.config_a)
            return states[big_id]["state"] == "dead" and all(
                states[p]["state"] == "delivered" for p in others
            )

        await wait_for(settled, "the big packet parked and the others delivered", 180)
        parked = (await outbox_states(fed.config_a))[big_id]
        assert parked["reason"] == "packet-too-large", parked
        alerts = (await staff(fed.config_a).get("/staff/v1/alerts"))["alerts"]
        mine = [a for a in alerts if a["source"] == "outbox" and a["code"] == "packet-parked"]
        assert [a["subject"] for a in mine] == [big_id], alerts
        await assert_exactly_once(fed, others)
    finally:
        await node_a.stop()
        await node_b.stop()
