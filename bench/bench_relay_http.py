"""Two ``tongban serve`` processes on loopback: packets per second and a 1 GiB attachment.

Both nodes run as real processes (``python -m relay.cli serve``) with a generated
development PKI and an agreement signed by both; the benchmark drives node A through
its staff API, exactly as ``tongban send`` does, and watches A's outbox and B's inbox.

- **packets**: N packets are created through A's staff API while B is down (the
  creation rate), then B starts and A's outbox catches up: the delivery rate is N /
  (B serving → last packet delivered), over mutual TLS with batches, signed receipts
  and SQLite WAL on both sides (it also shows that a partner that was down gets
  everything once back). The baseline is the crypto-only rate of *the same packets*,
  measured in the same run: verify the outer JWS and open + verify the sealed inner
  content, as B's pipeline must, in-process.
- **1 GiB attachment**: staged at A (streamed, sealed at rest), uploaded to B
  (streamed, resumable), checked by B. Peak memory is each node process's VmHWM
  (/proc/<pid>/status) — the issue's target is under 150 MiB per node. Baseline: SHA-256
  of the same file in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

N_PACKETS = 500
SIZE = 1 << 30
MIB = 1 << 20
A, B = "420106", "320982"


def _free_ports(count: int) -> list[int]:
    from relay.loopback import free_ports

    return free_ports(count)


def _agreement(path: Path, node_dirs: dict[str, Path], at: datetime) -> None:
    from agreements.catalog import default_catalog
    from agreements.draft import draft_from_template, reciprocal_template
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement
    from signing.nodedir import load_node_keys

    template = reciprocal_template(
        list(node_dirs),
        agreement_id="bench-relay-http",
        # the nodes run on the wall clock: valid from a year before now for three years
        valid_from=(datetime.now(UTC) - timedelta(days=365)).isoformat(),
        valid_until=(datetime.now(UTC) + timedelta(days=3 * 365)).isoformat(),
        title_zh="基准测试协议",
        title_en="Benchmark agreement",
    )
    agreement = draft_from_template(template, default_catalog())
    signed = SignedAgreement(agreement)
    for node_dir in node_dirs.values():
        seal = load_node_keys(node_dir).seal
        signed = signed.with_signature(sign_agreement(agreement, seal, at=at))
    path.write_bytes(signed.to_bytes())


def _config(
    folder: Path,
    node: str,
    node_dir: Path,
    bundle: Path,
    ports: list[int],
    partner: str,
    partner_dir: Path,
    partner_port: int,
    agreement: Path,
) -> Path:
    folder.mkdir(parents=True)
    text = f"""
[node]
id = "{node}"
key_dir = "{node_dir}"
data_dir = "data"
trust_bundle = "{bundle}"
[listeners.federation]
port = {ports[0]}
[listeners.public]
port = {ports[1]}
[listeners.staff]
port = {ports[2]}
[[partners]]
id = "{partner}"
descriptor = "{partner_dir / "node.json"}"
federation_url = "https://127.0.0.1:{partner_port}"
[agreements]
files = ["{agreement}"]
[outbox]
base_backoff = "100ms"
max_backoff = "1s"
[limits]
max_attachment_bytes = {2 * SIZE}
"""
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def _start(config: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(config),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = (await proc.stdout.readline()).decode()
    if "serving" not in line:
        raise RuntimeError(f"node did not start: {line!r}")
    return proc


async def _wait_delivered(client: Any, count: int) -> None:
    async with asyncio.timeout(600):
        while True:
            done = await client.get("/staff/v1/outbox", {"state": "delivered"})
            if len(done["items"]) >= count:
                return
            await asyncio.sleep(0.05)


async def _scenario(work: Path) -> list[dict[str, object]]:
    from certs.pki import init_federation, issue_node
    from relay.staff_auth import StaffRole

    now = datetime.now(UTC)
    init_federation(work / "fed", "Bench", now=now)
    dirs = {n: work / n for n in (A, B)}
    for n, d in dirs.items():
        issue_node(work / "fed", n, f"office {n}", "127.0.0.1", d, now=now)
    bundle = work / "bundle.pem"
    bundle.write_bytes(
        (work / "fed" / "root.pem").read_bytes() + (work / "fed" / "crl.pem").read_bytes()
    )
    _agreement(work / "agreement.json", dirs, now)
    pa, pb = _free_ports(3), _free_ports(3)
    cfg_a = _config(
        work / "cfg-a", A, dirs[A], bundle, pa, B, dirs[B], pb[0], work / "agreement.json"
    )
    cfg_b = _config(
        work / "cfg-b", B, dirs[B], bundle, pb, A, dirs[A], pa[0], work / "agreement.json"
    )
    node_a = await _start(cfg_a)
    node_b: asyncio.subprocess.Process | None = None
    rows: list[dict[str, object]] = []
    try:
        async with _client(cfg_a, StaffRole.CLERK) as staff_a:
            request = {
                "to": B,
                "matter": "food-business-licence",
                "action": "submit",
                "mode": "proxy_receipt",
                "content": {"applicant": "张三", "note": "x" * 512},
            }
            started = time.perf_counter()
            ids = []
            for i in range(N_PACKETS):
                sent = await staff_a.send({**request, "case_id": f"BENCH-{i:05d}"}, [])
                ids.append(sent["packet_id"])
            created = time.perf_counter() - started
            rows.append(
                {
                    "measure": f"create {N_PACKETS} packets at A (staff API, B down)",
                    "seconds": created,
                    "per_s": N_PACKETS / created,
                    "note": "seal + sign + durable queue, one HTTPS request each",
                }
            )
            node_b = await _start(cfg_b)
            started = time.perf_counter()
            await _wait_delivered(staff_a, N_PACKETS)
            delivered = time.perf_counter() - started
            tokens = [(await staff_a.get(f"/staff/v1/packets/{pid}"))["packet_jws"] for pid in ids]
            baseline = _crypto_only(tokens, dirs[B], bundle)
            rows.append(
                {
                    "measure": f"deliver {N_PACKETS} packets A→B over mTLS once B is back",
                    "seconds": delivered,
                    "per_s": N_PACKETS / delivered,
                    "note": "catch-up after an outage; includes up to 1 s of backoff",
                }
            )
            rows.append(
                {
                    "measure": "baseline: same packets, receiver crypto only (verify + open)",
                    "seconds": baseline,
                    "per_s": N_PACKETS / baseline,
                    "note": f"delivery runs at {baseline / delivered:.1%} of this rate",
                }
            )

            big = work / "big.bin"
            block = os.urandom(MIB)
            with big.open("wb") as fh:
                for i in range(SIZE // MIB):
                    fh.write(hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:])
            sha = hashlib.sha256()
            t0 = time.perf_counter()
            with big.open("rb") as fh:
                while data := fh.read(MIB):
                    sha.update(data)
            sha_seconds = time.perf_counter() - t0

            t0 = time.perf_counter()
            await staff_a.send({**request, "case_id": "BENCH-BIG"}, [big])
            staged = time.perf_counter() - t0
            await _wait_delivered(staff_a, N_PACKETS + 1)
            big_seconds = time.perf_counter() - t0
            rows.append(
                {
                    "measure": "1 GiB attachment A→B (stage at A + upload + check at B)",
                    "seconds": big_seconds,
                    "per_s": SIZE / MIB / big_seconds,
                    "note": f"MiB/s; staging at A {staged:.1f} s; "
                    f"peak RSS A {_vm_hwm_mib(node_a.pid):.0f} MiB, "
                    f"B {_vm_hwm_mib(node_b.pid):.0f} MiB",
                }
            )
            rows.append(
                {
                    "measure": "baseline: SHA-256 of the same 1 GiB file",
                    "seconds": sha_seconds,
                    "per_s": SIZE / MIB / sha_seconds,
                    "note": "MiB/s",
                }
            )
    finally:
        procs = [p for p in (node_a, node_b) if p is not None]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 60)
    return rows


def _client(cfg: Path, role: Any) -> Any:
    from relay.config import load_config
    from relay.staff_auth import issue_token, load_or_create_token_key
    from relay.staff_client import StaffClient

    config = load_config(cfg)
    key = load_or_create_token_key(config.staff.token_key)
    token = issue_token(
        key, node_id=config.node_id, subject="bench", roles=[role], now=datetime.now(UTC), ttl=3600
    )
    return StaffClient.for_config(config, token)


def _crypto_only(tokens: list[str], b_dir: Path, bundle: Path) -> float:
    from relay.core.packets import open_content, verify_packet
    from signing.certificates import TrustBundle
    from signing.hpke import HpkePrivateKey

    trust = TrustBundle.from_pem(bundle.read_bytes())
    keys = [HpkePrivateKey.from_pem(p.read_bytes()) for p in sorted(b_dir.glob("hpke-*.key"))]
    at = datetime.now(UTC)
    t0 = time.perf_counter()
    for token in tokens:
        verified = verify_packet(token, trust, at=at)
        open_content(verified.facts, keys, trust, at=at)
    return time.perf_counter() - t0


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-relay-http-") as tmp:
        return asyncio.run(_scenario(Path(tmp)))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, ensure_ascii=False, default=str))
