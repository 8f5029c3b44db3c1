"""The relay core in one process: packets per second between two nodes (FakeNetwork,
real SQLite files with ``synchronous=FULL``) against the crypto-only rate of the same
work measured in the same run.

- **end to end**: N packets created at A (agreement check, seal, sign, queued durably),
  then delivered to B by A's outbox passes (batches, B's acceptance pipeline, receipts
  committed on both sides, receipts verified and stored by A).
- **crypto only** (baseline): for the same number of packets, exactly the signing,
  sealing and verification both nodes must do: build the packet (inner JWS + HPKE seal +
  outer JWS), verify the outer JWS, open and verify the inner content, sign a receipt,
  verify the receipt.
- **1 GiB attachment**: staged at A (streamed, hashed, sealed at rest), uploaded to B
  before its packet, opened at B and hashed; the peak RSS of this process (both nodes)
  against its RSS before. Baseline: SHA-256 of the same 1 GiB in this process.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sample import sample_facts

N = 500
SIZE = 1 << 30
CASES = 50
A, B = "420106", "320982"


def _setup(base: Path) -> Any:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "relay_core"))
    from relay_core_support import FakeAgreement, FakeClock, Federation, make_pki

    from relay.core.fakes import FakeNetwork
    from relay.core.outbox import OutboxPolicy

    pki = make_pki(base / "pki")
    fed = Federation(
        pki=pki, root=base, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)), policy=OutboxPolicy(batch_size=64),
    )  # fmt: skip
    fed.start(A)
    fed.start(B)
    return fed


async def _end_to_end(fed: Any) -> float:
    a = fed.nodes[A]
    start = time.perf_counter()
    for i in range(N):
        await a.create_packet(
            to=B, case_id=f"case-{i % CASES}", matter="food-business-licence",
            action="submit", mode="proxy_receipt", content={"n": i, "applicant": "张三"},
        )  # fmt: skip
    while fed.stores[A].open_rows():
        await a.deliver_once()
    elapsed = time.perf_counter() - start
    assert len(fed.nodes[B].list_inbox()) == N
    return elapsed


def _crypto_only(fed: Any) -> float:
    from relay.core.packets import build_packet, key_ring, open_content, verify_packet
    from relay.core.receipts import Receipt, ReceiptStatus, sign_receipt, verify_receipt

    keys_a, keys_b = fed.pki.keys[A], fed.pki.keys[B]
    bundle = fed.pki.bundle
    at = fed.clock()
    recipient = keys_b.hpke_keys[0].public_key()
    ring = key_ring(keys_b.hpke_keys)
    start = time.perf_counter()
    for i in range(N):
        facts = sample_facts(i, at, A, B)
        token, _, _ = build_packet(
            facts, {"n": i, "applicant": "张三"}, [], signer=keys_a.seal, recipient=recipient, at=at
        )
        packet = verify_packet(token, bundle, at=at)
        open_content(packet.facts, ring, bundle, at=at)
        receipt = Receipt(
            packet.facts.id, packet.digest, B, A, ReceiptStatus.ACCEPTED, None, at, 0, 1
        )
        verify_receipt(sign_receipt(receipt, keys_b.seal, at=at), bundle, at=at, expected_from=B)
    return time.perf_counter() - start


async def _attachment(fed: Any) -> dict[str, object]:
    import hashlib
    import os
    import resource

    import psutil

    a, b = fed.nodes[A], fed.nodes[B]
    block = os.urandom(1 << 20)
    t0 = time.perf_counter()
    h = hashlib.sha256()
    for _ in range(SIZE >> 20):
        h.update(block)
    digest = h.hexdigest()
    baseline = time.perf_counter() - t0

    async def source() -> Any:
        for _ in range(SIZE >> 20):
            yield block

    rss_before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    await a.write_attachment(digest, SIZE, 0, source())
    await a.create_packet(
        to=B, case_id="big", matter="food-business-licence", action="submit",
        mode="proxy_receipt", content={}, attachments=[digest],
    )  # fmt: skip
    while fed.stores[A].open_rows():
        await a.deliver_once()
    blob = a.list_outbox(peer=B)[-1].summary.attachments[0].digest
    out = hashlib.sha256()
    async for chunk in b.open_attachment(blob):
        out.update(chunk)
    elapsed = time.perf_counter() - t0
    assert out.hexdigest() == digest
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "measure": "1 GiB attachment: stage, send, open (both nodes)",
        "seconds": elapsed,
        "baseline sha256 s": baseline,
        "ratio": baseline / elapsed,
        "rss before MiB": rss_before / 2**20,
        "peak rss MiB": peak / 2**20,
    }


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        fed = _setup(Path(tmp))
        try:
            crypto = _crypto_only(fed)
            e2e = asyncio.run(_end_to_end(fed))
            big = asyncio.run(_attachment(fed))
        finally:
            fed.close()
    return [
        big,
        {"measure": "end to end (FakeNetwork, SQLite FULL)", "packets": N,
         "seconds": e2e, "packets/s": N / e2e},
        {"measure": "crypto only (baseline)", "packets": N, "seconds": crypto,
         "packets/s": N / crypto},
        {"measure": "end to end / crypto only", "ratio": (N / e2e) / (N / crypto)},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(row)
