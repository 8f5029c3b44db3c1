"""Stopping the site's recording: the open segment is always finished before it returns.

A site that leaves while the machine is busy may take a while to have its last
segment encoded; the room must not go on (interrupt, let the site rejoin and start a
second recording on the same recorder) while the first one is still writing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from media_support import WAIT, make_plan, make_world

import remote_survey.peer
from remote_survey.peer import RoomMedia
from remote_survey.room import SurveyRoom


async def test_stop_recording_waits_for_a_slow_last_segment_and_warns_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path)
    media = RoomMedia(SurveyRoom(make_plan(datetime.now(UTC)), world.hub.config), lambda m: None)
    monkeypatch.setattr(remote_survey.peer, "_STOP_WARNING", 0.01)
    written = asyncio.Event()

    async def slow_recording() -> None:  # the last segment is still being encoded
        await written.wait()

    media._recording = asyncio.ensure_future(slow_recording())
    stopping = asyncio.ensure_future(media.stop_recording())
    with caplog.at_level(logging.WARNING, logger="tongban.survey.media"):
        async with asyncio.timeout(WAIT):
            while "still being written" not in caplog.text:
                await asyncio.sleep(0.01)
    assert not stopping.done()  # past the warning, still waiting for the segment
    written.set()
    await asyncio.wait_for(stopping, WAIT)
    assert media._recording is None


async def test_a_failed_recording_is_logged_and_the_stop_completes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path)
    media = RoomMedia(SurveyRoom(make_plan(datetime.now(UTC)), world.hub.config), lambda m: None)

    async def broken_recording() -> None:
        raise OSError("disk full")

    media._recording = asyncio.ensure_future(broken_recording())
    with caplog.at_level(logging.ERROR, logger="tongban.survey.media"):
        await asyncio.wait_for(media.stop_recording(), WAIT)
    assert "the recording failed" in caplog.text
    assert "disk full" in caplog.text
    assert media._recording is None


async def test_a_site_that_joins_before_the_window_starts_the_survey_once_it_opens(
    tmp_path: Path,
) -> None:
    """Links are valid 15 minutes before the window; the first frame's refused start
    ended the read loop, nothing tried again, and the survey never started."""
    from dataclasses import replace
    from datetime import timedelta

    import av

    from remote_survey.session import SurveyState, TimeWindow

    world = make_world(tmp_path)
    at = datetime.now(UTC)
    clock = [at]
    config = dataclasses.replace(world.hub.config, clock=lambda: clock[0])
    window = TimeWindow(at + timedelta(minutes=10), at + timedelta(hours=1))
    room = SurveyRoom(replace(make_plan(at), window=window), config)
    notes: list[dict[str, object]] = []
    media = RoomMedia(room, notes.append)
    media._waiting_live = True  # as claim_site leaves it for a site that joined
    frame = av.VideoFrame(64, 48, "yuv420p")
    for _ in range(3):
        media._site_frame(frame)
    assert room.state is SurveyState.SCHEDULED
    assert notes == []
    clock[0] = at + timedelta(minutes=11)  # the window is open
    media._site_frame(frame)
    assert room.state is SurveyState.LIVE
    assert notes == [{"type": "state", "state": "live"}]
