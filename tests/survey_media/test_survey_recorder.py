"""Segment recording: short self-contained files, each reported (hashed) as it is written."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import av

from remote_survey.entries import Segment
from remote_survey.fanout import FrameSink
from remote_survey.recorder import SegmentRecorder, encode_still


def _video(i: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([i % 250]) * plane.buffer_size)
    return frame


def _audio() -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    frame.sample_rate = 48_000
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame


async def test_segments_rotate_on_time_decode_alone_and_are_reported_with_their_hash(
    tmp_path: Path,
) -> None:
    clock = iter(range(1_000_000, 2_000_000, 7))
    reported: list[Segment] = []
    recorder = SegmentRecorder(
        tmp_path, now_ms=lambda: next(clock), on_segment=reported.append, segment_ms=1000
    )
    sink = FrameSink(1000)
    for i in range(70):  # 3.5 s of 20 fps video with 20 ms audio frames
        t = i * 0.05
        sink.offer((t, _video(i)))
        sink.offer((t, _audio()))
        sink.offer((t + 0.02, _audio()))
    sink.close()
    await asyncio.wait_for(recorder.run(sink), 30)
    assert [s.name for s in reported] == [f"seg-00000{n}.mkv" for n in range(1, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.name for s in reported]
    previous_end = 0
    for seg in reported:
        data = (tmp_path / seg.name).read_bytes()
        assert (seg.size, seg.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert seg.start_ms >= previous_end
        assert seg.end_ms >= seg.start_ms
        previous_end = seg.end_ms
        with av.open(str(tmp_path / seg.name)) as container:
            video = sum(1 for _ in container.decode(video=0))
        with av.open(str(tmp_path / seg.name)) as container:
            audio = sum(1 for _ in container.decode(audio=0))
        assert video in (20, 10)  # 1 s at 20 fps; the last segment holds the last 0.5 s
        assert audio >= video
        assert (seg.width, seg.height, seg.frames) == (320, 240, video)
        with av.open(str(tmp_path / seg.name)) as container:
            rate = container.streams.video[0].average_rate
        assert rate is not None
        assert 19 <= float(rate) <= 21  # the 20 fps that arrived, not a nominal 30
    assert recorder.segments == reported


async def test_a_resolution_change_starts_a_new_segment(tmp_path: Path) -> None:
    reported: list[Segment] = []
    recorder = SegmentRecorder(
        tmp_path, now_ms=lambda: 5, on_segment=reported.append, with_audio=False
    )
    sink = FrameSink(100)
    for i in range(5):
        sink.offer((i * 0.05, _video(i)))
    for i in range(5, 10):  # the phone turned: portrait
        sink.offer((i * 0.05, _video(i, 240, 320)))
    sink.close()
    await asyncio.wait_for(recorder.run(sink), 30)
    assert len(reported) == 2
    with av.open(str(tmp_path / reported[1].name)) as container:
        frame = next(iter(container.decode(video=0)))
    assert (frame.width, frame.height) == (240, 320)
    # the manifest's entries say which size each segment holds
    assert [(s.width, s.height, s.frames) for s in reported] == [(320, 240, 5), (240, 320, 5)]


async def test_a_short_segment_of_a_still_picture_keeps_every_frame_when_its_rate_is_declared(
    tmp_path: Path,
) -> None:
    """The segment closed when the site leaves may be a few frames of an unchanging
    picture; the demuxer then gives its video packets no dts. The rewrite declaring the
    frame rate took that for the end of the stream and dropped the whole video, leaving
    a chained segment without a picture (or, video only, no file at all)."""
    still = av.VideoFrame(640, 480, "yuv420p")
    for plane in still.planes:
        plane.update(bytes([100]) * plane.buffer_size)
    for with_audio in (True, False):
        for frames in range(1, 13):
            folder = tmp_path / f"{with_audio}-{frames}"
            folder.mkdir()
            reported: list[Segment] = []
            recorder = SegmentRecorder(
                folder, now_ms=lambda: 5, on_segment=reported.append, with_audio=with_audio
            )
            sink = FrameSink(100)
            for i in range(frames):  # about 22 fps, 20 ms audio frames in between
                sink.offer((i * 0.045, still))
                sink.offer((i * 0.045 + 0.01, _audio()))
                sink.offer((i * 0.045 + 0.03, _audio()))
            sink.close()
            await asyncio.wait_for(recorder.run(sink), 30)
            assert [s.frames for s in reported] == [frames]
            with av.open(str(folder / reported[0].name)) as container:
                decoded = sum(1 for _ in container.decode(video=0))
            assert decoded == frames, f"{frames} frames, audio {with_audio}: {decoded} decode"


def test_a_still_is_a_lossless_png_at_full_resolution() -> None:
    frame = av.VideoFrame(1280, 720, "rgb24")
    frame.planes[0].update(bytes(range(256)) * (frame.planes[0].buffer_size // 256))
    png = encode_still(frame)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with av.open(io.BytesIO(png)) as container:
        decoded = next(iter(container.decode(video=0)))
    assert (decoded.width, decoded.height) == (1280, 720)
    assert bytes(decoded.to_rgb().planes[0]) == bytes(frame.planes[0])
