"""Run only inside the network namespace made by test_survey_media_netns.py.

Two aiortc peers (no browser) against the real app on 127.0.0.2: the site sends
synthetic camera and microphone, the inspector watches. Going live, segments recorded
and chained, a snapshot, a challenge, a geolocation fix, a dropped site connection and
its rejoin with the same link (the gap in the chain), another device refused, and a
sealed report that ``tongban survey verify`` accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from media_support import WAIT, Inbox, World, make_plan, make_world, served

from remote_survey.entries import Gap, Segment, Snapshot
from remote_survey.evidence import parse_evidence, verify_chain
from remote_survey.session import Role

HOST = "127.0.0.2"


class Party:
    """One aiortc participant: a signalling socket and a peer connection."""

    def __init__(self, http: aiohttp.ClientSession, world: World, token: str, device: str):
        self.http, self.world, self.token, self.device = http, world, token, device
        self.pc: RTCPeerConnection | None = None
        self.inbox: Inbox | None = None
        self.video_frames = 0
        self.got_video = asyncio.Event()
        self.got_audio = asyncio.Event()
        self._consumers: list[asyncio.Task[None]] = []

    async def join(self, *, send_media: bool) -> dict[str, Any]:
        ws = await self.world.join(self.http, self.token, self.device)
        self.inbox = Inbox(ws)
        welcome = await self.inbox.expect("welcome")
        offer = await self.inbox.expect("offer")
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._consumers.append(asyncio.ensure_future(self._consume(track)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        if send_media:
            pc.addTrack(VideoStreamTrack())
            pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        await ws.send_json({"type": "answer", "sdp": pc.localDescription.sdp})
        return welcome

    async def _consume(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.video_frames += 1
                    self.got_video.set()
                else:
                    self.got_audio.set()

    async def send(self, message: dict[str, Any]) -> None:
        assert self.inbox is not None
        await self.inbox.ws.send_json(message)

    async def leave(self) -> None:
        if self.inbox is not None:
            await self.inbox.close()
        if self.pc is not None:
            await self.pc.close()
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)


@pytest.mark.timeout(120)
async def test_live_session_records_snapshots_survives_a_drop_and_is_reported(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, segment_ms=1000)
    from datetime import UTC, datetime

    live = world.hub.open(make_plan(datetime.now(UTC)))
    async with served(world, HOST), aiohttp.ClientSession() as http:
        site_token = world.token(Role.SITE, "site-1")
        inspector = Party(http, world, world.token(Role.INSPECTOR, "insp-1"), "laptop-1")
        site = Party(http, world, site_token, "phone-1")
        welcome = await inspector.join(send_media=True)
        assert welcome["role"] == "inspector"
        assert [i["id"] for i in welcome["checklist"]] == ["kitchen-layout", "fire-exit"]
        observer = Party(http, world, world.token(Role.OBSERVER, "obs-1"), "tablet-1")
        await observer.join(send_media=False)
        await site.join(send_media=True)
        assert inspector.inbox
        assert site.inbox
        # going live: the first site frame starts the session; inspector and observer
        # see and hear the site, the site hears the inspector
        await inspector.inbox.expect("state", state="live")
        for event in (inspector.got_video, inspector.got_audio, observer.got_video, site.got_audio):
            await asyncio.wait_for(event.wait(), WAIT)
        await inspector.inbox.expect("segment")
        # snapshot: a full-resolution PNG, hashed into the chain
        await inspector.send({"type": "snapshot"})
        snap = await inspector.inbox.expect("snapshot")
        png = (live.room.media_dir / snap["name"]).read_bytes()
        assert png.startswith(b"\x89PNG")
        assert hashlib.sha256(png).hexdigest() == snap["sha256"]
        still = next(iter(av.open(str(live.room.media_dir / snap["name"])).decode(video=0)))
        assert (still.width, still.height) == (640, 480)
        # challenge: shown on the site, confirmed by the inspector
        await inspector.send({"type": "challenge"})
        issued = await site.inbox.expect("challenge")
        assert len(issued["challenge"]) == 6
        assert issued["challenge"].isdigit()
        await site.send({"type": "challenge-shown", "id": issued["id"]})
        await inspector.inbox.expect("challenge-shown", id=issued["id"])
        await inspector.send(
            {"type": "challenge-confirm", "id": issued["id"], "result": "confirmed"}
        )
        await inspector.inbox.expect("challenge-confirmed", id=issued["id"])
        await site.send({"type": "geofix", "lat": 30.54282, "lon": 114.3162, "accuracy": 6.0})
        fix = await inspector.inbox.expect("geofix")
        assert 1.0 < fix["distance_m"] < 3.5
        # the site drops; its open segment is closed and chained, the session interrupted
        await site.leave()
        await inspector.inbox.expect("state", state="interrupted")
        # another device with the same link is refused; the same device rejoins
        thief = await world.join(http, site_token, "other-phone")
        await thief.receive()
        assert thief.close_code == 4409
        site = Party(http, world, site_token, "phone-1")
        await site.join(send_media=True)
        await inspector.inbox.expect("state", state="live")
        segments_before = sum(isinstance(e.body, Segment) for e in live.room.chain.entries)
        await inspector.inbox.expect("segment", name=f"seg-{segments_before + 1:06d}.mkv")
        # a reload: the phone reconnects at once, while its old connection is cleaned up
        reloaded = Party(http, world, site_token, "phone-1")
        await asyncio.gather(site.leave(), reloaded.join(send_media=True))
        site = reloaded
        await inspector.inbox.expect("state", state="interrupted")
        await inspector.inbox.expect("state", state="live")
        await asyncio.wait_for(site.got_audio.wait(), WAIT)
        segments_before = sum(isinstance(e.body, Segment) for e in live.room.chain.entries)
        await inspector.inbox.expect("segment", name=f"seg-{segments_before + 1:06d}.mkv")
        # report: answers linked to the snapshot, sealed by the surveying office
        await inspector.send(
            {
                "type": "report",
                "verdict": "pass",
                "answers": [
                    {"item": "kitchen-layout", "answer": "pass", "snapshots": [snap["sha256"]]},
                    {"item": "fire-exit", "answer": "note", "note": "通道有纸箱, 已当场清理"},
                ],
            }
        )
        report = await inspector.inbox.expect("report")
        await inspector.inbox.expect("state", state="completed")
        await site.leave()
        await observer.leave()
        await inspector.leave()

    entries = parse_evidence((live.room.media_dir / "evidence.jsonl").read_bytes())
    assert verify_chain(entries).ok
    assert entries[-1].hash == report["head"]
    gaps = [e.body for e in entries if isinstance(e.body, Gap)]
    assert len(gaps) == 2
    assert gaps[0].end_ms > gaps[0].start_ms
    segments = [e.body for e in entries if isinstance(e.body, Segment)]
    assert len(segments) >= 3
    assert any(isinstance(e.body, Snapshot) for e in entries)
    for seg in segments:  # every recorded segment decodes on its own
        with av.open(str(live.room.media_dir / seg.name)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
    done = world.verify_cli()
    assert done.returncode == 0, done.stderr
