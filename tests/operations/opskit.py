"""Helpers for the operations tests: a ``tongban serve`` process with chosen log
options, raw staff-listener requests (``/metrics`` is text, not JSON), real tools."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from chaoskit import Proc

from relay.config import load_config
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient, staff_base_url


class LoggedProc(Proc):
    """``tongban serve`` with extra arguments (log format, level, file)."""

    def __init__(self, config: Path, *args: str) -> None:
        super().__init__(config)
        self.args = args

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self.log.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay.cli", "serve", "--config", str(self.config),
                *self.args,
                stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )  # fmt: skip


def token(config: Path, role: StaffRole = StaffRole.READER, subject: str = "ops") -> str:
    cfg = load_config(config)
    key = load_or_create_token_key(cfg.staff.token_key)
    return issue_token(
        key, node_id=cfg.node_id, subject=subject, roles=[role], now=datetime.now(UTC), ttl=3600
    )


async def staff_request(
    config: Path, method: str, path: str, bearer: str | None, *, body: str | None = None
) -> tuple[int, str]:
    """``method path`` (with a JSON ``body``) on the staff listener; (status, text)."""
    cfg = load_config(config)
    client = StaffClient.for_config(cfg, "unused")
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    connector = aiohttp.TCPConnector(ssl=client.ssl_context or False)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.request(method, staff_base_url(cfg) + path, headers=headers, data=body) as resp,
    ):
        return resp.status, await resp.text()


async def staff_get(config: Path, path: str, bearer: str | None) -> tuple[int, str]:
    return await staff_request(config, "GET", path, bearer)


def tool(name: str, package: str) -> str:
    """The path of a real tool the test drives; fails loudly when it is missing."""
    found = shutil.which(name)
    assert found, f"{name} is missing: install the Debian package {package} (make system-deps)"
    return found
