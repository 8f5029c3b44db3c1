"""CPU cost of a live survey session on the server, and sessions per core.

One site peer (aiortc, in its own process) sends synthetic 640x480 video at about
20 fps (a moving bar over a gradient, so the codec has real work) plus silence for
``DURATION`` seconds to the real survey app; the server's own process CPU time
(``time.process_time``, all threads: aiortc decodes and encodes in worker threads) is
measured over that window. Rows, all measured in the same run:

- ``receive only``: the baseline — the site's media is received and decoded, nothing
  is recorded and nobody watches;
- ``record``: the same session recorded in 3 s H.264/Opus segments, each hashed into
  the evidence chain;
- ``record + 1 inspector``: recorded, and relayed to one inspector (one more VP8
  encode on the server).

``ratio`` is CPU relative to the baseline; ``sessions/core`` is 1 / (server CPU
seconds per wall second). Everything runs in a private network namespace (loopback
only, 127.0.0.2), made by ``unshare -n`` as in the tests; it needs root.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DURATION = 20.0
FPS = 20
WIDTH, HEIGHT = 640, 480
HOST = "127.0.0.2"
SCENARIOS = (
    ("receive only", False, False),
    ("record", True, False),
    ("record + 1 inspector", True, True),
)


def run() -> list[dict[str, object]]:
    script = (
        "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec "
        f"{sys.executable} -m bench.bench_survey_media serve"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=DURATION * len(SCENARIOS) * 3 + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"survey media benchmark failed:\n{done.stdout}\n{done.stderr}")
    rows: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


# -- the site (and inspector) peers, in a child process ------------------------------------


def _frames() -> list[Any]:
    import av

    gradient = bytes((x * 255) // WIDTH for x in range(WIDTH)) * HEIGHT
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    frames = []
    for i in range(FPS * 2):
        y = bytearray(gradient)
        top = (i * HEIGHT // (FPS * 2)) % (HEIGHT - 40)
        y[top * WIDTH : (top + 40) * WIDTH] = bytes([235]) * (40 * WIDTH)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, data in zip(frame.planes, (bytes(y), chroma, chroma), strict=True):
            plane.update(data)
        frames.append(frame)
    return frames


async def _client(site_url: str, inspector_url: str, seconds: float) -> None:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

    frames = _frames()

    class Synthetic(VideoStreamTrack):
        count = 0

        async def recv(self) -> Any:
            due = self.start + self.count / FPS
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            frame = frames[self.count % len(frames)]
            frame.pts = self.count * (90_000 // FPS)
            frame.time_base = fractions.Fraction(1, 90_000)
            self.count += 1
            return frame

        start = time.monotonic()

    async def drain(track: Any) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    async def keep_reading(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:  # answers the server's heartbeat pings
            pass

    async def join(http: aiohttp.ClientSession, url: str, send: bool) -> RTCPeerConnection:
        address, _, token = url.partition("#")  # the token goes in the first message
        ws = await http.ws_connect(address)
        await ws.send_json({"type": "join", "token": token})
        sockets.append(ws)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tasks = []
        pc.on("track", lambda track: tasks.append(asyncio.ensure_future(drain(track))))
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] == "offer":
                await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
                if send:
                    pc.addTrack(Synthetic())
                    pc.addTrack(AudioStreamTrack())
                await pc.setLocalDescription(await pc.createAnswer())
                await ws.send_json({"type": "answer", "sdp": pc.localDescription.sdp})
                break
        tasks.append(asyncio.ensure_future(keep_reading(ws)))
        return pc

    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession() as http:
        pcs = []
        if inspector_url:
            pcs.append(await join(http, inspector_url, send=False))
        pcs.append(await join(http, site_url, send=True))
        await asyncio.sleep(seconds)
        for pc in pcs:
            await pc.close()
        for ws in sockets:
            await ws.close()


# -- the server, inside the namespace ------------------------------------------------------


def _plan(now: datetime) -> Any:
    from datetime import timedelta

    from remote_survey.geo import GeoPoint
    from remote_survey.session import (
        ChecklistItem,
        Participant,
        Site,
        SurveyPlan,
        TimeWindow,
    )

    return SurveyPlan(
        session_id="sv-bench",
        case_id="case-bench",
        matter="food-business-licence",
        surveying_office="420106",
        requesting_office="320982",
        window=TimeWindow(now - timedelta(hours=1), now + timedelta(hours=1)),
        inspectors=(Participant("insp-1", "Inspector"),),
        site_party=Participant("site-1", "Site"),
        observers=(),
        checklist=(ChecklistItem("item-1", "Item"),),
        site=Site("Bench site", GeoPoint.from_degrees(30.5428, 114.3162)),
    )


async def _scenario(tmp: Path, name: str, record: bool, watch: bool) -> dict[str, object]:
    from aiohttp import web
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from certs.pki import init_federation, issue_node
    from remote_survey.join import issue_join_token, new_jti
    from remote_survey.room import RoomConfig
    from remote_survey.session import Role, SurveyState
    from remote_survey.web import SurveyHub, survey_app
    from signing.keys import Signer

    now = datetime.now(UTC)
    fed, node = tmp / "fed", tmp / "node"
    if not fed.exists():
        init_federation(fed, "Bench", now=now)
        issue_node(fed, "420106", "Bench office", "127.0.0.1", node, now=now)
    seal = Signer.from_pem((node / "seal.key").read_bytes(), (node / "seal.pem").read_bytes())
    key = Ed25519PrivateKey.generate()
    config = RoomConfig(
        node_id="420106",
        join_key=key.public_key(),
        seal=seal,
        media_root=tmp / name.replace(" ", "-").replace("+", ""),
        clock=lambda: datetime.now(UTC),
        record=record,
    )
    hub = SurveyHub(config)
    live = hub.open(_plan(now))
    runner = web.AppRunner(survey_app(hub), shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url(role: Role, subject: str) -> str:
        token = issue_join_token(
            key,
            node_id="420106",
            session_id="sv-bench",
            role=role,
            subject=subject,
            not_before=now,
            expires=now.replace(year=now.year + 1),
            jti=new_jti(),
        )
        return f"ws://{HOST}:{port}/survey/v1/ws?device={subject}-dev#{token}"

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_survey_media",
        "client",
        url(Role.SITE, "site-1"),
        url(Role.INSPECTOR, "insp-1") if watch else "",
        str(DURATION + 8),
    )
    try:
        deadline = time.monotonic() + 30
        while live.room.state is not SurveyState.LIVE:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the session never went live")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # let the codecs settle
        tap = live.media.site_video
        frames0 = tap.frames if tap else 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(DURATION)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        frames = (tap.frames if tap else 0) - frames0
        segments = len(live.media.recorder.segments)
    finally:
        await asyncio.wait_for(child.wait(), DURATION + 30)
        await runner.cleanup()
    load = cpu / wall
    return {
        "scenario": name,
        "fps received": frames / wall,
        "segments": segments,
        "server CPU s/s": load,
        "sessions/core": 1 / load if load else float("inf"),
    }


async def _serve() -> list[dict[str, object]]:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-survey-media-") as tmp:
        for name, record, watch in SCENARIOS:
            rows.append(await _scenario(Path(tmp), name, record, watch))
    base = rows[0]["server CPU s/s"]
    for row in rows:
        row["ratio"] = float(row["server CPU s/s"]) / float(base)  # type: ignore[arg-type]
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "client":
        asyncio.run(_client(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    elif sys.argv[1] == "serve":
        print(json.dumps(asyncio.run(_serve())))
