"""A real remote survey in the demo: two WebRTC peers against the surveying node.

The shop owner's phone is an aiortc peer sending a synthetic camera (a generated moving
picture with a frame counter, 640×360 at 15 fps) and silence as its microphone; the
inspector is a second peer. Both join with the signed links the node handed out (the
token in the first WebSocket message, as the pages do). The site party acknowledges the
recording notice, the session goes live and is recorded in segments, the inspector
takes a snapshot, sends a challenge the site party acknowledges and the inspector
confirms, the phone shares a location at the shop, and the inspector signs the report
(every checklist item answered, the snapshot linked). Everything crosses the node's
real public listener; ICE uses host candidates only (no outside STUN server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from relay.demo.errors import StepFailed

__all__ = ["SyntheticCamera", "run_remote_survey"]

_WAIT = 30.0
_FPS = 15


class SyntheticCamera(VideoStreamTrack):
    """A generated video: a bar sweeping across a changing background, 15 fps."""

    def __init__(self, width: int = 640, height: int = 360) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(1 / _FPS)
        pts, time_base = await self.next_timestamp()
        n = self.count = self.count + 1
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y, u, v = frame.planes
        row = bytearray((n * 3 + x // 8) % 200 + 30 for x in range(y.line_size))
        bar = (n * 12) % self.width
        row[bar : bar + 24] = b"\xf0" * len(row[bar : bar + 24])
        y.update(bytes(row) * self.height)
        u.update(bytes([(n * 5) % 256]) * u.buffer_size)
        v.update(bytes([128]) * v.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


class _Peer:
    """One participant: the signalling socket (every message kept) and its connection."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str, token: str) -> None:
        self.http, self.url, self.token = http, ws_url, token
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self, tracks: list[Any], first: tuple[dict[str, Any], ...] = ()) -> None:
        """Join, send ``first`` (before any media), answer the offer with ``tracks``."""
        ws = self.ws = await self.http.ws_connect(self.url)
        await ws.send_json({"type": "join", "token": self.token})
        self.tasks.append(asyncio.ensure_future(self._read()))
        for message in first:
            await ws.send_json(message)
        offer = await self.expect("offer")

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self.tasks.append(asyncio.ensure_future(_drain(track)))

        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        for track in tracks:
            self.pc.addTrack(track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.send({"type": "answer", "sdp": self.pc.localDescription.sdp})

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self.changed.set()

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def expect(self, kind: str, count: int = 1, **match: Any) -> dict[str, Any]:
        """The ``count``-th message of type ``kind`` (with ``match``), within 30 s."""

        def found() -> dict[str, Any] | None:
            hits = [
                m
                for m in self.messages
                if m["type"] == kind and all(m.get(k) == v for k, v in match.items())
            ]
            errors = [m for m in self.messages if m["type"] == "error"]
            if errors:
                raise StepFailed(f"the survey refused an action: {errors[0]}")
            return hits[count - 1] if len(hits) >= count else None

        try:
            async with asyncio.timeout(_WAIT):
                while (hit := found()) is None:
                    self.changed.clear()
                    await self.changed.wait()
                return hit
        except TimeoutError:
            raise StepFailed(f"no {kind} message from the survey within {_WAIT:g} s") from None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task


async def _drain(track: Any) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


def _token(path: str) -> str:
    return path.split("#token=", 1)[1].split("&", 1)[0]


async def run_remote_survey(
    public: str, links: dict[str, str], site: tuple[float, float], items: list[str]
) -> dict[str, Any]:
    """Run the survey of ``links`` (role -> page path with its token) on the node at
    ``public``; return the report message (sealed token, chain head) and what was done."""
    ws_url = public.replace("http", "ws", 1) + "/survey/v1/ws"
    camera = SyntheticCamera()
    async with aiohttp.ClientSession() as http:
        phone = _Peer(http, f"{ws_url}?device={secrets.token_hex(16)}", _token(links["site"]))
        desk = _Peer(http, f"{ws_url}?device={secrets.token_hex(16)}", _token(links["inspector"]))
        try:
            # the recording notice is acknowledged before any media flow
            await phone.join([camera, AudioStreamTrack()], first=({"type": "notice-ack"},))
            await desk.join([AudioStreamTrack()])
            await desk.expect("state", state="live")
            await desk.expect("segment")
            await desk.send({"type": "snapshot"})
            snapshot = await desk.expect("snapshot")
            await desk.send({"type": "challenge", "instruction": "请将营业执照对准镜头"})
            challenge = await phone.expect("challenge")
            await phone.send({"type": "challenge-shown", "id": challenge["id"]})
            await desk.expect("challenge-shown", id=challenge["id"])
            confirm = {"type": "challenge-confirm", "id": challenge["id"], "result": "confirmed"}
            await desk.send(confirm)
            await desk.expect("challenge-confirmed", id=challenge["id"])
            lat, lon = site
            await phone.send({"type": "geofix", "lat": lat, "lon": lon, "accuracy": 5.0})
            fix = await desk.expect("geofix")
            await desk.expect("segment", count=2)
            answers = [
                {
                    "item": item,
                    "answer": "pass",
                    "snapshots": [snapshot["sha256"]] if n == 0 else [],
                }
                for n, item in enumerate(items)
            ]
            await desk.send({"type": "report", "verdict": "pass", "answers": answers})
            report = await desk.expect("report")
        finally:
            await phone.close()
            await desk.close()
    return {
        **report,
        "frames_sent": camera.count,
        "snapshot": snapshot["name"],
        "challenge": challenge["challenge"],
        "distance_m": fix["distance_m"],
    }
