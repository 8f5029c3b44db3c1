"""Helpers for the several-workers tests: ``tongban serve`` workers of one node, and a
real HAProxy (Debian ``haproxy``) in front of them in TCP mode on loopback ports.

HAProxy passes the TLS bytes through untouched, so a partner's mutual TLS ends at a
worker: the partner sees the node's certificate, the worker sees the partner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chaoskit import Proc


class Worker(Proc):
    """One ``tongban serve`` worker; its stderr goes to ``log`` (appended)."""

    def __init__(self, config: Path, log: Path, *args: str, level: str = "INFO") -> None:
        super().__init__(config)
        self.log = log
        self.args = args
        self.level = level

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self.log.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay.cli", "serve", "--config", str(self.config),
                "--log-level", self.level, *self.args,
                stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )  # fmt: skip

    def served(self, path: str) -> int:
        """How many requests for ``path`` this worker's access log shows."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return sum(1 for line in text.splitlines() if "access" in line and f" {path} " in line)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        raise AssertionError(
            "haproxy not found: install the Debian package haproxy (make system-deps does)"
        )
    return found


@dataclass
class HaProxy:
    """A running HAProxy: ``port`` on 127.0.0.1 spread over ``servers`` (name → host:port)."""

    port: int
    servers: dict[str, tuple[str, int]]
    folder: Path
    proc: subprocess.Popen[bytes]

    @property
    def stats_socket(self) -> Path:
        return self.folder / "stats.sock"

    def sessions(self) -> dict[str, int]:
        """Total connections HAProxy has passed to each server (its ``stot`` counter)."""
        out = self._ask("show stat")
        lines = out.splitlines()
        header = lines[0].lstrip("# ").split(",")
        svname, stot = header.index("svname"), header.index("stot")
        counts: dict[str, int] = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > stot and fields[svname] in self.servers:
                counts[fields[svname]] = int(fields[stot] or 0)
        return counts

    def _ask(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.stats_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def said(self) -> str:
        return (self.folder / "haproxy.log").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def haproxy(
    folder: Path, port: int, servers: dict[str, tuple[str, int]], *, balance: str = "roundrobin"
) -> Iterator[HaProxy]:
    """Run HAProxy in TCP mode on 127.0.0.1:``port`` in front of ``servers``, with a TCP
    health check every 100 ms (a dead worker is out after one failed check) and
    connections to a dead server redispatched to another."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "global",
        f"    stats socket {folder / 'stats.sock'} mode 600 level admin",
        "    maxconn 2000",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    retries 3",
        "    option redispatch",
        "frontend federation",
        f"    bind 127.0.0.1:{port}",
        "    default_backend workers",
        "backend workers",
        f"    balance {balance}",
        *(f"    server {name} {host}:{p} check inter 100ms fall 1 rise 2"
          for name, (host, p) in servers.items()),
    ]  # fmt: skip
    config = folder / "haproxy.cfg"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, f"haproxy refused its config: {check.stdout}{check.stderr}"
    with (folder / "haproxy.log").open("ab") as log:
        proc = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(config)], stdout=log, stderr=log
        )
    running = HaProxy(port, servers, folder, proc)
    try:
        _wait_listening("127.0.0.1", port, proc)
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"haproxy exited with {proc.returncode}"
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not listen on {host}:{port}") from None
            time.sleep(0.05)


async def leads(config: Path) -> bool:
    """Whether the worker serving ``config``'s staff listener reports that it leads
    (``tongban_worker_leader`` on ``/metrics``)."""
    from datetime import UTC, datetime

    import aiohttp

    from relay.config import load_config
    from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
    from relay.staff_client import staff_base_url
    from relay.tls import client_context
    from signing.certificates import TrustBundle

    cfg = load_config(config)
    key = load_or_create_token_key(cfg.staff.token_key)
    token = issue_token(key, node_id=cfg.node_id, subject="workers", roles=[StaffRole.READER],
                        now=datetime.now(UTC), ttl=600)  # fmt: skip
    context = client_context(TrustBundle.from_pem(cfg.trust_bundle.read_bytes()))
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(f"{staff_base_url(cfg)}/metrics", ssl=context) as response,
    ):
        assert response.status == 200, await response.text()
        text = await response.text()
    (line,) = [x for x in text.splitlines() if x.startswith("tongban_worker_leader ")]
    return float(line.split()[1]) == 1.0
