"""The media of one survey: a server-side aiortc peer per participant, wired together.

The server is the offerer. Each participant's :class:`aiortc.RTCPeerConnection` is
created with the transceivers of its role, so no renegotiation is ever needed:

============ ===================================== =====================================
role         server receives                       server sends
============ ===================================== =====================================
site         camera (video), microphone (audio)    the inspector's voice (audio)
inspector    microphone (audio)                    site video, site audio
observer     nothing                               site video, site audio
============ ===================================== =====================================

Every received track is consumed at once by a :class:`~remote_survey.fanout.TrackTap`;
what goes out is a :class:`~remote_survey.fanout.ForwardTrack` that keeps working when
the source leaves and comes back. The site's tracks also feed the
:class:`~remote_survey.recorder.SegmentRecorder` (one bounded sink); each finished
segment is appended to the evidence chain. The session goes live (or ends its
interruption) when the site's first video frame arrives, and is interrupted when the
site's connection goes away, after the open segment has been closed and recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from remote_survey.entries import Segment
from remote_survey.fanout import ForwardTrack, FrameSink, TrackTap
from remote_survey.recorder import SegmentRecorder
from remote_survey.room import RoomError, SurveyRoom
from remote_survey.session import Role, SurveyState

__all__ = ["RECORDER_BUFFER", "Peer", "RoomMedia"]

RECORDER_BUFFER = 150  # frames (about 2 s of video and audio) before the oldest is dropped
_VIEWER_VIDEO_BUFFER = 2  # a viewer always gets the freshest picture
_VIEWER_AUDIO_BUFFER = 10  # 200 ms
_STOP_WARNING = 10.0  # seconds between warnings while the last segment is written
_log = logging.getLogger("tongban.survey.media")


def _configuration(room: SurveyRoom) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in room.config.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


class Peer:
    """One participant's server-side peer connection and what it sends."""

    def __init__(self, role: Role, device_id: str, room: SurveyRoom) -> None:
        self.role = role
        self.device_id = device_id
        self.pc = RTCPeerConnection(_configuration(room))
        self.outgoing: list[ForwardTrack] = []
        self.taps: list[TrackTap] = []
        self.closed = asyncio.Event()

    async def close(self) -> None:
        for track in self.outgoing:
            track.stop()
        for tap in self.taps:
            await tap.stop()
        await self.pc.close()
        self.closed.set()


class RoomMedia:
    """Taps, forward tracks and the recorder of one room."""

    def __init__(self, room: SurveyRoom, notify: Callable[[dict[str, Any]], None]) -> None:
        self.room = room
        self._notify = notify
        self.site: Peer | None = None
        self.site_video: TrackTap | None = None
        self.site_audio: TrackTap | None = None
        self.inspector_audio: TrackTap | None = None
        self._to_viewers_video: set[ForwardTrack] = set()
        self._to_viewers_audio: set[ForwardTrack] = set()
        self._to_site_audio: set[ForwardTrack] = set()
        self.recorder = SegmentRecorder(
            room.media_dir,
            now_ms=room.now_ms,
            on_segment=self._segment_written,
            segment_ms=room.config.segment_ms,
            first_index=room.segment_count,  # a resumed session continues its numbering
            vault=room.config.vault,
        )
        self._recording: asyncio.Task[None] | None = None
        self._waiting_live = False
        self._site_lock = asyncio.Lock()

    # -- offers and answers ---------------------------------------------------------------

    async def offer(self, peer: Peer) -> str:
        """Add the role's transceivers and return the server's offer SDP (ICE gathered)."""
        pc = peer.pc
        if peer.role is Role.SITE:
            pc.addTransceiver("video", direction="recvonly")
            back = self._forward("audio", self._to_site_audio, self.inspector_audio)
            pc.addTransceiver(back, direction="sendrecv")
            peer.outgoing.append(back)
        else:
            video = self._forward("video", self._to_viewers_video, self.site_video)
            audio = self._forward("audio", self._to_viewers_audio, self.site_audio)
            pc.addTransceiver(video, direction="sendonly")
            audio_direction = "sendrecv" if peer.role is Role.INSPECTOR else "sendonly"
            pc.addTransceiver(audio, direction=audio_direction)
            peer.outgoing.extend((video, audio))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._received(peer, track)

        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def answer(self, peer: Peer, sdp: str) -> None:
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        if peer.role is Role.SITE and peer is self.site:
            self._start_recording()

    def _forward(self, kind: str, group: set[ForwardTrack], tap: TrackTap | None) -> ForwardTrack:
        maxlen = _VIEWER_VIDEO_BUFFER if kind == "video" else _VIEWER_AUDIO_BUFFER
        track = ForwardTrack(kind, maxlen)
        track.attach(tap)
        group.add(track)
        track.on("ended", lambda: group.discard(track))
        return track

    # -- received media ---------------------------------------------------------------------

    def _received(self, peer: Peer, track: MediaStreamTrack) -> None:
        if peer.role is Role.SITE and peer is self.site:
            if track.kind == "video":
                tap = TrackTap(track, on_frame=self._site_frame)
                self.site_video = tap
                group = self._to_viewers_video
            else:
                tap = TrackTap(track)
                self.site_audio = tap
                group = self._to_viewers_audio
            for forward in tuple(group):
                forward.attach(tap)
        elif peer.role is Role.INSPECTOR and track.kind == "audio":
            tap = TrackTap(track)
            self.inspector_audio = tap
            for forward in tuple(self._to_site_audio):
                forward.attach(tap)
        else:
            tap = TrackTap(track)  # consumed and discarded: never left to pile up
        peer.taps.append(tap)

    async def claim_site(self, peer: Peer) -> None:
        """Make ``peer`` the site, once the previous site's departure is fully handled.

        A phone that reloads connects again while its old connection is still being
        cleaned up; the lock orders the two so the old cleanup never touches the new one.
        """
        async with self._site_lock:
            if self.room.state.is_final:  # the survey ended while this join was admitted:
                return  # its media are discarded, nothing is recorded
            old = self.site
            if old is not None and old is not peer:
                await self._release_site(old)
            self.site = peer
            self._waiting_live = True
        _log.debug("survey %s: site is %s", self.room.plan.session_id, peer.device_id)

    def _site_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        """The site's video flows: the first frame starts the survey (or ends its
        interruption). A site that joined before the window opened (its link is valid
        earlier) waits: a frame after the opening starts it."""
        if not self._waiting_live:
            return
        room = self.room
        if room.state is SurveyState.SCHEDULED and room.now() < room.plan.window.start:
            return
        self._waiting_live = False
        try:
            state = room.site_live()
        except RoomError as exc:
            _log.warning("survey %s: the site's media flows, but %s", room.plan.session_id, exc)
            return
        except OSError as exc:  # the gap could not be written (a full disk): a later frame
            self._waiting_live = True  # tries again, the state as it was
            _log.error("survey %s: the rejoin was not recorded: %s", room.plan.session_id, exc)
            return
        _log.debug("survey %s: first site frame, state %s", room.plan.session_id, state)
        if state is not None:
            self._notify({"type": "state", "state": state.value})

    def _start_recording(self) -> None:
        if (
            not self.room.config.record
            or self.site_video is None
            or self._recording
            or self.room.state.is_final
        ):
            return
        sink = FrameSink(RECORDER_BUFFER)
        self.site_video.add_sink(sink)
        self.recorder.with_audio = self.site_audio is not None
        if self.site_audio is not None:
            self.site_audio.add_sink(sink)
        self._recording = asyncio.ensure_future(self.recorder.run(sink))
        _log.debug("survey %s: recording started", self.room.plan.session_id)

    def _segment_written(self, segment: Segment) -> None:
        t_ms = self.room.record(segment)
        _log.debug("survey %s: %s chained", self.room.plan.session_id, segment.name)
        self._notify(
            {"type": "segment", "name": segment.name, "sha256": segment.sha256, "t_ms": t_ms}
        )

    def latest_frame(self) -> av.VideoFrame | None:
        return self.site_video.latest if self.site_video is not None else None

    # -- leaving ------------------------------------------------------------------------------

    async def stop_recording(self) -> None:
        """Close the site's taps and wait for the open segment to be written and chained.

        The wait has no deadline: the recorder drains a bounded sink, and a recording
        left running would share the recorder with the next one (after a rejoin) and
        chain its last segment after the interruption. A slow finish is logged every
        ``_STOP_WARNING`` seconds; a failed recording is logged and the site still leaves.
        """
        for tap in (self.site_video, self.site_audio):
            if tap is not None:
                await tap.stop()
        if self._recording is None:
            return
        session, began = self.room.plan.session_id, time.monotonic()
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(self._recording), _STOP_WARNING)
                break
            except TimeoutError:
                waited = time.monotonic() - began
                _log.warning(
                    "survey %s: last segment still being written after %.0f s", session, waited
                )
            except Exception:
                _log.exception("survey %s: the recording failed", session)
                break
        self._recording = None
        _log.debug("survey %s: recording stopped in %.2f s", session, time.monotonic() - began)

    async def survey_ended(self) -> None:
        """The survey has ended: the site's connection is closed (its page stops sending
        then; one that would not fills no queue) and its last frame forgotten."""
        async with self._site_lock:
            await self.stop_recording()  # one a racing rejoin started before the end
            site, self.site = self.site, None
            self._waiting_live = False
            self.site_video = self.site_audio = None
            if site is not None:
                await site.close()

    async def site_gone(self, peer: Peer) -> None:
        """The site's connection went away: finish the segment, then interrupt the session."""
        async with self._site_lock:
            if peer is not self.site:
                await peer.close()
                return
            await self._release_site(peer)

    async def _release_site(self, peer: Peer) -> None:
        self._waiting_live = False
        await self.stop_recording()
        self.site_video = self.site_audio = None
        self.site = None
        await peer.close()
        state = self.room.site_lost()
        _log.debug(
            "survey %s: site %s gone, state %s", self.room.plan.session_id, peer.device_id, state
        )
        if state is not None:
            self._notify({"type": "state", "state": state.value})

    async def viewer_gone(self, peer: Peer) -> None:
        if peer.role is Role.INSPECTOR and self.inspector_audio in peer.taps:
            self.inspector_audio = None
            for forward in tuple(self._to_site_audio):
                forward.attach(None)
        await peer.close()
