"""``tongban serve`` processes witness each other on their own, at ``[audit]`` intervals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from audit_node_support import (
    IDS,
    Pki,
    RunningNode,
    base_leaves,
    rewrite_log,
    write_configs,
)

from relay.audit.checkpoint import origin_for
from relay.audit.state import AuditState
from relay.audit.witness import PartnerStatus
from relay.tls import client_context

A, B, _ = IDS


class Served:
    """A ``tongban serve`` process for one node, its stderr collected."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = b""
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay.cli",
            "serve",
            "--config",
            str(self.node.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode()
        assert "serving" in line, line
        self._drain = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        """Keep reading stderr so a chatty node never blocks on a full pipe."""
        assert self.proc is not None
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await self.proc.wait()
            if self._drain is not None:
                await self._drain
        assert self.proc.returncode == 0, self.stderr.decode()


async def _until(check: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(90):  # generous: the suite runs on 2 loaded cores
            while not check():
                await asyncio.sleep(0.1)  # the node's own tasks run in another process
    except TimeoutError:
        raise AssertionError(f"timed out waiting: {what}") from None


def _state(node: RunningNode) -> AuditState:
    return AuditState(node.db)


def _cosigned(witness: RunningNode, origin: str, size: int) -> bool:
    """``witness`` cosigned ``origin``'s checkpoint of ``size`` leaves, and ``origin``
    cosigned ``witness``'s current checkpoint (it came back through POST cosign)."""
    state = _state(witness)
    try:
        held = state.partner(origin).checkpoint
        mine = state.log.size()
        return held is not None and held.size == size and bool(state.cosignatures(mine))
    finally:
        state.close()


def _delivered(node: RunningNode) -> bool:
    """A packet ``node`` sent was accepted by B (B's receipt is in ``node``'s log)."""
    state = _state(node)
    try:
        return bool(state.exchanged_with(B))
    finally:
        state.close()


def _halted(witness: RunningNode, origin: str) -> bool:
    state = _state(witness)
    try:
        return state.partner(origin).status is PartnerStatus.HALTED
    finally:
        state.close()


async def test_serve_cosigns_on_its_interval_and_halts_a_partner_that_rewrote_its_log(
    pki: Pki, tmp_path: Path
) -> None:
    nodes = write_configs(pki, tmp_path, (A, B), interval="200ms")
    a, b = Served(nodes[A]), Served(nodes[B])
    try:
        await a.start()
        await b.start()
        client = nodes[A].staff()
        # tongban serve runs the case layer: open a case, its submit packet goes to B
        port = nodes[A].config.staff_listener.port
        async with (
            aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {nodes[A].token()}"}
            ) as session,
            session.post(
                f"https://127.0.0.1:{port}/staff/v1/cases",
                json={"matter": "food-business-licence", "handling": B, "case_id": "CASE-1"},
                ssl=client_context(pki.bundle),
            ) as resp,
        ):
            assert resp.status == 201, await resp.text()
        await _until(lambda: _delivered(nodes[A]), "packet delivered")
        # both logs hold two leaves (packet, receipt); each node cosigns the other's
        # checkpoint and hands it back
        size = 2 + base_leaves(nodes)  # after the agreement-event leaves
        await _until(lambda: _cosigned(nodes[A], origin_for(B), size), "A cosigned B")
        await _until(lambda: _cosigned(nodes[B], origin_for(A), size), "B cosigned A")

        await b.stop()
        rewrite_log(nodes[B].db, change=0)
        await b.start()
        await _until(lambda: _halted(nodes[A], origin_for(B)), "A halted B")
        alerts = await client.get("/staff/v1/alerts")
        # other sources (e.g. the calendar's, in December) may stand beside the fork alert
        audit = [x for x in alerts["alerts"] if x["source"] == "audit"]
        assert [x["origin"] for x in audit] == [origin_for(B)]
        await a.stop()
        assert b"ERROR tongban.relay.audit" in a.stderr
        assert b"fork detected for tongban.node/320982" in a.stderr
    finally:
        for served in (a, b):
            if served.proc is not None and served.proc.returncode is None:
                served.proc.kill()
                await served.proc.wait()
