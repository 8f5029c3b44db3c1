"""Bounded fan-out of received media: every track consumed, no queue without a limit.

aiortc decodes each received track into an unbounded queue inside the track, so a track
nobody reads grows memory without limit. A :class:`TrackTap` starts reading its track
the moment it arrives and hands each frame to its :class:`FrameSink` s; a sink keeps at
most ``maxlen`` frames and drops the oldest when a slow consumer (a stalled viewer, a
busy recorder) falls behind. The tap also keeps the latest video frame for snapshots.

:class:`ForwardTrack` is what the server sends to a participant: it reads from the
sink of whichever tap is attached at the moment (the site's camera, the inspector's
microphone), survives the source leaving and coming back (a rejoin), re-stamps
timestamps so that they never jump backwards, and sends silence (audio) or nothing
(video) while no source is attached.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import time
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["AUDIO_RATE", "ForwardTrack", "FrameSink", "TrackTap", "copy_video"]

Frame = av.VideoFrame | av.AudioFrame
Item = tuple[float, Frame]  # (monotonic arrival time, frame)
AUDIO_RATE = 48_000
_log = logging.getLogger("tongban.survey.media")

_AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
_VIDEO_BASE = fractions.Fraction(1, 90_000)
_AUDIO_BASE = fractions.Fraction(1, AUDIO_RATE)
_EPOCH = time.monotonic()  # shared by every forward track: a frame sent to several
# participants is stamped with (nearly) the same value whichever track stamps it


def copy_video(frame: av.VideoFrame) -> av.VideoFrame:
    """A private copy of ``frame`` (pixels only), row by row when line sizes differ.

    A received frame is shared by every consumer; aiortc's encoders run in worker
    threads and set ``pts`` and ``pict_type`` on the frame they are given, so each
    forward track sends its own copy.
    """
    out = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for dst, src in zip(out.planes, frame.planes, strict=True):
        d, s = memoryview(dst).cast("B"), memoryview(src).cast("B")
        if dst.line_size == src.line_size:
            d[:] = s[: d.nbytes]
            continue
        width = min(dst.line_size, src.line_size)
        for row in range(dst.height):
            a, b = row * dst.line_size, row * src.line_size
            d[a : a + width] = s[b : b + width]
    return out


class FrameSink:
    """A bounded buffer of frames for one consumer; the oldest frame is dropped when full."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("a sink holds at least one frame")
        self._frames: collections.deque[Item] = collections.deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, item: Item) -> None:
        if self._closed:
            return
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(item)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed and not self._frames

    async def get(self) -> Item | None:
        """The next (arrival time, frame), or None once the sink is closed and drained."""
        while not self._frames:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()


class TrackTap:
    """Consumes one received track at once and copies each frame to its sinks."""

    def __init__(self, track: MediaStreamTrack, on_frame: Callable[[Frame], None] | None = None):
        self.track = track
        self.kind: str = track.kind
        self.latest: av.VideoFrame | None = None
        self.frames = 0
        self._sinks: set[FrameSink] = set()
        self._on_frame = on_frame
        self.ended = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    def add_sink(self, sink: FrameSink) -> FrameSink:
        self._sinks.add(sink)
        if self.ended.is_set():
            sink.close()
        return sink

    def remove_sink(self, sink: FrameSink) -> None:
        self._sinks.discard(sink)

    async def _pump(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                    continue
                self.frames += 1
                if isinstance(frame, av.VideoFrame):
                    self.latest = frame
                item = (time.monotonic(), frame)
                for sink in tuple(self._sinks):
                    sink.offer(item)
                if self._on_frame is not None:
                    try:
                        self._on_frame(frame)
                    except Exception:  # the frames must go on being read, or they pile up
                        _log.exception("a received frame's handler failed")
        finally:
            self.ended.set()
            for sink in tuple(self._sinks):
                sink.close()

    async def stop(self) -> None:
        self.track.stop()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.ended.set()
        for sink in tuple(self._sinks):
            sink.close()


class ForwardTrack(MediaStreamTrack):
    """A track sent to a participant, fed by whichever tap is attached at the moment."""

    def __init__(self, kind: str, maxlen: int) -> None:
        super().__init__()
        self.kind = kind
        self._maxlen = maxlen
        self._tap: TrackTap | None = None
        self._sink: FrameSink | None = None
        self._changed = asyncio.Event()
        self._samples = round((time.monotonic() - _EPOCH) * AUDIO_RATE)

    def attach(self, tap: TrackTap | None) -> None:
        """Forward frames of ``tap`` from now on (None: no source)."""
        if self._tap is not None and self._sink is not None:
            self._tap.remove_sink(self._sink)
            self._sink.close()
        self._tap = tap
        self._sink = tap.add_sink(FrameSink(self._maxlen)) if tap is not None else None
        self._changed.set()

    @property
    def pending(self) -> int:
        """Frames waiting to be sent (at most ``maxlen``)."""
        return len(self._sink) if self._sink is not None else 0

    def stop(self) -> None:
        self.attach(None)
        super().stop()

    async def _next_from_source(self) -> Frame | None:
        sink = self._sink
        if sink is None:
            return None
        item = await sink.get()
        if item is None:
            if sink is self._sink:
                self._sink = None  # the source ended; wait for the next one
            return None
        return item[1]

    async def _silence(self) -> av.AudioFrame:
        due = _EPOCH + self._samples / AUDIO_RATE
        delay = due - time.monotonic()
        if delay > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=_AUDIO_SAMPLES)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = AUDIO_RATE
        return frame

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            if self._sink is not None:
                frame = await self._next_from_source()
                if frame is not None:
                    break
                continue
            if self.kind == "audio":
                frame = await self._silence()
                break
            self._changed.clear()
            await self._changed.wait()
            if self.readyState != "live":
                raise MediaStreamError
        return self._stamp(frame)

    def _stamp(self, frame: Frame) -> Frame:
        """Give the frame our own clock so timestamps never jump back on a source switch.

        Each receiver gets its own copy (see :func:`copy_video`); audio counts samples,
        video takes the shared monotonic clock.
        """
        if isinstance(frame, av.AudioFrame):
            copy = av.AudioFrame(
                format=frame.format.name, layout=frame.layout.name, samples=frame.samples
            )
            for dst, src in zip(copy.planes, frame.planes, strict=True):
                dst.update(bytes(src)[: dst.buffer_size])  # decoders over-allocate
            copy.sample_rate = frame.sample_rate
            copy.pts = self._samples
            copy.time_base = _AUDIO_BASE
            self._samples += frame.samples
            return copy
        video = copy_video(frame)
        video.pts = round((time.monotonic() - _EPOCH) * 90_000)
        video.time_base = _VIDEO_BASE
        return video
