"""The SM profile against the default profile, measured in the same run, as ratios.

- **primitives**: every primitive signs or verifies the same 200-byte message (about a
  JWS signing input): SM2-with-SM3 with the GM/T 0009 signer id through GmSSL 3
  (``signing.sm2``); Ed25519 and P-256 (ES256) through ``cryptography``;
- **relayed packet**: ``PACKETS`` packets created at node A and delivered to node B
  (FakeNetwork, real SQLite, receipts back), once with both nodes in a default-profile
  federation (Ed25519 seals, P-256 root) and once in an SM-profile one (SM2 seals and
  root); sealing is HPKE in the default federation and ``sm2-sm4gcm`` in the SM one.
  Each node's audit log hashes in its profile (SHA-256 or SM3);
- **staging**: a ``STAGE_MIB`` MiB staff upload staged at node A of each of those
  federations (sealed as it streams in, 64 KiB pieces, fsyncs as the node does): the
  Tink AES-256-GCM stream on the default node, the SM4-GCM stream on the SM node;
- **audit log**: a checkpoint signed and opened (SM2 against Ed25519 signed notes) and an
  RFC 9162 tree of ``TREE_LEAVES`` leaves built with SM3 against SHA-256;
- **SM2 bindings**: gmssl-pyx (what ``signing.sm2`` uses) against every other compiled
  SM2 binding that is importable here (``tongsuopy``, ``gmssl_fast``); each must first
  verify the GB/T 32918.2 Annex A signature and produce a signature that
  ``openssl pkeyutl`` verifies, else it is reported as failing, not timed. Install a
  candidate into the venv to have it measured (none is a dependency; see the report of
  issue 19 for why gmssl-pyx stays).

Blocks alternate for ``ROUNDS`` rounds and the best rate of each is kept, to blunt the
noise of a shared machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

N = 300
ROUNDS = 3
PACKETS = 60
TREE_LEAVES = 2000
STAGE_MIB = 16
A, B = "420106", "320982"


def _rate(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        fn()
    return N / (time.perf_counter() - start)


def _federation(base: Path, profile: str) -> Any:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "relay_core"))
    from relay_core_support import START, FakeAgreement, FakeClock, Federation, Pki

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


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), 65_536):
        yield bytes(view[i : i + 65_536])


async def _stage(fed: Any, data: bytes) -> float:
    """MiB/s of one staff upload of ``data`` staged at A."""
    digest = hashlib.sha256(data).hexdigest()
    start = time.perf_counter()
    info = await fed.nodes[A].write_attachment(
        digest, len(data), 0, _pieces(data), media_type="application/pdf", name="bench.pdf"
    )
    elapsed = time.perf_counter() - start
    if info is None or info.plain_size != len(data):
        raise AssertionError("the upload did not complete")
    return len(data) / (1 << 20) / elapsed


def _relayed_packets() -> list[dict[str, object]]:
    best = {"default": 0.0, "sm": 0.0}
    staged = {"default": 0.0, "sm": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        feds = {p: _federation(Path(tmp) / p, p) for p in best}
        try:
            for r in range(ROUNDS):
                for profile, fed in feds.items():
                    best[profile] = max(best[profile], asyncio.run(_relay(fed, r * PACKETS)))
            for _ in range(ROUNDS):
                for profile, fed in feds.items():
                    data = os.urandom(STAGE_MIB << 20)  # a new digest every time
                    staged[profile] = max(staged[profile], asyncio.run(_stage(fed, data)))
        finally:
            for fed in feds.values():
                fed.close()
    return [
        {"measure": "relayed packet, default profile", "packets/s": best["default"]},
        {"measure": "relayed packet, SM profile", "packets/s": best["sm"]},
        {"measure": "relayed packet SM / default", "ratio": f"{best['sm'] / best['default']:.4f}"},
        {"measure": f"staging {STAGE_MIB} MiB, default (AES-256-GCM)", "MiB/s": staged["default"]},
        {"measure": f"staging {STAGE_MIB} MiB, SM (SM4-GCM)", "MiB/s": staged["sm"]},
        {"measure": "staging SM / default", "ratio": f"{staged['sm'] / staged['default']:.4f}"},
    ]


def _best(cases: dict[str, Callable[[], object]]) -> dict[str, float]:
    best = dict.fromkeys(cases, 0.0)
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            best[name] = max(best[name], _rate(fn))
    return best


def _audit_rows() -> list[dict[str, object]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from relay.audit.checkpoint import Checkpoint, NoteKey, open_checkpoint, sign_checkpoint
    from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree
    from signing.sm2 import Sm2PrivateKey

    leaves = [f"leaf {i}".encode() for i in range(TREE_LEAVES)]
    cases: dict[str, Callable[[], object]] = {}
    for label, key, tree_hash in (
        ("SM2", Sm2PrivateKey.generate(), SM3_TREE),
        ("Ed25519", ed25519.Ed25519PrivateKey.generate(), SHA256_TREE),
    ):
        root = MemoryTree(leaves[:100], tree_hash=tree_hash).root()
        checkpoint = Checkpoint.for_tree("tongban.node/320982", 100, root, tree_hash)
        note = sign_checkpoint(checkpoint, key).to_bytes()
        note_key = NoteKey.for_private_key(checkpoint.origin, key)
        cases[f"checkpoint sign {label}"] = lambda c=checkpoint, k=key: sign_checkpoint(c, k)  # type: ignore[misc]
        cases[f"checkpoint open {label}"] = lambda n=note, k=note_key: open_checkpoint(n, k)  # type: ignore[misc]
    best = _best(cases)
    trees = {"SM3": 0.0, "SHA-256": 0.0}
    for _ in range(ROUNDS):
        for label, tree_hash in (("SM3", SM3_TREE), ("SHA-256", SHA256_TREE)):
            start = time.perf_counter()
            MemoryTree(leaves, tree_hash=tree_hash).root()
            trees[label] = max(trees[label], TREE_LEAVES / (time.perf_counter() - start))
    rows: list[dict[str, object]] = [{"measure": n, "ops/s": r} for n, r in best.items()]
    rows += [
        {"measure": f"{n} tree, {TREE_LEAVES} leaves", "leaves/s": r} for n, r in trees.items()
    ]
    for op in ("sign", "open"):
        ratio = best[f"checkpoint {op} SM2"] / best[f"checkpoint {op} Ed25519"]
        rows.append({"measure": f"checkpoint {op} SM2 / Ed25519", "ratio": f"{ratio:.4f}"})
    rows.append(
        {"measure": "tree SM3 / SHA-256", "ratio": f"{trees['SM3'] / trees['SHA-256']:.4f}"}
    )
    return rows


# GB/T 32918.2-2016 Annex A (recommended curve): key, message "message digest", r || s
_ANNEX_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
_ANNEX_XY = (
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
_ANNEX_RS = (
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)
_ID = b"1234567812345678"


def _openssl_verifies(point: bytes, raw: bytes, message: bytes) -> bool:
    import subprocess

    from signing.sm2 import Sm2PublicKey, raw_to_der

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "p.pem").write_bytes(Sm2PublicKey(point).to_pem())
        (folder / "m").write_bytes(message)
        (folder / "s").write_bytes(raw_to_der(raw))
        result = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "p.pem", "-rawin",
             "-digest", "sm3", "-in", "m", "-sigfile", "s", "-pkeyopt", f"distid:{_ID.decode()}"],
            capture_output=True, text=True, timeout=30, check=False, cwd=folder,
        )  # fmt: skip
    return "Signature Verified Successfully" in result.stdout


def _binding_candidates() -> dict[str, Any]:
    """name -> (sign(msg) -> r||s, verify(msg, r||s) -> bool, public point, annex check)."""
    import importlib

    from signing.sm2 import DEFAULT_SIGNER_ID, Sm2PrivateKey, Sm2PublicKey

    ours = Sm2PrivateKey.generate()
    annex = Sm2PublicKey(bytes.fromhex(_ANNEX_XY))
    found: dict[str, Any] = {
        "gmssl-pyx": (
            ours.sign_raw,
            lambda m, s: ours.public_key.verify_raw(s, m),
            ours.public_key.point,
            lambda: annex.verify_raw(bytes.fromhex(_ANNEX_RS), b"message digest"),
        )
    }
    assert DEFAULT_SIGNER_ID == _ID
    try:
        ts_ec = importlib.import_module("tongsuopy.crypto.asymciphers.ec")
        ts_hashes = importlib.import_module("tongsuopy.crypto.hashes")
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        from signing.sm2 import raw_to_der

        key = ts_ec.generate_private_key(ts_ec.SM2())
        algorithm = ts_ec.ECDSA(ts_hashes.SM3())
        numbers = key.public_key().public_numbers()

        def ts_sign(m: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(m, algorithm))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        own_public = key.public_key()

        def ts_verify(m: bytes, raw: bytes, public: Any = own_public) -> bool:
            try:
                public.verify(raw_to_der(raw), m, algorithm)
            except Exception:  # any refusal (InvalidSignature, bad input) fails the check
                return False
            return True

        x, y = int(_ANNEX_XY[:64], 16), int(_ANNEX_XY[64:], 16)
        annex_ts = ts_ec.EllipticCurvePublicNumbers(x, y, ts_ec.SM2()).public_key()
        found["tongsuopy"] = (
            ts_sign,
            ts_verify,
            numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big"),
            lambda: ts_verify(b"message digest", bytes.fromhex(_ANNEX_RS), annex_ts),
        )
    except ImportError:
        found["tongsuopy"] = None
    try:
        fast = importlib.import_module("gmssl_fast")
        fkey = fast.SM2.generate()
        fannex = fast.SM2(private_key=_ANNEX_D, public_key="04" + _ANNEX_XY)
        found["gmssl-fast"] = (
            fkey.sign,
            lambda m, s: bool(fkey.verify(m, s)),
            bytes.fromhex(fkey.public_key_hex)[1:],
            lambda: bool(fannex.verify(b"message digest", bytes.fromhex(_ANNEX_RS))),
        )
    except ImportError:
        found["gmssl-fast"] = None
    return found


def _bindings() -> list[dict[str, object]]:
    message = bytes(range(200))
    rows: list[dict[str, object]] = []
    cases: dict[str, Callable[[], object]] = {}
    for name, candidate in _binding_candidates().items():
        if candidate is None:
            rows.append({"measure": f"binding {name}", "check": "not installed"})
            continue
        sign, verify, point, annex = candidate
        signature = sign(message)
        ok = annex() and verify(message, signature) and _openssl_verifies(point, signature, message)
        rows.append(
            {"measure": f"binding {name}", "check": "GB/T annex + OpenSSL ok" if ok else "FAILS"}
        )
        if ok:
            cases[f"{name} sign"] = lambda s=sign: s(message)  # type: ignore[misc]
            cases[f"{name} verify"] = lambda v=verify, sig=signature: v(message, sig)  # type: ignore[misc]
    best = _best(cases)
    rows += [{"measure": n, "ops/s": r} for n, r in best.items()]
    for name in sorted({n.rsplit(" ", 1)[0] for n in best} - {"gmssl-pyx"}):
        for op in ("sign", "verify"):
            ratio = best[f"{name} {op}"] / best[f"gmssl-pyx {op}"]
            rows.append({"measure": f"{name} {op} / gmssl-pyx {op}", "ratio": f"{ratio:.4f}"})
    return rows


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
    best = _best(cases)
    rows: list[dict[str, object]] = [{"measure": n, "ops/s": r} for n, r in best.items()]
    for op in ("sign", "verify"):  # how many times the default profile's rate SM2's is
        for other in ("Ed25519", "P-256"):
            rate = best[f"SM2 {op}"] / best[f"{other} {op}"]
            rows.append({"measure": f"SM2 {op} / {other} {op}", "ratio": f"{rate:.4f}"})
    return rows + _audit_rows() + _bindings() + _relayed_packets()


if __name__ == "__main__":
    for row in run():
        print(row)
