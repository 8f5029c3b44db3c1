"""The scenario and its run: steps in order, then the node listing and the wait.

:data:`SCENARIO` is the list of steps; adding a step is adding one entry. The run stops
at the first failed step (later steps build on earlier ones) and reports it; the nodes
are always stopped (SIGTERM, wait) before :func:`run_demo` returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from relay.demo.agreement import agreement_step
from relay.demo.casework import cases_step
from relay.demo.console_users import demo_console_users
from relay.demo.context import Demo
from relay.demo.database import database_step, prepare_schemas
from relay.demo.errors import DemoError
from relay.demo.nodes import staff_token, stop_nodes
from relay.demo.relaying import relay_step
from relay.demo.report import Reporter
from relay.demo.trust import pki_step, signing_step
from relay.demo.workdir import prepare_workdir
from relay.staff_client import StaffApiError
from signing.errors import SigningError

__all__ = ["SCENARIO", "Step", "run_demo"]

StepFn = Callable[[Demo, Reporter], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    zh: str
    en: str
    run: StepFn


SCENARIO: tuple[Step, ...] = (
    Step("公钥基础设施：三个省级联盟", "PKI: three provincial federations", pki_step),
    Step(
        "签名核心：签名、验签、抗量子加密",
        "Signing core: sign, verify, post-quantum sealing",
        signing_step,
    ),
    Step(
        "多方互认协议：起草、逐方签署、授权判定",
        "Multilateral agreement: draft, sign in turn, authorize",
        agreement_step,
    ),
    Step(
        "联盟中继：三个节点之间的办件包与回执",
        "Federation: a case packet and its receipt between three nodes",
        relay_step,
    ),
    Step(
        "跨省办件：异地收件、远程办理、电子证照、委托勘查、好差评",
        "Cross-province cases: hand-in, remote handling, e-licence, delegated survey, rating",
        cases_step,
    ),
)

DATABASE_STEP = Step(
    "数据库：各办公室的数据都在 PostgreSQL 中",
    "Database: every office's data is in PostgreSQL",
    database_step,
)
"""Appended to the scenario when the demo runs on PostgreSQL (``--database``)."""

# Failures a step may end with, reported as a failed step (anything else is a bug
# and propagates with its traceback, after the nodes are stopped).
_STEP_ERRORS = (DemoError, SigningError, StaffApiError, OSError, TimeoutError, ValueError)


async def _run_steps(demo: Demo, out: Reporter, steps: tuple[Step, ...]) -> bool:
    total = len(steps) + 1
    for number, step in enumerate(steps, 1):
        out.step(number, total, step.zh, step.en)
        started = time.perf_counter()
        try:
            await step.run(demo, out)
        except _STEP_ERRORS as exc:
            out.failed("此步骤失败", f"step failed: {type(exc).__name__}: {exc}")
            return False
        out.info(f"({time.perf_counter() - started:.1f} s)")
    return True


def _listing(demo: Demo, out: Reporter, total: int) -> None:
    out.step(total, total, "节点地址与职员令牌", "Node URLs and staff tokens")
    bundle = demo.bundle_path
    for office in demo.offices:
        urls = demo.endpoints(office.node_id)
        out.plain(f"  {office.short} {office.place_en}")
        out.info(f"public     {urls['public']}   (/track, /verify, /readyz, node.json)")
        out.info(f"staff      {urls['staff']}  (bearer token below; CA: {bundle})")
        out.info(f"federation {urls['federation']}  (mutual TLS, partners only)")
        if office.node_id in demo.nodes:
            token = staff_token(demo, office.node_id, subject="demo-visitor")
            out.info(f"token      {token}")
    users = demo_console_users(demo, time.time())
    if users:
        out.plain("  职员工作台 staff console (sign in with the user and password below):")
    for user in users:
        out.info(f"{user.node_id} {user.url}  user {user.name}  password {user.password}")
    if users:
        out.info(f"(also in {demo.root / 'console-users.txt'})")
    for url in demo.facts.get("tracking", []):
        out.plain(f"  申请人查询 applicant tracking: {url}")
    for role, url in demo.facts.get("survey", []):
        out.plain(f"  远程勘查 remote survey ({role}): {url}")
    first = demo.offices[0].node_id
    out.plain(
        f'\n  e.g. curl --cacert {bundle} -H "Authorization: Bearer $TOKEN" '
        f"{demo.endpoints(first)['staff']}/staff/v1/outbox"
    )


async def _wait_for_interrupt(announce: Callable[[], None]) -> None:
    """Install the handler, then ``announce`` (so a Ctrl-C sent as soon as the prompt
    is read is never the default KeyboardInterrupt), then wait for SIGINT (SIGTERM and
    SIGHUP end the wait through :class:`_Termination`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        announce()
        await stop.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class _Termination:
    """SIGTERM and SIGHUP (a ``kill``, a closed terminal) stop the demo as a Ctrl-C does,
    at any point of its run: they cancel the run, whose ``finally`` stops the nodes.
    Without this, their default action ended the process at once and left the nodes it
    had started running. A signal that comes while the nodes are being stopped is only
    noted: the stop goes on."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.stopping = False
        self._task: asyncio.Task[object] | None = None

    def __enter__(self) -> _Termination:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received = self.received or sig
        if not self.stopping and self._task is not None:
            self._task.cancel()


async def run_demo(
    workdir: Path,
    out: Reporter,
    *,
    once: bool,
    steps: tuple[Step, ...] = SCENARIO,
    sm_federations: frozenset[str] = frozenset(),
    database: str | None = None,
) -> bool:
    """Run ``steps`` in a fresh ``workdir``; unless ``once``, keep the nodes running
    until SIGINT/SIGTERM. True when every step held. ``sm_federations`` names the
    provinces made in the SM profile. With ``database`` (a PostgreSQL URL) every node
    keeps its tables in its own fresh schema there, and a last step checks they did.
    Raises :class:`NotADemoFolder` or :class:`NotADemoDatabase`."""
    root = prepare_workdir(workdir)
    demo = Demo.create(root, sm_federations=sm_federations, database=database)
    if database is not None:
        demo.database_urls.update(prepare_schemas(database, (o.node_id for o in demo.offices)))
        steps = (*steps, DATABASE_STEP)
    with _log_to(root / "demo.log"):
        return await _run(demo, out, once=once, steps=steps)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Library log lines (the precise causes of refusals) go to a file, not the screen."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


async def _run(demo: Demo, out: Reporter, *, once: bool, steps: tuple[Step, ...]) -> bool:
    root = demo.root
    storage = "embedded default (SQLite, " if demo.database is None else "on PostgreSQL ("
    out.title(
        f"通办 tongban 演示 — 工作目录 {root}",
        f"tongban demo — {storage}development PKI, local federation) in {root}",
    )
    if demo.database is not None:
        out.info(f"PostgreSQL: {demo.database}, one schema per office (tongban_demo_<node id>)")
    started = time.perf_counter()
    ok = False
    with _Termination() as termination:
        try:
            ok = await _run_steps(demo, out, steps)
            if ok:
                _listing(demo, out, len(steps) + 1)
            out.plain(
                f"\n{'全部通过' if ok else '演示失败'} {'all steps held' if ok else 'demo failed'}:"
                f" {out.proofs} proofs ✓ in {time.perf_counter() - started:.1f} s"
            )
            if ok and not once and demo.nodes:
                prompt = "节点运行中，按 Ctrl-C 停止 · nodes running; press Ctrl-C to stop"
                await _wait_for_interrupt(lambda: out.plain(prompt))
            return ok
        except asyncio.CancelledError:
            if termination.received is None:
                raise  # a Ctrl-C during the steps (asyncio.run's own handling) or a caller
            name = termination.received.name
            if not ok:  # the steps were cut short: the run did not prove what it shows
                out.failed("演示被终止", f"demo stopped by {name} before its last step")
            out.plain(f"\n收到 {name}，正在停止节点 · {name} received: stopping the nodes")
            return ok
        finally:
            termination.stopping = True
            if demo.nodes:
                for node_id, status in await stop_nodes(demo):
                    out.info(f"{node_id} stopped (exit status {status})")
