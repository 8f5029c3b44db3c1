"""``tongban serve`` as a real process: starts, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from relay_http_support import NOW, Pki, free_ports, write_agreement, write_config

A, B = "420106", "320982"


@contextlib.asynccontextmanager
async def _serving(
    pki: Pki, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``tongban serve`` of node A on SQLite, started and past its first line; the process
    and A's public (health) port. Killed when the block ends if it still runs."""
    agreement = write_agreement(tmp_path / "agreement.json", {A: pki.a, B: pki.b}, at=NOW)
    ports = free_ports(4)
    config = write_config(
        tmp_path / "a",
        pki,
        pki.a,
        A,
        ports=ports[:3],  # type: ignore[arg-type]
        partners=((B, pki.b / "node.json", f"https://127.0.0.1:{ports[3]}"),),
        extra=f'[agreements]\nfiles = ["{agreement}"]\n',
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith(f"tongban: node {A} serving "), line
        yield proc, ports[1]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_starts_answers_and_stops_on_sigterm(pki: Pki, tmp_path: Path) -> None:
    async with _serving(pki, tmp_path) as (proc, port):
        async with aiohttp.ClientSession() as session:
            health = await session.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status == 200
            ready = await session.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status == 200
            assert (await ready.json())["checks"] == {"storage": True, "outbox": True}
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert f"tongban: node {A} stopped" in out.decode()
    assert (tmp_path / "a" / "data" / "relay.sqlite3").exists()


async def test_serve_loads_no_library_it_does_not_use_yet(pki: Pki, tmp_path: Path) -> None:
    """A node on SQLite without a live survey needs neither the PostgreSQL driver
    (psycopg and libpq, ~11 MiB) nor the survey media (aiortc and PyAV with FFmpeg,
    ~28 MiB), nor Pillow before a QR image comes: none is mapped into it, also once its
    storage has been checked."""
    async with _serving(pki, tmp_path) as (proc, port):
        async with aiohttp.ClientSession() as session:
            ready = await session.get(f"http://127.0.0.1:{port}/readyz")
            assert (await ready.json())["checks"] == {"storage": True, "outbox": True}
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "_sqlite3" in maps  # what a loaded extension looks like
        for library in ("psycopg", "libpq", "av.libs", "libavcodec", "aiortc", "PIL/"):
            assert library not in maps, library


async def test_serve_with_a_bad_config_exits_2_naming_file_and_key(
    pki: Pki, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "a", pki, pki.a, A, extra="[limits]\nmax_batch_size = 0\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "tongban: error[config]:" in err.decode()
    assert "node.toml: limits.max_batch_size: must be an integer 1-10000" in err.decode()


async def test_serve_with_another_nodes_key_folder_refuses_to_start(
    pki: Pki, tmp_path: Path
) -> None:
    """[node] id 320982 with 420106's keys started, and served as a node it is not."""
    config = write_config(tmp_path / "b", pki, pki.a, B)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    text = err.decode()
    assert "tongban: error[start]:" in text
    assert f"certificate of node {A}, not of node {B}" in text
