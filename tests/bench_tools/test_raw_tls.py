"""The raw TLS baselines of ``bench relay_http``: straight to a sink, and through the
bare relay that stands for the best any relay with two TLS hops could do."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_relay_http import _raw_tls
from certs.pki import init_federation, issue_node


async def test_raw_tls_carries_every_byte_straight_and_through_the_bare_relay(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    init_federation(tmp_path / "fed", "Bench test", now=now)
    node = tmp_path / "node"
    issue_node(tmp_path / "fed", "420106", "bench office", "127.0.0.1", node, now=now)
    sent = tmp_path / "file.bin"
    sent.write_bytes(os.urandom(3 << 20) + b"an odd tail")  # not a whole number of reads

    # each run asserts that the sink counted every byte the sender sent
    seconds, (sender, receiver) = await _raw_tls(node, sent)
    assert seconds > 0
    assert sender > 0
    assert receiver > 0
    relayed, (sender, relay_and_sink) = await _raw_tls(node, sent, relayed=True)
    assert relayed > 0
    assert sender > 0
    # the relay is a second interpreter beside the sink (its start alone costs some 50 ms)
    assert relay_and_sink > receiver
