"""Helpers for the fault-injection suite: two real ``tongban serve`` processes (A sends,
B receives) over mutual TLS on 127.0.0.1, a staff-API view of what each side holds, and
the checks every scenario ends with (nothing lost, nothing twice, per-case order kept).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay_http_support import Pki, free_ports, write_agreement, write_config

from relay.config import load_config
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffApiError, StaffClient

A, B = "420106", "320982"
MATTER = "food-business-licence"


class Proc:
    """One ``tongban serve`` process that a test may kill -9 and start again.

    Its stderr goes to ``<config dir>/serve.log`` (appended across restarts), so a
    failure can show what the node said.
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "serve.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self.log.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay.cli", "serve", "--config", str(self.config),
                "--log-level", "WARNING",
                stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )  # fmt: skip

    async def start(self) -> None:
        self.proc = await self._spawn()
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode()
        assert "serving" in line, f"{self.config} did not start: {line!r}\n{self.said()}"

    async def start_or_refuse(self) -> tuple[bool, str]:
        """Start the node; (True, "") when it serves, else (False, exit status and output)."""
        self.proc = await self._spawn()
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await self.proc.stdout.readline()).decode()
        if "serving" in line:
            return True, ""
        async with asyncio.timeout(60):
            rest, _ = await self.proc.communicate()
        return False, f"exit {self.proc.returncode}: {line}{rest.decode()}{self.said()}"

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await self.proc.wait()


@dataclass(frozen=True)
class Federation:
    pki: Pki
    config_a: Path
    config_b: Path
    federation_port_b: int
    public_port_a: int
    public_port_b: int

    @property
    def data_a(self) -> Path:
        return self.config_a.parent / "data"

    @property
    def data_b(self) -> Path:
        return self.config_b.parent / "data"


OUTBOX = '[outbox]\nbase_backoff = "50ms"\nmax_backoff = "500ms"\nbatch_size = 10\n'


def make_federation(pki: Pki, base: Path, *, outbox: str = OUTBOX, extra: str = "",
                    extra_b: str = "") -> Federation:  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)
    agreement = write_agreement(base / "agreement.json", {A: pki.a, B: pki.b}, at=now)
    pa, pb = free_ports(3), free_ports(3)
    extra = f'[agreements]\nfiles = ["{agreement}"]\n' + outbox + extra
    config_a = write_config(base / "a", pki, pki.a, A, ports=(pa[0], pa[1], pa[2]),
                            partners=((B, pki.b / "node.json", f"https://127.0.0.1:{pb[0]}"),),
                            extra=extra)  # fmt: skip
    config_b = write_config(base / "b", pki, pki.b, B, ports=(pb[0], pb[1], pb[2]),
                            partners=((A, pki.a / "node.json", f"https://127.0.0.1:{pa[0]}"),),
                            extra=extra + extra_b)  # fmt: skip
    return Federation(pki, config_a, config_b, pb[0], pa[1], pb[1])


def staff(config: Path, role: StaffRole = StaffRole.READER) -> StaffClient:
    cfg = load_config(config)
    key = load_or_create_token_key(cfg.staff.token_key)
    token = issue_token(key, node_id=cfg.node_id, subject="chaos", roles=[role],
                        now=datetime.now(UTC), ttl=7200)  # fmt: skip
    return StaffClient.for_config(cfg, token)


async def get_or_none(config: Path, path: str, params: Mapping[str, str] | None = None) -> Any:
    """``GET path`` on the node's staff API, or None while the node is down."""
    try:
        return await staff(config).get(path, params)
    except StaffApiError as exc:
        if exc.code != "unreachable":
            raise
        return None


@dataclass(frozen=True)
class Sent:
    packet_id: str
    case_id: str
    seq: int
    digest: str


async def send_backlog(config: Path, cases: int, per_case: int, *, tag: str = "C",
                       filler: int = 0) -> dict[str, Sent]:  # fmt: skip
    """Queue ``cases * per_case`` packets at A for B, the steps of the cases interleaved."""
    sent: dict[str, Sent] = {}
    async with staff(config, StaffRole.CLERK) as clerk:
        for step in range(per_case):
            for case in range(cases):
                content = {"case": case, "step": step, "note": "材" * filler}
                summary = await clerk.send(
                    {"to": B, "case_id": f"{tag}-{case:03d}", "matter": MATTER,
                     "action": "submit", "mode": "proxy_receipt", "content": content},
                    [],
                )  # fmt: skip
                sent[summary["packet_id"]] = Sent(summary["packet_id"], summary["case_id"],
                                                  summary["seq"], summary["digest"])  # fmt: skip
    return sent


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    """Poll the async ``check`` until it returns something truthy (generous deadline)."""
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"waited {timeout}s for {what}") from None
    return result


async def delivered_count(config: Path) -> int | None:
    outbox = await get_or_none(config, "/staff/v1/outbox", {"state": "delivered"})
    return None if outbox is None else len(outbox["items"])


async def wait_drained(config_a: Path, total: int, timeout: float = 240) -> None:
    async def done() -> bool:
        return await delivered_count(config_a) == total

    await wait_for(done, f"all {total} packets delivered", timeout)


async def assert_exactly_once(fed: Federation, sent: Mapping[str, Sent]) -> None:
    """Every packet A sent is in B's inbox once with the digest A signed, nothing else;
    within each case B accepted them in seq order; A's outbox says all delivered."""
    inbox = (await staff(fed.config_b).get("/staff/v1/inbox"))["items"]
    outbox = (await staff(fed.config_a).get("/staff/v1/outbox"))["items"]
    received = [item["packet"]["packet_id"] for item in inbox]
    twice = sorted({p for p in received if received.count(p) > 1})
    assert not twice, f"delivered twice: {twice[:5]}"
    lost = sorted(set(sent) - set(received))
    assert not lost, f"{len(lost)} packets never arrived, e.g. {lost[:5]}"
    assert set(received) == set(sent), "B holds packets A never sent"
    digests = {item["packet"]["packet_id"]: item["packet"]["digest"] for item in inbox}
    changed = [p for p, s in sent.items() if digests[p] != s.digest]
    assert not changed, f"content digest differs at B for {changed[:5]}"
    order: dict[str, list[int]] = defaultdict(list)
    for item in inbox:
        order[item["packet"]["case_id"]].append(item["packet"]["seq"])
    expected: dict[str, list[int]] = defaultdict(list)
    for s in sent.values():
        expected[s.case_id].append(s.seq)
    for case, seqs in order.items():
        assert seqs == sorted(expected[case]), f"case {case} arrived out of order: {seqs}"
    states = {item["packet"]["packet_id"]: item["state"] for item in outbox}
    assert {states[p] for p in sent} == {"delivered"}
