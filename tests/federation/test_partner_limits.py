"""Issue 14: a partner's limits from its directory entry reach the sender, and a
directory that changes them takes effect without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from federation_kit import (
    NOW,
    Federation,
    delivered,
    reload_over_http,
    resolved,
    running_federation,
    send,
    until,
)

from relay.federation.publish import publish_directory

A, B = "420106", "320982"
LAYOUT = {"Hubei": (A,), "Jiangsu": (B,)}


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Federation]:
    async with running_federation(tmp_path, LAYOUT) as fed:
        await until("both nodes resolved each other", lambda: resolved(fed, 1))
        yield fed


def _sender_limits(fed: Federation, node: str, partner: str) -> dict[str, int]:
    return dict(fed.nodes[node].core._sender.limits(partner))  # type: ignore[attr-defined]


async def test_the_directory_entry_limits_reach_the_sender_and_follow_a_new_directory(
    pair: Federation,
) -> None:
    fed = pair
    assert _sender_limits(fed, A, B) == {"max_batch_size": 100, "max_body_bytes": 1024 * 1024}
    province = fed.provinces["Jiangsu"]
    publish_directory(
        key_dir=province.key_dir,
        trust_bundle=fed.base / "bundle.pem",
        federation="Jiangsu",
        node_files=[d / "node.json" for d in province.nodes.values()],
        out=fed.directory_file("Jiangsu"),
        now=NOW,
        valid_for=90 * 86400,
        max_body_bytes=64 * 1024,
        max_batch_size=2,
    )
    status, _ = await reload_over_http(fed.nodes[B])  # B serves the new serial
    assert status == 200
    await until(
        "A took B's new limits from the directory",
        lambda: _sender_limits(fed, A, B) == {"max_batch_size": 2, "max_body_bytes": 64 * 1024},
    )
    packet = await send(fed.nodes[A], B, "after-new-limits")
    assert (await delivered(fed.nodes[A], packet))["state"] == "delivered"
