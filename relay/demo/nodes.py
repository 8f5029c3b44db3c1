"""Real ``tongban serve`` processes for the demo: configuration, start, readiness, stop.

Each node runs as ``python -m relay.cli serve --config node.toml`` in its own session
(so a Ctrl-C in the terminal reaches the demo, which then stops the nodes in order),
with stdout and stderr appended to ``node.log`` beside its ``node.toml``. Readiness is
the node's own ``GET /readyz`` on the public listener.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp

from relay.config import load_config
from relay.demo.context import Demo
from relay.demo.errors import StepFailed
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient

__all__ = [
    "NodeProcess",
    "staff_client",
    "staff_token",
    "start_nodes",
    "stop_nodes",
    "write_config",
]

_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


def write_config(demo: Demo, node_id: str) -> Path:
    """Write the node's ``node.toml``: its keys, the trust bundle, the two partners,
    the signed agreement; public and staff listeners on loopback (public plain HTTP so
    a browser opens the tracking pages without a certificate warning); with
    ``--database``, the node's PostgreSQL URL."""
    path = demo.config_path(node_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = demo.ports[node_id]
    partners = "".join(
        f"""
[[partners]]
id = "{o.node_id}"
descriptor = "{demo.node_dir(o.node_id) / "node.json"}"
federation_url = "https://127.0.0.1:{demo.ports[o.node_id].federation}"
"""
        for o in demo.offices
        if o.node_id != node_id
    )
    text = f"""# written by `tongban demo` for node {node_id}
[node]
id = "{node_id}"
key_dir = "{demo.node_dir(node_id)}"
data_dir = "data"
trust_bundle = "{demo.bundle_path}"

[listeners.federation]
host = "127.0.0.1"
port = {p.federation}

[listeners.public]
host = "127.0.0.1"
port = {p.public}
tls = false

[listeners.staff]
host = "127.0.0.1"
port = {p.staff}

[agreements]
files = ["{demo.agreement_path}"]

[outbox]
base_backoff = "100ms"
max_backoff = "2s"
{partners}"""
    if node_id in demo.database_urls:
        text += f'\n[database]\nurl = "{demo.database_urls[node_id]}"\n'

    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class NodeProcess:
    node_id: str
    config: Path
    log: Path
    process: asyncio.subprocess.Process
    _log_file: IO[bytes]

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def _start(node_id: str, config: Path) -> NodeProcess:
    log = config.parent / "node.log"
    log_file = log.open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(config),
        "--log-level",
        "INFO",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    return NodeProcess(node_id, config, log, process, log_file)


async def _wait_ready(node: NodeProcess, url: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READY_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if not node.running:
                raise StepFailed(
                    f"node {node.node_id} exited with status {node.process.returncode}; "
                    f"log {node.log}:\n{node.log_tail()}"
                )
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise StepFailed(f"node {node.node_id} not ready after {_READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)


async def start_nodes(demo: Demo) -> None:
    """Start every office's node and wait until each answers ``/readyz`` with 200."""
    for office in demo.offices:
        config = write_config(demo, office.node_id)
        demo.nodes[office.node_id] = await _start(office.node_id, config)
    await asyncio.gather(
        *(
            _wait_ready(demo.nodes[o.node_id], demo.endpoints(o.node_id)["public"])
            for o in demo.offices
        )
    )


async def stop_nodes(demo: Demo) -> list[tuple[str, int | None]]:
    """SIGTERM every running node, wait for each (SIGKILL after a timeout);
    returns ``(node id, exit status)`` pairs."""
    nodes = list(demo.nodes.values())
    for node in nodes:
        if node.running:
            node.process.send_signal(signal.SIGTERM)
    results = []
    for node in nodes:
        try:
            await asyncio.wait_for(node.process.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            node.process.kill()
            await node.process.wait()
        node._log_file.close()
        results.append((node.node_id, node.process.returncode))
    demo.nodes.clear()
    return results


def staff_token(demo: Demo, node_id: str, *, subject: str, ttl: float = 8 * 3600.0) -> str:
    """A clerk token for the node's staff API (from its staff-token key)."""
    config = load_config(demo.config_path(node_id))
    key = load_or_create_token_key(config.staff.token_key)
    return issue_token(
        key,
        node_id=node_id,
        subject=subject,
        roles=[StaffRole.CLERK],
        now=datetime.now(UTC),
        ttl=ttl,
    )


def staff_client(demo: Demo, node_id: str, *, subject: str = "demo-clerk") -> StaffClient:
    config = load_config(demo.config_path(node_id))
    return StaffClient.for_config(config, staff_token(demo, node_id, subject=subject))
