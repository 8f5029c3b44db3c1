"""The SM profile against the default profile, measured in the same run, as ratios.

- **primitives**: every primitive signs or verifies the same 200-byte message (about a
  JWS signing input): SM2-with-SM3 with the GM/T 0009 signer id through GmSSL 3
  (``signing.sm2``); Ed25519 and P-256 (ES256) through ``cryptography``;
- **relayed packet**: ``PACKETS`` packets created at node A and delivered to node B
  (FakeNetwork, real SQLite, receipts back), once with both nodes in a default-profile
  federation (Ed25519 seals, P-256 root) and once in an SM-profile one (SM2 seals and
  root); sealing is HPKE in both (SM sealing is not built yet).

Blocks alternate for ``ROUNDS`` rounds and the best rate of each is kept, to blunt the
noise of a shared machine.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

N = 300
ROUNDS = 3
PACKETS = 60
A, B = "420106", "320982"


def _rate(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        fn()
    return N / (time.perf_counter() - start)


def _federation(base: Path, profile: str) -> Any:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "relay_core"))
    from relay_core_support import START, FakeAgreement, FakeClock, Federation, Pki  # type: ignore[import-not-found]

    from certs.pki import init_federation, issue_node
    from relay.core.fakes import FakeNetwork
    from relay.core.outbox import OutboxPolicy
    from signing.certificates import TrustBundle
    from signing.nodedir import load_node_keys

    then = START - timedelta(days=1)
    init_federation(base / "fed", "Bench", now=then, profile=profile)
    for node in (A, B):
        issue_node(base / "fed", node, f"office {node}", "127.0.0.1", base / node, now=then)
    bundle = TrustBundle.from_pem(
        (base / "fed" / "root.pem").read_bytes() + (base / "fed" / "crl.pem").read_bytes()
    )
    keys = {node: load_node_keys(base / node) for node in (A, B)}
    pki = Pki(bundle, keys, {n: k.descriptor_bytes for n, k in keys.items()}, keys[A], base / "fed")
    (base / "nodes").mkdir()
    fed = Federation(
        pki=pki, root=base / "nodes", clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)), policy=OutboxPolicy(batch_size=64),
    )  # fmt: skip
    fed.start(A)
    fed.start(B)
    return fed


async def _relay(fed: Any, offset: int) -> float:
    """Packets per second, created at A and delivered to B with receipts back."""
    a = fed.nodes[A]
    start = time.perf_counter()
    for i in range(PACKETS):
        await a.create_packet(
            to=B, case_id=f"case-{offset + i}", matter="food-business-licence",
            action="submit", mode="proxy_receipt", content={"n": i, "applicant": "张三"},
        )  # fmt: skip
    while fed.stores[A].open_rows():
        await a.deliver_once()
    return PACKETS / (time.perf_counter() - start)


def _relayed_packets() -> list[dict[str, object]]:
    best = {"default": 0.0, "sm": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        feds = {p: _federation(Path(tmp) / p, p) for p in best}
        try:
            for r in range(ROUNDS):
                for profile, fed in feds.items():
                    best[profile] = max(best[profile], asyncio.run(_relay(fed, r * PACKETS)))
        finally:
            for fed in feds.values():
                fed.close()
    return [
        {"measure": "relayed packet, default profile", "packets/s": best["default"]},
        {"measure": "relayed packet, SM profile", "packets/s": best["sm"]},
        {"measure": "relayed packet SM / default", "ratio": f"{best['sm'] / best['default']:.4f}"},
    ]


def run() -> list[dict[str, object]]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from signing.sm2 import Sm2PrivateKey

    message = bytes(range(200))
    sm2 = Sm2PrivateKey.generate()
    sm2_sig = sm2.sign(message)
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_sig = ed.sign(message)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256_sig = p256.sign(message, ec.ECDSA(hashes.SHA256()))

    def _ok(result: bool) -> None:
        if not result:
            raise AssertionError("an SM2 signature failed to verify")

    cases: dict[str, Callable[[], object]] = {
        "SM2 sign": lambda: sm2.sign(message),
        "SM2 verify": lambda: _ok(sm2.public_key.verify(sm2_sig, message)),
        "Ed25519 sign": lambda: ed.sign(message),
        "Ed25519 verify": lambda: ed.public_key().verify(ed_sig, message),
        "P-256 sign": lambda: p256.sign(message, ec.ECDSA(hashes.SHA256())),
        "P-256 verify": lambda: p256.public_key().verify(
            p256_sig, message, ec.ECDSA(hashes.SHA256())
        ),
    }
    best = dict.fromkeys(cases, 0.0)
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            best[name] = max(best[name], _rate(fn))
    rows: list[dict[str, object]] = [{"measure": n, "ops/s": r} for n, r in best.items()]
    for op in ("sign", "verify"):  # how many times the default profile's rate SM2's is
        for other in ("Ed25519", "P-256"):
            rate = best[f"SM2 {op}"] / best[f"{other} {op}"]
            rows.append({"measure": f"SM2 {op} / {other} {op}", "ratio": f"{rate:.4f}"})
    return rows + _relayed_packets()


if __name__ == "__main__":
    for row in run():
        print(row)
