"""``tongban serve`` mounts the survey pages and signalling on the public listener."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from certs.pki import init_federation, issue_node
from remote_survey.nodehub import JOIN_KEY_FILE


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def test_serve_answers_survey_pages_and_refuses_unknown_sessions(tmp_path: Path) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    init_federation(tmp_path / "fed", "Hubei", now=base)
    node = tmp_path / "node"
    issue_node(tmp_path / "fed", "420106", "武昌区政务服务中心", "127.0.0.1", node, now=base)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((tmp_path / "fed" / "root.pem").read_bytes())
    ports = _ports(3)
    config = tmp_path / "node.toml"
    config.write_text(
        "\n".join(
            [
                "[node]",
                'id = "420106"',
                f'key_dir = "{node}"',
                'data_dir = "data"',
                f'trust_bundle = "{bundle}"',
                "[listeners.federation]",
                f"port = {ports[0]}",
                "[listeners.public]",
                f"port = {ports[1]}",
                "[listeners.staff]",
                f"port = {ports[2]}",
            ]
        )
        + "\n",
        encoding="utf-8",
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
        assert line.startswith("tongban: node 420106 serving "), line
        public = f"http://127.0.0.1:{ports[1]}"
        async with aiohttp.ClientSession() as http:
            page = await http.get(f"{public}/survey/v1/inspector")
            assert page.status == 200
            assert "inspector.js" in await page.text()
            async with http.ws_connect(f"{public}/survey/v1/ws?token=x.y.z&device=d") as ws:
                msg = await ws.receive(timeout=20)
                assert (msg.data, msg.extra) == (4404, "wrong-session")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (node / JOIN_KEY_FILE).stat().st_mode & 0o077 == 0
