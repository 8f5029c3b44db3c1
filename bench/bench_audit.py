"""Audit log at a million leaves: append rate, proof sizes and proof generation time.

The million-leaf log is a real SQLite file on tmpfs (``/dev/shm``) so the rows show the
CPU and SQLite cost of the tree rather than this machine's shared virtual disk; the
same comparison is repeated at 50,000 leaves on the disk (``$TMPDIR``).

Baseline: the same leaf bytes inserted into a plain SQLite table (``idx INTEGER PRIMARY
KEY, data BLOB``) with the same batching (1,000 leaves per transaction), the same WAL
journal and the same ``synchronous`` setting (SQLite's default, FULL) in the same run;
``ratio`` is baseline rate / measured rate (the price of the Merkle tree), from wall time;
``cpu_ratio`` is the same from this process's CPU time, steadier on a shared machine. Leaves are
realistic ``packet-received`` leaves (canonical JSON, about 530 bytes); their encoding is
done before each batch and not timed. Files live in a temporary directory, deleted
afterwards.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import Checkpoint, origin_for, sign_checkpoint
from relay.audit.leaves import AuditLeaf, LeafKind, PacketLeaf, encode_leaf
from relay.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from relay.audit.store import AuditStore, append, append_many, open_database

LEAVES = 1_000_000
BATCH = 1_000
MANY_LEAVES = 100_000
DISK_LEAVES = 50_000
PROOFS = 2_000
_DIGEST_PLACEHOLDER = "f" * 64


def _template() -> bytes:
    packet = PacketLeaf(
        digest=_DIGEST_PLACEHOLDER, id="pkt-0000000000", case="case-2026-000000000",
        from_node="420981", to_node="420106", matter="11420000MB0000000X/0001",
        action="submit", agreement_id="hb-crossprov-2026", agreement_version=3,
        agreement_digest=hashlib.sha256(b"agreement").hexdigest(), seq=7,
        prev=hashlib.sha256(b"prev").hexdigest(), created=1764291723,
    )  # fmt: skip
    return encode_leaf(AuditLeaf(LeafKind.PACKET_RECEIVED, "420106", 1764291723, packet))


def _batch(template: bytes, start: int, n: int) -> list[bytes]:
    head, tail = template.split(_DIGEST_PLACEHOLDER.encode())
    return [
        head + hashlib.sha256(i.to_bytes(8, "big")).hexdigest().encode() + tail
        for i in range(start, start + n)
    ]


def _timed_batches(
    conn: sqlite3.Connection, n: int, write: Callable[[list[bytes]], object]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent writing ``n`` leaves."""
    template, wall, cpu = _template(), 0.0, 0.0
    for start in range(0, n, BATCH):
        leaves = _batch(template, start, min(BATCH, n - start))
        began, began_cpu = time.perf_counter(), time.process_time()
        with conn:
            conn.execute("BEGIN")
            write(leaves)
        wall += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
    return wall, cpu


def _baseline(path: Path, n: int) -> tuple[float, float]:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE plain (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    counter = iter(range(n))

    def write(leaves: list[bytes]) -> object:
        return conn.executemany(
            "INSERT INTO plain (idx, data) VALUES (?, ?)", [(next(counter), d) for d in leaves]
        )

    times = _timed_batches(conn, n, write)
    conn.close()
    return times


def _per_second(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def _proof_rows(store: AuditStore) -> list[dict[str, object]]:
    rng = random.Random(2026)  # benchmark sampling, not security
    size = store.size()
    root = store.root(size)
    rows: list[dict[str, object]] = []

    began = time.perf_counter()
    for _ in range(20):
        store.root(size)
    root_ms = (time.perf_counter() - began) / 20 * 1000
    rows.append({"case": f"root({size:,})", "ms_each": root_ms})

    indexes = [rng.randrange(size) for _ in range(PROOFS)]
    began = time.perf_counter()
    proofs = [store.inclusion_proof(i, size) for i in indexes]
    gen = time.perf_counter() - began
    began = time.perf_counter()
    for i, proof in zip(indexes, proofs, strict=True):
        verify_inclusion(store.leaf_hash(i), i, size, proof, root)
    ver = time.perf_counter() - began
    lengths = [len(p) for p in proofs]
    rows.append(
        {
            "case": f"inclusion proof @ {size:,}",
            "hashes_mean": sum(lengths) / len(lengths),
            "hashes_max": max(lengths),
            "bytes_max": 32 * max(lengths),
            "per_second": _per_second(PROOFS, gen),
            "ms_each": gen / PROOFS * 1000,
            "verify_per_second": _per_second(PROOFS, ver),
        }
    )

    olds = [rng.randrange(1, size) for _ in range(PROOFS // 4)]
    began = time.perf_counter()
    cproofs = [(old, store.consistency_proof(old, size)) for old in olds]
    gen = time.perf_counter() - began
    old_roots = {old: store.root(old) for old in olds}
    began = time.perf_counter()
    for old, proof in cproofs:
        verify_consistency(old, size, proof, old_roots[old], root)
    ver = time.perf_counter() - began
    lengths = [len(p) for _, p in cproofs]
    rows.append(
        {
            "case": f"consistency proof old→{size:,}",
            "hashes_mean": sum(lengths) / len(lengths),
            "hashes_max": max(lengths),
            "bytes_max": 32 * max(lengths),
            "per_second": _per_second(len(olds), gen),
            "ms_each": gen / len(olds) * 1000,
            "verify_per_second": _per_second(len(olds), ver),
        }
    )
    note = sign_checkpoint(
        Checkpoint(origin_for("420106"), size, root), Ed25519PrivateKey.generate()
    ).to_bytes()
    rows.append({"case": "signed checkpoint note", "bytes_max": len(note)})
    assert leaf_hash(store.leaf(0)) == store.leaf_hash(0)
    return rows


def _append_rows(medium: str, work: Path, n: int) -> tuple[list[dict[str, object]], Path]:
    base_s, base_cpu = _baseline(work / "plain.db", n)
    plain_bytes = (work / "plain.db").stat().st_size
    conn = open_database(work / "audit.db")
    conn.execute("PRAGMA synchronous=NORMAL")
    audit_s, audit_cpu = _timed_batches(conn, n, lambda leaves: [append(conn, d) for d in leaves])
    conn.close()  # checkpoints the WAL into the file
    audit_bytes = (work / "audit.db").stat().st_size
    rows: list[dict[str, object]] = [
        {
            "case": f"{medium}: baseline plain insert",
            "leaves": n,
            "seconds": base_s,
            "per_second": _per_second(n, base_s),
            "ratio": 1.0,
            "cpu_seconds": base_cpu,
            "cpu_ratio": 1.0,
            "bytes_per_leaf": plain_bytes / n,
        },
        {
            "case": f"{medium}: audit append()",
            "leaves": n,
            "seconds": audit_s,
            "per_second": _per_second(n, audit_s),
            "ratio": audit_s / base_s,
            "cpu_seconds": audit_cpu,
            "cpu_ratio": audit_cpu / base_cpu,
            "bytes_per_leaf": audit_bytes / n,
        },
    ]
    return rows, work / "audit.db"


def run() -> list[dict[str, object]]:
    shm = Path("/dev/shm")
    rows: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory(
            prefix="bench-audit-", dir=shm if shm.is_dir() else None
        ) as ram,
        tempfile.TemporaryDirectory(prefix="bench-audit-") as disk,
    ):
        medium = "tmpfs" if shm.is_dir() else "disk"
        big_rows, big_db = _append_rows(medium, Path(ram), LEAVES)
        rows.extend(big_rows)

        many = open_database(Path(ram) / "many.db")
        many.execute("PRAGMA synchronous=NORMAL")
        many_s, many_cpu = _timed_batches(
            many, MANY_LEAVES, lambda leaves: append_many(many, leaves)
        )
        many.close()
        rows.append(
            {
                "case": f"{medium}: audit append_many()",
                "leaves": MANY_LEAVES,
                "seconds": many_s,
                "per_second": _per_second(MANY_LEAVES, many_s),
                "ratio": many_s * LEAVES / MANY_LEAVES / float(str(rows[0]["seconds"])),
                "cpu_seconds": many_cpu,
                "cpu_ratio": many_cpu * LEAVES / MANY_LEAVES / float(str(rows[0]["cpu_seconds"])),
            }
        )
        disk_rows, _ = _append_rows("disk", Path(disk), DISK_LEAVES)
        rows.extend(disk_rows)

        conn = sqlite3.connect(big_db)
        rows.extend(_proof_rows(AuditStore(conn)))
        conn.close()
    return rows
