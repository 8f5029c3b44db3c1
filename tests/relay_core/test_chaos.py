"""Seeded chaos: three nodes sending to each other while links drop requests and
answers, partners go down and come back and nodes restart on their SQLite files.
Afterwards every packet is in its recipient's inbox exactly once, in per-case order,
the sender holds the very receipt the recipient stored, and every attachment (uploads
broken part-way included) opens at its recipient to the bytes staged."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

import pytest
from relay_core_support import (
    DAFENG,
    NINGJIN,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    chunks_of,
    collect,
)

from relay.core.fakes import FakeNetwork
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy

NODES = (WUCHANG, DAFENG, NINGJIN)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_faults_and_restarts_lose_and_duplicate_nothing(
    pki: Pki, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    fed = Federation(
        pki=pki, root=tmp_path, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(seed)), policy=OutboxPolicy(batch_size=4),
    )  # fmt: skip
    for node in NODES:
        fed.start(node)
    created: dict[tuple[str, str, str], list[str]] = defaultdict(list)  # (from, to, case)
    files: dict[str, bytes] = {}
    try:
        for step in range(60):
            if step < 40:  # traffic while things break
                for _ in range(rng.randrange(3)):
                    sender, to = rng.sample(NODES, 2)
                    case = f"case-{rng.randrange(4)}"
                    attachments = []
                    if rng.random() < 0.3:
                        data = rng.randbytes(rng.randrange(1, 300_000))
                        digest = hashlib.sha256(data).hexdigest()
                        await fed.nodes[sender].write_attachment(
                            digest, len(data), 0, chunks_of(data)
                        )
                        attachments.append(digest)
                        files[digest] = data
                    summary = await fed.nodes[sender].create_packet(
                        to=to, case_id=case, matter="food-business-licence", action="submit",
                        mode="proxy_receipt", content={"step": step}, attachments=attachments,
                    )  # fmt: skip
                    created[(sender, to, case)].append(summary.packet_id)
                fed.network.loss = rng.choice((0.0, 0.2, 0.5))
                fed.network.reply_loss = rng.choice((0.0, 0.2, 0.5))
                fed.network.down = {n for n in NODES if rng.random() < 0.2}
                fed.network.cut_uploads_after = rng.choice((None, 40_000))
                if rng.random() < 0.15:
                    fed.start(rng.choice(NODES))  # a node restarts on its files
            else:  # the storm is over
                fed.network.loss = fed.network.reply_loss = 0.0
                fed.network.down = set()
                fed.network.cut_uploads_after = None
            for node in NODES:
                await fed.nodes[node].deliver_once()
            fed.clock.advance(seconds=rng.choice((1, 30, 300)))
        for node in NODES:
            assert fed.stores[node].open_rows() == []
            assert {i.state for i in fed.nodes[node].list_outbox()} <= {OutboxState.DELIVERED}
        receipts = {}
        for to in NODES:
            inbox = fed.nodes[to].list_inbox()
            ids = [i.summary.packet_id for i in inbox]
            assert len(ids) == len(set(ids))
            got: dict[tuple[str, str, str], list[str]] = defaultdict(list)
            for item in inbox:
                got[(item.summary.sender, to, item.summary.case_id)].append(item.summary.packet_id)
                receipts[item.summary.packet_id] = item.receipt
            assert got == {k: v for k, v in created.items() if k[1] == to}
        opened = 0
        for node in NODES:
            for item in fed.nodes[node].list_outbox():
                assert item.receipt == receipts[item.summary.packet_id]
                for a in item.summary.attachments:
                    recipient = fed.nodes[item.summary.receiver]
                    assert (
                        await collect(recipient.open_attachment(a.digest))
                        == files[a.plain_digest or ""]
                    )
                    opened += 1
        assert opened > 0
        assert sum(len(v) for v in created.values()) > 20
    finally:
        fed.close()
