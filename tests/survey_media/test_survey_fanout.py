"""Bounded fan-out: every received track is consumed, no consumer can grow memory."""

from __future__ import annotations

import asyncio

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from remote_survey.fanout import ForwardTrack, FrameSink, TrackTap, copy_video


class FakeTrack(MediaStreamTrack):
    """Gives ``count`` frames as fast as they are asked for, then ends."""

    def __init__(self, kind: str, count: int, tag: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.left = count
        self.tag = tag

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        await asyncio.sleep(0)
        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        if self.kind == "video":
            frame = av.VideoFrame(64 + self.tag * 2, 48, "yuv420p")
        else:
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            frame.sample_rate = 48_000
            for plane in frame.planes:
                plane.update(bytes([self.tag]) * plane.buffer_size)
        return frame


async def test_a_track_nobody_watches_is_still_consumed_to_the_end() -> None:
    track = FakeTrack("video", 500)
    tap = TrackTap(track)
    await asyncio.wait_for(tap.ended.wait(), 10)
    assert tap.frames == 500
    assert track.left == 0
    assert tap.latest is not None


async def test_a_stalled_viewer_holds_at_most_its_bound_and_counts_the_drops() -> None:
    tap = TrackTap(FakeTrack("video", 2000))
    stalled = tap.add_sink(FrameSink(2))
    await asyncio.wait_for(tap.ended.wait(), 10)
    assert len(stalled) == 2
    assert stalled.dropped == 1998
    got = [await stalled.get(), await stalled.get(), await stalled.get()]
    assert got[0] is not None
    assert got[2] is None  # closed and drained after the source ended


async def test_a_forward_track_survives_its_source_leaving_and_a_new_one_coming() -> None:
    forward = ForwardTrack("audio", 4)
    first = TrackTap(FakeTrack("audio", 3, tag=1))
    forward.attach(first)
    frames = [await asyncio.wait_for(forward.recv(), 5) for _ in range(3)]
    await asyncio.wait_for(first.ended.wait(), 5)
    silence = await asyncio.wait_for(forward.recv(), 5)  # no source: silence, paced
    assert bytes(silence.planes[0])[:4] == b"\x00\x00\x00\x00"
    second = TrackTap(FakeTrack("audio", 50, tag=2))
    forward.attach(second)
    later = await asyncio.wait_for(forward.recv(), 5)
    assert bytes(later.planes[0])[:1] in (b"\x00", b"\x02")  # silence racing, or the new source
    while bytes(later.planes[0])[:1] != b"\x02":
        later = await asyncio.wait_for(forward.recv(), 5)
    stamps = [f.pts for f in (*frames, silence, later)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)  # never repeated, never backwards
    forward.stop()
    await second.stop()


async def test_a_video_forward_track_waits_for_a_source_without_buffering() -> None:
    forward = ForwardTrack("video", 2)
    pending = asyncio.ensure_future(forward.recv())
    await asyncio.sleep(0.05)
    assert not pending.done()
    tap = TrackTap(FakeTrack("video", 100))
    forward.attach(tap)
    frame = await asyncio.wait_for(pending, 5)
    assert isinstance(frame, av.VideoFrame)
    await asyncio.wait_for(tap.ended.wait(), 5)
    assert forward.pending == 2  # 99 frames offered, the freshest two kept
    forward.stop()


def test_each_receiver_gets_its_own_video_frame_with_the_same_pixels() -> None:
    # aiortc encoders set pts/pict_type on the frame they get, in worker threads
    frame = av.VideoFrame(642, 480, "yuv420p")
    for plane in frame.planes:
        plane.update(
            bytes(range(256)) * (plane.buffer_size // 256) + bytes(plane.buffer_size % 256)
        )
    frame.pts = 7
    copy = copy_video(frame)
    assert copy is not frame
    assert [bytes(p) for p in copy.planes] == [bytes(p) for p in frame.planes]
    copy.pts = 99
    assert frame.pts == 7


async def test_a_failing_frame_handler_never_stops_the_track_being_read() -> None:
    """The handler's exception ended the read loop: aiortc went on decoding the site's
    video into the track's queue, which nothing read any more (memory without limit)."""
    seen: list[int] = []

    def handler(frame: av.VideoFrame | av.AudioFrame) -> None:
        seen.append(1)
        raise RuntimeError("refused")

    track = FakeTrack("video", 300)
    tap = TrackTap(track, on_frame=handler)
    await asyncio.wait_for(tap.ended.wait(), 10)
    assert tap.frames == len(seen) == 300
    assert track.left == 0
