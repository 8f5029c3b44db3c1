"""Run only inside the network namespace made by test_survey_media_netns.py.

Real headless Chromium (Debian's /usr/bin/chromium, fake camera and microphone) joins
as the site party and as the inspector, from two browser contexts, against the real
app on 127.0.0.2. The session goes live, a snapshot and a challenge are taken, the
site's location is shared, the phone reloads the page and rejoins with the same link
(a gap in the chain), the checklist is filled and the report is signed on the
page. Then: every segment decodes, the segments match the sealed manifest, ``tongban
survey verify`` passes, and fails once any segment or snapshot is altered, removed or
reordered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from media_support import WAIT, World, make_plan, make_world, served
from playwright.async_api import Page, async_playwright

from relay.cli import main as cli_main
from remote_survey.report_model import SurveyReport
from remote_survey.session import Role
from signing.encoding import b64url_decode

HOST = "127.0.0.2"
MS = int(WAIT * 1000)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


async def _wait_state(page: Page, state: str) -> None:
    await page.wait_for_selector(f"#status[data-state='{state}']", timeout=MS)


async def _survey_in_browsers(world: World) -> str:
    site_link = f"{world.base_url}/survey/v1/site#token={world.token(Role.SITE, 'site-1')}"
    inspector_token = world.token(Role.INSPECTOR, "insp-1")
    inspector_link = f"{world.base_url}/survey/v1/inspector#token={inspector_token}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=FLAGS, timeout=MS
        )
        try:
            site_ctx = await browser.new_context(
                geolocation={"latitude": 30.54282, "longitude": 114.3162, "accuracy": 6},
                permissions=["geolocation", "camera", "microphone"],
                viewport={"width": 390, "height": 844},
                is_mobile=True,
                has_touch=True,
            )
            inspector_ctx = await browser.new_context(permissions=["microphone"])
            inspector = await inspector_ctx.new_page()
            site = await site_ctx.new_page()
            await inspector.goto(inspector_link, timeout=MS)
            assert await inspector.text_content("h1") == "远程勘查 — 勘查端"  # Chinese first
            await site.goto(site_link, timeout=MS)
            await site.click("#notice-ack")  # the recording notice, acknowledged
            # live: the inspector sees the site's (fake) camera, segments are recorded
            await _wait_state(inspector, "live")
            await _wait_state(site, "live")
            await inspector.wait_for_selector("#video:not([data-width='0'])", timeout=MS)
            await inspector.wait_for_selector("#segments:not([data-count='0'])", timeout=MS)
            # snapshot
            await inspector.click("#snapshot")
            await inspector.wait_for_selector("#snapshots li", timeout=MS)
            # challenge: the code appears on the phone, the inspector sees it was shown
            await inspector.fill("#instruction", "请举起三根手指")
            await inspector.click("#challenge")
            await site.wait_for_selector("#challenge-box:not([hidden])", timeout=MS)
            code = await site.text_content("#challenge-code")
            assert code is not None
            assert code.startswith(await inspector.text_content("#challenge-code") or "-")
            assert await inspector.is_disabled("#confirm")  # not before the site says so
            await site.click("#challenge-ack")
            await inspector.wait_for_selector("#challenge-shown:not([hidden])", timeout=MS)
            await inspector.click("#confirm")
            await inspector.wait_for_selector(
                "#challenge-result[data-result='confirmed']", timeout=MS
            )
            # the phone's location reached the inspector as a distance to the site
            await inspector.wait_for_selector("#distance[data-m]", timeout=MS)
            assert "米" in (await inspector.text_content("#distance") or "")
            # the phone reloads the page: same link, same device (kept in localStorage)
            await site.reload(timeout=MS)
            await _wait_state(site, "live")
            await _wait_state(inspector, "live")
            # the English switch
            await site.click("#lang")
            assert await site.text_content("h1") == "Remote survey — site"
            # checklist: item 1 passes with the snapshot linked, item 2 gets a note
            items = inspector.locator("#checklist li")
            assert await items.count() == 2
            await items.nth(0).locator(".answer").select_option("pass")
            await items.nth(0).locator(".links input").check()
            await items.nth(1).locator(".answer").select_option("note")
            await items.nth(1).locator(".note").fill("通道有纸箱, 已当场清理")
            await inspector.select_option("#verdict", "pass")
            await inspector.click("#sign")
            await inspector.wait_for_selector("#confirm-box:not([hidden])", timeout=MS)
            await inspector.click("#confirm-sign")
            await inspector.wait_for_selector("#report:not([hidden])", timeout=MS)
            assert await inspector.text_content("#error") == ""
            await _wait_state(site, "completed")
            await site.wait_for_selector("#preview[data-camera='stopped']", timeout=MS)
            return await inspector.input_value("#report-token")
        finally:
            await browser.close()


def _ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=width,height,avg_frame_rate,nb_read_frames:format=duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(done.stdout)
    # a segment of one frame (cut short by a reload) has no length: no duration at all
    return {**data["streams"][0], "duration": data["format"].get("duration")}


def _verify(world: World, media: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = [
        "survey",
        "verify",
        str(media / "report.jws"),
        "--media",
        str(media),
        "--trust",
        str(world.bundle_path),
    ]
    capsys.readouterr()
    code = cli_main(args)
    return code, capsys.readouterr().err


@pytest.mark.timeout(180)
async def test_site_and_inspector_in_chromium_produce_a_verifiable_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path, segment_ms=2000)
    live = world.hub.open(make_plan(datetime.now(UTC)))
    async with served(world, HOST):
        token = await _survey_in_browsers(world)
    media = live.room.media_dir
    assert (media / "report.jws").read_text().strip() == token
    report = SurveyReport.from_payload(b64url_decode(token.split(".")[1]))
    segments = report.evidence.segments
    assert segments
    assert len(report.evidence.snapshots) == 1
    assert report.evidence.challenges[0].result == "confirmed"
    assert report.evidence.challenges[0].shown_ms is not None  # acknowledged on the phone
    assert report.guard is None  # location and challenge proven: no reason needed
    assert report.answers[0].snapshots == (report.evidence.snapshots[0].sha256,)
    assert report.evidence.geolocation.to_json()["fixes"] >= 1
    assert len(report.evidence.interruptions) == 1  # the reload, as a gap
    # the recording decodes and is exactly the manifest's segments, in order
    on_disk = sorted(p.name for p in media.glob("seg-*.mkv"))
    assert on_disk == [s.name for s in segments]
    frames = 0
    for seg in segments:
        with av.open(str(media / seg.name)) as container:
            frames += sum(1 for _ in container.decode(video=0))
    assert frames >= 10
    # ffprobe (ffmpeg, an implementation we did not write) agrees with the manifest on
    # every segment's picture size and frame count, and its frame rate is the real one
    # (about 20 fps from Chromium's fake camera), not a nominal 30
    for seg in segments:
        probe = _ffprobe(media / seg.name)
        assert (probe["width"], probe["height"]) == (seg.width, seg.height), seg
        assert int(probe["nb_read_frames"]) == seg.frames, (probe, seg)
        if seg.frames < 10:
            continue  # too short to tell a frame rate (one frame has no duration)
        assert probe["duration"] is not None, (probe, seg)
        duration = float(probe["duration"])
        if duration > 0.5:
            measured = seg.frames / duration
            claimed = float(Fraction(probe["avg_frame_rate"]))
            assert abs(claimed - measured) <= 0.15 * measured, (probe, seg)
    with av.open(str(media / report.evidence.snapshots[0].name)) as still:
        assert next(iter(still.decode(video=0))).width >= 320
    # the real command, in a child process: valid
    done = world.verify_cli()
    assert done.returncode == 0, done.stderr

    def variant(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(media, copy)
        return copy

    first, snap = segments[0].name, report.evidence.snapshots[0].name
    altered = variant("altered")
    data = bytearray((altered / first).read_bytes())
    data[len(data) // 2] ^= 0x01
    (altered / first).write_bytes(bytes(data))
    code, err = _verify(world, altered, capsys)
    assert code == 1
    assert f"error[media-digest-mismatch]: {first} was altered" in err

    removed = variant("removed")
    (removed / snap).unlink()
    code, err = _verify(world, removed, capsys)
    assert code == 1
    assert "error[media-missing]" in err
    assert snap in err

    snap_altered = variant("snap-altered")
    with (snap_altered / snap).open("ab") as f:
        f.write(b"\0")
    code, err = _verify(world, snap_altered, capsys)
    assert code == 1
    assert "error[media-size-mismatch]" in err

    segment_removed = variant("segment-removed")
    (segment_removed / segments[-1].name).unlink()
    code, err = _verify(world, segment_removed, capsys)
    assert code == 1
    assert f"{segments[-1].name} is missing" in err

    if len(segments) >= 2:  # swap two segments' files: both digests differ
        swapped = variant("swapped")
        a, b = swapped / segments[0].name, swapped / segments[1].name
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        code, err = _verify(world, swapped, capsys)
        assert code == 1
        assert err.count("error[media-") >= 2

    reordered = variant("reordered")  # the chain's entries in another order
    lines = (reordered / "evidence.jsonl").read_bytes().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    (reordered / "evidence.jsonl").write_bytes(b"".join(lines))
    code, err = _verify(world, reordered, capsys)
    assert code == 1
    assert "error[chain-broken-link]" in err
