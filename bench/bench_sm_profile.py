"""SM2 signing and verification (the SM profile) against the default profile's Ed25519
and ECDSA P-256, all measured in the same run, as ratios.

Every primitive signs or verifies the same 200-byte message (about a JWS signing input):
SM2-with-SM3 with the GM/T 0009 signer id through GmSSL 3 (``signing.sm2``); Ed25519 and
P-256 (ES256) through ``cryptography``. Blocks alternate for ``ROUNDS`` rounds and the
best rate of each is kept, to blunt the noise of a shared machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

N = 300
ROUNDS = 3


def _rate(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        fn()
    return N / (time.perf_counter() - start)


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
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
