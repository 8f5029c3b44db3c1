"""Relayed packets per second on PostgreSQL with 1 and 2 workers, against SQLite.

Two nodes, A (420106) sending and B (320982) receiving, run as real ``tongban serve``
processes on loopback with a generated development PKI, once per configuration, in the
same run:

- **SQLite, 1 worker** per node (the embedded default): the baseline of every ratio;
- **PostgreSQL, 1 worker** per node: each node on its own database of one throwaway
  cluster (:func:`relay.db.cluster.start_cluster`, ``fsync`` on);
- **PostgreSQL, 2 workers** per node: two ``tongban serve --reuse-port`` processes of
  each node on the same configuration (the kernel spreads connections over them; A's
  workers claim outbox batches with ``FOR UPDATE SKIP LOCKED``).

Each configuration: N packets (``BENCH_PG_PACKETS``, default 2,000, on 200 cases) are
created through A's staff API by 16 concurrent clients while B is down (the creation
rate is reported too), then B starts, and the **relay** figure is the time from B
serving until A's outbox holds nothing open: signed, sealed packets over mutual TLS,
verified, stored and receipted by B, receipts verified and stored by A. The wait is one
indexed query on the node's own database every 20 ms (the staff API is not polled).
After each run the bench checks, in the database the configuration names, that all N
packets are delivered there — a node that silently kept its tables elsewhere fails the
run instead of reporting a figure. CPU per packet is the nodes' user + system time, and
for the relay on PostgreSQL the server's too (postmaster and backends).

What limits the scaling shows in those CPU columns: on PostgreSQL every statement a
store runs is a round trip to the server (a node profiled with cProfile while creating
packets spends most of its wall time in psycopg's ``wait``), so a packet costs the
nodes several times the CPU it costs on SQLite, plus the server's; a second worker
adds throughput only while cores are free for it, its server backend and the
partner's workers. Compare the ratios of one run, on an idle machine, never figures of
different runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.bench_relay_http import _agreement, _client, _cpu_seconds, _create_concurrently, _stop
from bench.bench_relay_http import _config as node_config
from relay.staff_client import StaffApiError

N_PACKETS = int(os.environ.get("BENCH_PG_PACKETS", "2000"))
A, B = "420106", "320982"
OPEN = "SELECT 1 FROM outbox WHERE state IN ('queued', 'in_flight') LIMIT 1"
DELIVERED = "SELECT COUNT(*) FROM outbox WHERE state = 'delivered'"


@dataclass(frozen=True)
class Setup:
    name: str
    workers: int
    postgresql: bool


SETUPS = (
    Setup("SQLite, 1 worker", 1, False),
    Setup("PostgreSQL, 1 worker", 1, True),
    Setup("PostgreSQL, 2 workers", 2, True),
)


def _config(folder: Path, node: str, dirs: dict[str, Path], bundle: Path,
            ports: dict[str, list[int]], agreement: Path, url: str | None) -> Path:  # fmt: skip
    partner = B if node == A else A
    database = f'[database]\nurl = "{url}"\n' if url is not None else ""
    return node_config(folder, node, dirs[node], bundle, ports[node], partner, dirs[partner],
                       ports[partner][0], agreement, extra=database)  # fmt: skip


async def _start(config: Path, reuse_port: bool) -> asyncio.subprocess.Process:
    extra = ["--reuse-port"] if reuse_port else []
    with (config.parent / "serve.log").open("ab") as log:  # what _log_tail reports
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay.cli", "serve", "--config", str(config), *extra,
            "--log-level", "WARNING", stdout=asyncio.subprocess.PIPE, stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = (await proc.stdout.readline()).decode()
    if "serving" not in line:
        await proc.wait()
        raise RuntimeError(f"{config} did not start (exit {proc.returncode}): {line!r}")
    return proc


@asynccontextmanager
async def _workers(
    config: Path,
    count: int,
    started: Callable[[asyncio.subprocess.Process], None] = lambda _: None,
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` workers of one node, started one after the other; ``started`` is called
    as each is ready (the first one serves while the next starts)."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            procs.append(await _start(config, reuse_port=count > 1))
            started(procs[-1])
        yield procs
    finally:
        await _stop(procs)


def _query(config: Path, url: str | None) -> Callable[[str], Any]:
    """Run one read-only statement on the node's database; its first row."""
    if url is None:
        import sqlite3

        db = config.parent / "data" / "relay.sqlite3"

        def on_sqlite(sql: str) -> Any:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return conn.execute(sql).fetchone()
            finally:
                conn.close()

        return on_sqlite
    from relay.db.pg import connect

    conn = connect(url, application_name="bench")
    return lambda sql: conn.execute(sql).fetchone()


async def _drained(query: Callable[[str], Any], timeout: float = 900) -> None:
    async with asyncio.timeout(timeout):
        while query(OPEN) is not None:
            await asyncio.sleep(0.02)


def _log_tail(work: Path) -> str:
    """The last line the nodes logged in this run (the cause of a failure, if any)."""
    lines = [
        line
        for log in sorted(work.glob("*/serve.log"), key=lambda p: p.stat().st_mtime)
        for line in log.read_text(errors="replace").splitlines()
        if line.strip()
    ]
    return f"; last node log line: {lines[-1][:300]}" if lines else ""


def _cpu(procs: list[asyncio.subprocess.Process]) -> float:
    return sum(_cpu_seconds(p.pid) for p in procs)


def _server_cpu(cluster: Any) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster and its children
    (the backends serving the nodes' connections, the WAL writer, the checkpointer)."""
    pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    total = _cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):  # a backend that just ended
                total += _cpu_seconds(int(child))
    return total


async def _one(setup: Setup, work: Path, pki: dict[str, Any], cluster: Any) -> dict[str, float]:
    from relay.loopback import free_ports
    from relay.staff_auth import StaffRole

    ports = {A: free_ports(3), B: free_ports(3)}
    urls = {n: None for n in (A, B)}
    if setup.postgresql:
        tag = f"{setup.workers}w"
        urls = {n: cluster.create_database(f"bench_{n}_{tag}") for n in (A, B)}
    configs = {
        n: _config(work / f"{n}-{setup.workers}-{setup.postgresql}", n, pki["dirs"],
                   pki["bundle"], ports, pki["agreement"], urls[n])
        for n in (A, B)
    }  # fmt: skip
    request = {
        "to": B,
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "张三", "note": "x" * 512},
    }
    query = _query(configs[A], urls[A])
    async with _workers(configs[A], setup.workers) as senders:
        async with _client(configs[A], StaffRole.CLERK) as staff_a:
            cpu0, t0 = _cpu(senders), time.perf_counter()
            await _create_concurrently(staff_a, request, N_PACKETS)
            created, create_cpu = time.perf_counter() - t0, _cpu(senders) - cpu0
        # the catch-up starts when B's first worker serves (a second one starts
        # meanwhile); each process's CPU counts from the moment it is ready
        base: dict[int, float] = {}
        marks: list[float] = []

        def ready(proc: asyncio.subprocess.Process) -> None:
            if not marks:
                marks.append(time.perf_counter())
                marks.append(_server_cpu(cluster) if setup.postgresql else 0.0)
                base.update((p.pid, _cpu([p])) for p in senders)
            base[proc.pid] = _cpu([proc])

        async with _workers(configs[B], setup.workers, ready) as receivers:
            await _drained(query)
            relayed = time.perf_counter() - marks[0]
            relay_cpu = sum(_cpu([p]) - base[p.pid] for p in [*senders, *receivers])
            server = _server_cpu(cluster) - marks[1] if setup.postgresql else 0.0
    delivered = int(query(DELIVERED)[0])
    if delivered != N_PACKETS:
        where = urls[A] or configs[A].parent / "data"
        raise RuntimeError(f"{setup.name}: {delivered} of {N_PACKETS} delivered in {where}")
    return {"created": created, "create_cpu": create_cpu, "relayed": relayed,
            "relay_cpu": relay_cpu, "server_cpu": server}  # fmt: skip


async def _scenario(work: Path) -> list[dict[str, object]]:
    from certs.pki import init_federation, issue_node
    from relay.db.cluster import start_cluster

    now = datetime.now(UTC)
    init_federation(work / "fed", "Bench", now=now)
    dirs = {n: work / n for n in (A, B)}
    for n, d in dirs.items():
        issue_node(work / "fed", n, f"office {n}", "127.0.0.1", d, now=now)
    bundle = work / "bundle.pem"
    bundle.write_bytes((work / "fed" / "root.pem").read_bytes()
                       + (work / "fed" / "crl.pem").read_bytes())  # fmt: skip
    _agreement(work / "agreement.json", dirs, now)
    pki = {"dirs": dirs, "bundle": bundle, "agreement": work / "agreement.json"}
    rows: list[dict[str, object]] = []
    with start_cluster(work) as cluster:
        base: dict[str, float] | None = None
        for setup in SETUPS:
            try:
                got = await _one(setup, work, pki, cluster)
            except (RuntimeError, OSError, TimeoutError, psycopg.Error, StaffApiError) as exc:
                why = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
                said = _log_tail(work)
                rows.append({"measure": f"{setup.name}: not measured", "note": why + said})
                continue
            base = base or got
            rate, create_rate = N_PACKETS / got["relayed"], N_PACKETS / got["created"]
            rows.append({
                "measure": f"{setup.name}: relay {N_PACKETS} packets A→B (catch-up)",
                "seconds": got["relayed"], "per_s": rate,
                "note": f"{rate / (N_PACKETS / base['relayed']):.2f} of SQLite 1 worker; CPU"
                        f" of all workers {got['relay_cpu'] / N_PACKETS * 1000:.2f} ms/packet"
                        + (f", of the PostgreSQL server {got['server_cpu'] / N_PACKETS * 1000:.2f}"
                           if setup.postgresql else ""),
            })  # fmt: skip
            rows.append({
                "measure": f"{setup.name}: create {N_PACKETS} at A, 16 clients",
                "seconds": got["created"], "per_s": create_rate,
                "note": f"{create_rate / (N_PACKETS / base['created']):.2f} of SQLite 1 worker;"
                        f" CPU {got['create_cpu'] / N_PACKETS * 1000:.2f} ms/packet",
            })  # fmt: skip
    return rows


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-pg-relay-") as tmp:
        os.chmod(tmp, 0o755)  # the cluster's folder inside belongs to postgres when root
        return asyncio.run(_scenario(Path(tmp)))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, ensure_ascii=False, default=str))
