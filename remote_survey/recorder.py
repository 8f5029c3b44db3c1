"""Recording the site's camera and microphone in short, self-contained segments.

A :class:`SegmentRecorder` reads one bounded :class:`~remote_survey.fanout.FrameSink`
fed by the site's video and audio taps and writes Matroska segments (H.264 video,
libx264 ``ultrafast``/``zerolatency``; Opus audio) of about ``segment_ms`` each. Every
segment starts with a key frame (a fresh encoder per segment), so each file decodes on
its own. A segment is written under a temporary name, closed, hashed, renamed to its
final name (``seg-000001.mkv``...) and only then reported through ``on_segment`` with
its size, SHA-256 and server start/end times: the room appends it to the evidence chain
at once, so the chain is extended as the recording is written.

Frames arrive with their monotonic arrival time; presentation times inside a segment are
arrival times relative to the segment's first video frame, so what the file shows
follows what the server received. A segment holds one picture size (a new segment starts
when the camera's size changes); once closed it is rewritten (stream copy) to declare its
true frame rate, and its entry carries width, height and frames.
Audio arriving before a segment's first video frame
is dropped (there is no segment yet to hold it).

:func:`encode_still` encodes one video frame, at full resolution, as PNG (lossless) for
inspector snapshots.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from relay.durable import rename_durably
from remote_survey.entries import Segment
from remote_survey.fanout import AUDIO_RATE, FrameSink, copy_video
from remote_survey.vault import MediaVault

__all__ = ["SegmentRecorder", "encode_still", "encode_thumbnail"]

_MS = fractions.Fraction(1, 1000)
_AUDIO_BASE = fractions.Fraction(1, AUDIO_RATE)


def encode_thumbnail(frame: av.VideoFrame, width: int = 240) -> bytes:
    """A small PNG of ``frame`` (``width`` pixels wide, aspect kept) for the pages."""
    height = max(2, round(frame.height * width / frame.width) // 2 * 2)
    return encode_still(frame.reformat(width=width, height=height))


def encode_still(frame: av.VideoFrame) -> bytes:
    """A lossless PNG of ``frame`` at its full resolution."""
    codec = av.CodecContext.create("png", "w")
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "rgb24"
    codec.time_base = _MS
    rgb = frame.reformat(format="rgb24")
    rgb.pts = 0
    rgb.time_base = _MS
    data = b"".join(bytes(p) for p in codec.encode(rgb))
    data += b"".join(bytes(p) for p in codec.encode(None))
    return data


@dataclass
class _Open:
    name: str
    path: Path
    container: av.container.OutputContainer
    video: av.VideoStream
    audio: av.AudioStream | None
    first_arrival: float
    start_ms: int
    audio_samples: int = 0
    frames: int = 0  # the next free presentation time (ms)
    count: int = 0  # video frames written


class SegmentRecorder:
    """Writes segments from one sink; ``on_segment`` gets each finished file's entry body."""

    def __init__(
        self,
        directory: Path,
        *,
        now_ms: Callable[[], int],
        on_segment: Callable[[Segment], None],
        segment_ms: int = 3000,
        with_audio: bool = True,
        first_index: int = 0,
        vault: MediaVault | None = None,
    ) -> None:
        self.directory = directory
        self._now_ms = now_ms
        self._on_segment = on_segment
        self.segment_ms = segment_ms
        self.with_audio = with_audio
        self._open: _Open | None = None
        self._count = first_index  # segments already recorded (named from first_index + 1)
        self._vault = vault  # seals each finished segment at rest
        self.segments: list[Segment] = []

    async def run(self, sink: FrameSink) -> None:
        """Record every frame of ``sink`` until it is closed, then close the segment.

        Encoding and muxing run in one worker thread per recorder (in frame order), so
        the event loop keeps serving signalling and RTP; server times are read on the
        loop and each finished segment is reported from the loop.
        """
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="survey-recorder") as worker:
            try:
                while (item := await sink.get()) is not None:
                    arrival, frame = item
                    finished = await loop.run_in_executor(
                        worker, self._frame, arrival, frame, self._now_ms()
                    )
                    if finished is not None:
                        self._report(finished)
            finally:
                finished = await loop.run_in_executor(worker, self._close, self._now_ms())
                if finished is not None:
                    self._report(finished)

    def _report(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._on_segment(segment)

    def _frame(
        self, arrival: float, frame: av.VideoFrame | av.AudioFrame, now_ms: int
    ) -> Segment | None:
        if isinstance(frame, av.VideoFrame):
            return self._video(arrival, frame, now_ms)
        if isinstance(frame, av.AudioFrame):
            self._audio(frame)
        return None

    def _start(self, arrival: float, frame: av.VideoFrame, now_ms: int) -> _Open:
        self._count += 1
        name = f"seg-{self._count:06d}.mkv"
        path = self.directory / f"{name}.partial"
        container = av.open(str(path), mode="w", format="matroska")
        video = container.add_stream("libx264", rate=30)
        video.width = frame.width - frame.width % 2
        video.height = frame.height - frame.height % 2
        video.pix_fmt = "yuv420p"
        video.time_base = _MS
        video.codec_context.time_base = _MS
        video.options = {"preset": "ultrafast", "tune": "zerolatency"}
        # no nominal rate in the file (no Matroska DefaultDuration): the frame rate is what
        # the timestamps say, i.e. what arrived (a phone camera gives 15-30 fps, varying)
        video.codec_context.framerate = fractions.Fraction(0, 1)
        audio = None
        if self.with_audio:
            audio = container.add_stream("libopus", rate=AUDIO_RATE)
            audio.layout = "stereo"
            audio.time_base = _AUDIO_BASE
        return _Open(name, path, container, video, audio, arrival, now_ms)

    def _video(self, arrival: float, frame: av.VideoFrame, now_ms: int) -> Segment | None:
        seg, finished = self._open, None
        if seg is not None and (
            (arrival - seg.first_arrival) * 1000 >= self.segment_ms
            or frame.width - frame.width % 2 != seg.video.width
            or frame.height - frame.height % 2 != seg.video.height
        ):
            finished = self._close(now_ms)
            seg = None
        if seg is None:
            seg = self._open = self._start(arrival, frame, now_ms)
        out = frame.reformat(width=seg.video.width, height=seg.video.height, format="yuv420p")
        if out is frame:  # never stamp the shared received frame
            out = copy_video(frame)
        out.pts = self._monotonic_pts(seg, round((arrival - seg.first_arrival) * 1000))
        out.time_base = _MS
        seg.count += 1
        for packet in seg.video.encode(out):
            seg.container.mux(packet)
        return finished

    @staticmethod
    def _monotonic_pts(seg: _Open, pts: int) -> int:
        # two frames arriving in the same millisecond still need increasing timestamps
        pts = max(pts, seg.frames)
        seg.frames = pts + 1
        return pts

    def _audio(self, frame: av.AudioFrame) -> None:
        seg = self._open
        if seg is None or seg.audio is None:
            return
        out = av.AudioFrame(
            format=frame.format.name, layout=frame.layout.name, samples=frame.samples
        )
        for dst, src in zip(out.planes, frame.planes, strict=True):
            dst.update(bytes(src)[: dst.buffer_size])
        out.sample_rate = frame.sample_rate
        out.pts = seg.audio_samples
        out.time_base = _AUDIO_BASE
        seg.audio_samples += frame.samples
        for packet in seg.audio.encode(out):
            seg.container.mux(packet)

    def _close(self, now_ms: int) -> Segment | None:
        """Finish the open segment (if any): flush, close, hash, rename; return its entry."""
        seg, self._open = self._open, None
        if seg is None:
            return None
        try:
            for stream in (seg.video, seg.audio):
                if stream is not None:
                    for packet in stream.encode(None):
                        seg.container.mux(packet)
        finally:
            seg.container.close()
        if seg.count > 1:
            _declare_rate(seg.path, seg.count)
        final = self.directory / seg.name
        size, digest = _digest(seg.path)
        if self._vault is not None:
            self._vault.seal_file(seg.path, final)
        else:  # the chain names it next: on disk first, bytes and name
            rename_durably(seg.path, final)
        end_ms = max(now_ms, seg.start_ms)
        return Segment(
            seg.name, size, digest, seg.start_ms, end_ms, seg.video.width, seg.video.height,
            seg.count,
        )  # fmt: skip


def _declare_rate(path: Path, frames: int) -> None:
    """Rewrite the closed segment at ``path`` (stream copy) declaring its true frame rate
    (its ``frames - 1`` intervals over the span of their timestamps), so that players and
    ffprobe report what was recorded."""
    tmp = path.with_name(path.name + ".rate")
    with av.open(str(path)) as source:
        if not source.duration:
            return
        span = fractions.Fraction(source.duration, 1_000_000)  # first to last timestamp
        rate = ((frames - 1) / span).limit_denominator(1000)
        with av.open(str(tmp), "w", format="matroska") as target:
            streams = {}
            for stream in source.streams:
                copy = target.add_stream_from_template(stream)
                if isinstance(copy, av.VideoStream):
                    copy.codec_context.framerate = rate
                streams[stream.index] = copy
            for packet in source.demux():
                # the demuxer ends each stream with an empty flush packet; a real packet
                # may lack a dts (Matroska stores only pts), the muxer derives it then
                if packet.size == 0:
                    continue
                packet.stream = streams[packet.stream.index]
                target.mux(packet)
    os.replace(tmp, path)


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
