"""Issue 14: a partner's limits from its directory entry reach the sender, and a
directory that changes them takes effect without a restart."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
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

from relay.core.outbox import BATCH_ENVELOPE_BYTES
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


async def _post_batch(fed: Federation, to: str, sender: str, packets: list[str]) -> tuple[int, Any]:
    """``POST /federation/v1/packets`` to ``to`` over mutual TLS as ``sender``."""
    key_dir = fed.nodes[sender].config.key_dir
    context = ssl.create_default_context(cafile=str(fed.base / "bundle.pem"))
    context.check_hostname = False
    context.load_cert_chain(key_dir / "tls.pem", key_dir / "tls.key")
    url = f"{fed.nodes[to].urls['federation']}/federation/v1/packets"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.post(url, json={"packets": packets}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_reload_changes_batch_limit_and_outbox_live_and_names_what_needs_a_restart(
    pair: Federation,
) -> None:
    fed = pair
    node = fed.nodes[A]
    status, problem = await _post_batch(fed, A, B, ["x.y.z"] * 3)
    assert status == 200, problem  # three packets are within the default limit
    text = fed.configs[A].read_text(encoding="utf-8")
    text = text.replace('max_backoff = "1s"\n', 'max_backoff = "2s"\nbatch_size = 7\n')
    text += "[limits]\nmax_batch_size = 2\nmax_body_bytes = 65536\nmax_attachment_bytes = 4096\n"
    fed.configs[A].write_text(text, encoding="utf-8")

    for _ in range(2):  # a second reload still says what waits for the restart
        status, report = await reload_over_http(node)
        assert status == 200, report
        assert report["restart_needed"] == ["limits.max_body_bytes"]
    status, problem = await _post_batch(fed, A, B, ["x.y.z"] * 3)
    assert status == 413
    assert problem["code"] == "batch-too-large"
    # the new batch size; the body limit still the one the listener runs with
    assert (problem["max_batch_size"], problem["max_body_bytes"]) == (2, 1024 * 1024)
    policy = node.core.outbox_policy  # type: ignore[attr-defined]
    assert (policy.batch_size, policy.max_delay) == (7, timedelta(seconds=2))
    assert policy.max_packet_bytes == 1024 * 1024 - BATCH_ENVELOPE_BYTES
    assert node.config.limits.max_attachment_bytes == 4096
    packet = await send(node, B, "after-reload")
    assert (await delivered(node, packet))["state"] == "delivered"


async def test_a_bad_outbox_setting_refuses_the_reload(pair: Federation) -> None:
    fed = pair
    node = fed.nodes[A]
    text = fed.configs[A].read_text(encoding="utf-8")
    fed.configs[A].write_text(
        text.replace('max_backoff = "1s"', 'max_backoff = "10ms"'), encoding="utf-8"
    )
    status, problem = await reload_over_http(node)
    assert status == 422
    assert problem["step"] == "config"
    assert node.core.outbox_policy.max_delay == timedelta(seconds=1)  # type: ignore[attr-defined]
