"""Shared helpers of the survey media tests: PKI, plan, join links, a served hub.

Used by the fast WebSocket tests and by the network-namespace cases (aiortc peers and
headless Chromium). Servers listen on ``HOST`` (127.0.0.2 inside the namespace the
wrapper test creates; 127.0.0.1 for the join refusal tests that need no media).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from certs.pki import init_federation, issue_node
from remote_survey.geo import GeoPoint
from remote_survey.join import issue_join_token, new_jti
from remote_survey.room import RoomConfig
from remote_survey.session import (
    ChecklistItem,
    Participant,
    Role,
    Site,
    SurveyPlan,
    TimeWindow,
)
from remote_survey.web import SurveyHub, survey_app
from signing.keys import Signer

ROOT = Path(__file__).resolve().parents[2]
SURVEYOR = "420106"
REQUESTER = "320982"
SITE = GeoPoint.from_degrees(30.5428, 114.3162)
WAIT = 20.0  # seconds: the bound of every single wait in these tests
if os.environ.get("TONGBAN_SURVEY_LOG_DEBUG"):  # set by run_in_netns: a full log on failure
    logging.getLogger("tongban").setLevel(logging.DEBUG)
    for _chatty in ("aiortc.rtcrtpsender", "aiortc.rtcrtpreceiver"):  # a line per RTP packet
        logging.getLogger(_chatty).setLevel(logging.INFO)


def make_plan(now: datetime, session_id: str = "sv-media-0001") -> SurveyPlan:
    return SurveyPlan(
        session_id=session_id,
        case_id="case-320982-0042",
        matter="food-business-licence",
        surveying_office=SURVEYOR,
        requesting_office=REQUESTER,
        window=TimeWindow(now - timedelta(hours=1), now + timedelta(hours=2)),
        inspectors=(Participant("insp-1", "李勘查"),),
        site_party=Participant("site-1", "张店主"),
        observers=(Participant("obs-1", "观察员"),),
        checklist=(
            ChecklistItem("kitchen-layout", "后厨布局符合生熟分开"),
            ChecklistItem("fire-exit", "消防通道畅通"),
        ),
        site=Site("武汉市武昌区中北路 1 号", SITE),
    )


@dataclass
class World:
    """A federation, the surveying office's seal, a join key and an open hub."""

    tmp: Path
    bundle_path: Path
    seal: Signer
    join_key: Ed25519PrivateKey
    hub: SurveyHub
    base_url: str = ""

    def token(
        self,
        role: Role,
        subject: str,
        *,
        session_id: str = "sv-media-0001",
        valid_for: timedelta = timedelta(hours=1),
        not_before: datetime | None = None,
    ) -> str:
        nbf = not_before or datetime.now(UTC) - timedelta(minutes=1)
        return issue_join_token(
            self.join_key,
            node_id=SURVEYOR,
            session_id=session_id,
            role=role,
            subject=subject,
            not_before=nbf,
            expires=nbf + valid_for,
            jti=new_jti(),
        )

    def ws_url(self, device: str, **extra: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"device": device, **extra}.items())
        return self.base_url.replace("http", "ws", 1) + f"/survey/v1/ws?{query}"

    async def join(
        self, http: aiohttp.ClientSession, token: str, device: str, **extra: str
    ) -> aiohttp.ClientWebSocketResponse:
        """Open the signalling socket as a page does: the token in the first message."""
        ws = await http.ws_connect(self.ws_url(device, **extra))
        await ws.send_json({"type": "join", "token": token})
        return ws

    def verify_cli(self, session_id: str = "sv-media-0001") -> subprocess.CompletedProcess[str]:
        media = self.tmp / "media" / session_id
        cmd = [
            sys.executable,
            "-m",
            "relay.cli",
            "survey",
            "verify",
            str(media / "report.jws"),
            "--media",
            str(media),
            "--trust",
            str(self.bundle_path),
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
        )


def make_world(tmp: Path, **config: Any) -> World:
    base = datetime.now(UTC) - timedelta(hours=3)
    init_federation(tmp / "fed", "Hubei", now=base)
    issue_node(tmp / "fed", SURVEYOR, "武昌区政务服务中心", "127.0.0.1", tmp / SURVEYOR, now=base)
    bundle = tmp / "bundle.pem"
    bundle.write_bytes(
        (tmp / "fed" / "root.pem").read_bytes() + (tmp / "fed" / "crl.pem").read_bytes()
    )
    node = tmp / SURVEYOR
    seal = Signer.from_pem((node / "seal.key").read_bytes(), (node / "seal.pem").read_bytes())
    join_key = Ed25519PrivateKey.generate()
    hub = SurveyHub(
        RoomConfig(
            node_id=SURVEYOR,
            join_key=join_key.public_key(),
            seal=seal,
            media_root=tmp / "media",
            clock=lambda: datetime.now(UTC),
            **config,
        )
    )
    return World(tmp, bundle, seal, join_key, hub)


@asynccontextmanager
async def served(world: World, host: str) -> AsyncIterator[World]:
    runner = web.AppRunner(survey_app(world.hub), shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    world.base_url = f"http://{host}:{port}"
    try:
        yield world
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped), within ``WAIT`` seconds."""

    async def read() -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended ({msg.type}, {msg.data!r}) before {kind}")
            data = json.loads(msg.data)
            if data["type"] == kind:
                return data  # type: ignore[no-any-return]

    return await asyncio.wait_for(read(), WAIT)


def run_in_netns(case: str, timeout: float, artefacts: Path) -> None:
    """Run a pytest file inside a fresh network namespace with 127.0.0.2 on loopback.

    ``artefacts`` (the calling test's tmp dir) keeps everything a failure needs: the
    inner run's output (``inner-output.txt``), its whole log at DEBUG with times
    (``inner.log``) and its tmp dirs (``inner/``: evidence, segments). It is passed on as
    ``$TONGBAN_SURVEY_ARTEFACTS`` (screenshots). On a failure or a timeout the output and
    the end of the log are printed.
    Fails (never skips) when the namespace cannot be made: these tests need root, as CI has.
    """
    output, log = artefacts / "inner-output.txt", artefacts / "inner.log"
    inner = [
        sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
        f"--basetemp={artefacts / 'inner'}", f"--log-file={log}", "--log-file-level=DEBUG",
        "-o", "log_level=INFO", "-o", f"log_file_format={_LOG_FORMAT}",
        f"tests/survey_media/{case}",
    ]  # fmt: skip
    script = "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec " + " ".join(
        shlex.quote(a) for a in inner
    )
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TONGBAN_SURVEY_ARTEFACTS": str(artefacts),
        "TONGBAN_SURVEY_LOG_DEBUG": "1",
    }
    try:
        with output.open("w") as out:
            done = subprocess.run(
                ["unshare", "-n", "sh", "-c", script],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError as exc:
        raise AssertionError(f"unshare is not installed (util-linux): {exc}") from None
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{case} did not finish within {timeout:.0f} s inside the namespace"
            + _diagnosis(output, log)
        ) from None
    text = output.read_text(errors="replace")
    if "unshare failed" in text or "Operation not permitted" in text:
        raise AssertionError(
            "cannot create a network namespace (unshare -n needs root or CAP_SYS_ADMIN); "
            f"these WebRTC tests must run as root, as in CI:\n{text}"
        )
    assert done.returncode == 0, f"{case} failed inside the namespace" + _diagnosis(output, log)


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_LOG_TAIL = 400  # lines of the inner log printed on a failure (the whole file is kept)


def _diagnosis(output: Path, log: Path) -> str:
    """The inner run's output and the end of its log, for a failure message."""
    text = output.read_text(errors="replace") if output.exists() else "(no output)"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    tail = "\n".join(lines[-_LOG_TAIL:])
    return (
        f"\n--- output ({output}) ---\n{text}\n"
        f"--- last {min(len(lines), _LOG_TAIL)} of {len(lines)} log lines ({log}) ---\n{tail}"
    )


class Inbox:
    """Every message a client socket receives, read by one task, awaited by type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Event()
        self.closed: tuple[int | None, str] | None = None
        self.closed_event = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self._changed.set()
        self.closed = (self.ws.close_code, str(self.ws.protocol or ""))
        self.closed_event.set()
        self._changed.set()

    async def expect(self, kind: str, **match: Any) -> dict[str, Any]:
        """The first not yet taken message of type ``kind`` whose fields equal ``match``."""

        async def find() -> dict[str, Any]:
            while True:
                for i, m in enumerate(self.messages):
                    if (
                        i not in self._taken
                        and m["type"] == kind
                        and all(m.get(k) == v for k, v in match.items())
                    ):
                        self._taken.add(i)
                        return m
                if self.closed is not None:
                    raise AssertionError(f"socket closed {self.closed} before {kind} {match}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), WAIT)

    def count(self, kind: str) -> int:
        return sum(1 for m in self.messages if m["type"] == kind)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._task, WAIT)
