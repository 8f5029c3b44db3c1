"""Run only inside the network namespace made by test_survey_media_netns.py.

The people around a survey, in real headless Chromium (a phone emulated at 390×844):

- survey 1, location denied on the phone: the phone acknowledges the recording notice
  and goes live before any inspector is there, and says so instead of 勘查进行中; the
  inspector's page explains a refused action in Chinese with the next step, shows who is
  connected with which devices, the snapshot as a thumbnail; a pass verdict without a
  location fix or an acknowledged challenge is not signed until a reason is written, Sign
  asks for confirmation, the sealed report is shown readable next to its signed text, the
  inspector's controls are disabled and the phone's camera is stopped;
- survey 2, camera denied on the phone: both pages say the camera is not allowed (and
  what to do), the session never goes live;
- refusal pages: an expired link and a link opened on another phone say which it is;
- survey 3, the node restarts mid-survey: both pages reconnect by themselves, the
  survey resumes from disk with a gap, the recording continues its numbering and the
  report verifies.

Permissions are granted per browser context (no ``--use-fake-ui-for-media-stream``), so
what is not granted is denied as on a real phone. Screenshots are kept as artefacts in
``$TONGBAN_SURVEY_ARTEFACTS`` (the wrapper test's tmp dir) or this test's tmp dir.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from media_support import WAIT, World, make_plan, make_world, served
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from remote_survey.entries import Gap, Segment
from remote_survey.report_model import Guard, SurveyReport
from remote_survey.session import Role, SurveyState
from remote_survey.web import SurveyHub, survey_app
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
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
ENGLISH_INTERNALS = ("bad-report", "not-live", "Verdict.", "Office.", "reason-required", "null")


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def take(self, page: Page, name: str) -> None:
        await page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


async def _state(page: Page, state: str) -> None:
    await page.wait_for_selector(f"#status[data-state='{state}']", timeout=MS)


async def _phone(browser: Browser, *permissions: str) -> BrowserContext:
    return await browser.new_context(
        permissions=list(permissions),
        geolocation={"latitude": 30.54282, "longitude": 114.3162, "accuracy": 6},
        **PHONE,  # type: ignore[arg-type]
    )


async def _text(page: Page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


async def _location_denied_and_guarded_signing(
    world: World, browser: Browser, shots: Shots
) -> None:
    site_link = f"{world.base_url}/survey/v1/site#token={world.token(Role.SITE, 'site-1')}"
    inspector_link = (
        f"{world.base_url}/survey/v1/inspector#token={world.token(Role.INSPECTOR, 'insp-1')}"
    )
    phone = await _phone(browser, "camera", "microphone")  # no geolocation: denied
    site = await phone.new_page()
    await site.goto(site_link, timeout=MS)
    await site.wait_for_selector("#notice:not([hidden])", timeout=MS)
    assert "全程录像" in await _text(site, "#notice")
    await shots.take(site, "1-phone-recording-notice")
    await site.click("#notice-ack")
    # the phone's media flows (the session is live) but no inspector is there yet
    await _state(site, "waiting_inspector")
    assert "勘查进行中" not in await _text(site, "#status")
    await site.wait_for_selector("#geo[data-state='denied']", timeout=MS)
    assert "未获得定位权限" in await _text(site, "#geo")
    assert await site.get_attribute("#presence-inspector", "data-joined") == "no"
    assert "case-320982-0042" in await _text(site, "#case")
    await shots.take(site, "2-phone-live-waiting-for-inspector-location-denied")

    desk = await browser.new_context(permissions=["microphone"])
    inspector = await desk.new_page()
    await inspector.goto(inspector_link, timeout=MS)
    await _state(inspector, "live")
    await _state(site, "live")
    await site.wait_for_selector("#presence-inspector[data-joined='yes']", timeout=MS)
    presence = "#presence-site[data-joined='yes'][data-camera='on'][data-location='denied']"
    await inspector.wait_for_selector(presence, timeout=MS)
    assert "定位：未授权" in await _text(inspector, "#presence-site")
    await inspector.wait_for_selector("#notice-state[data-acknowledged='yes']", timeout=MS)
    assert "武汉市武昌区中北路 1 号" in await _text(inspector, "#case")
    await inspector.wait_for_selector("#video:not([data-width='0'])", timeout=MS)
    await inspector.click("#snapshot")
    await inspector.wait_for_selector("#snapshots li img.thumb", timeout=MS)
    thumb = await inspector.get_attribute("#snapshots li img.thumb", "src")
    assert thumb is not None
    assert thumb.startswith("data:image/png;base64,")
    # a challenge the site never acknowledges cannot be confirmed
    await inspector.click("#challenge")
    await site.wait_for_selector("#challenge-box:not([hidden])", timeout=MS)
    assert await inspector.is_disabled("#confirm")
    await shots.take(inspector, "3-inspector-live-presence-thumbnail")

    # guarded signing: nothing defaults to pass, nothing is sent while items are open
    items = inspector.locator("#checklist li")
    assert await items.nth(0).locator(".answer").input_value() == ""
    assert await inspector.input_value("#verdict") == ""
    await items.nth(0).locator(".answer").select_option("pass")
    await items.nth(0).locator(".links input").check()
    await inspector.click("#sign")
    error = await _text(inspector, "#error")
    assert "消防通道畅通" in error
    assert "尚未作答" in error
    await items.nth(1).locator(".answer").select_option("pass")
    await inspector.select_option("#verdict", "pass")
    await inspector.click("#sign")
    error = await _text(inspector, "#error")
    assert "无在勘查地点范围内的定位" in error
    assert "无经现场方确认并经您核对的核验码" in error
    assert not any(word in error for word in ENGLISH_INTERNALS)
    assert await inspector.is_hidden("#confirm-box")
    await shots.take(inspector, "4-inspector-reason-required")
    reason = "店主手机定位权限被拒；门牌与营业执照已在截图 #1 中核对"
    await inspector.fill("#guard-reason", reason)
    await inspector.click("#sign")
    await inspector.wait_for_selector("#confirm-box:not([hidden])", timeout=MS)
    assert reason in await _text(inspector, "#confirm-summary")
    await shots.take(inspector, "5-inspector-confirm-signing")
    await inspector.click("#cancel-sign")  # going back signs nothing
    assert live_state(world, "sv-media-0001") is SurveyState.LIVE
    await inspector.click("#sign")
    await inspector.click("#confirm-sign")
    await inspector.wait_for_selector("#report:not([hidden])", timeout=MS)
    view = await _text(inspector, "#report-view")
    assert reason in view
    assert "勘查结论通过" in view
    assert not any(word in view for word in ENGLISH_INTERNALS)
    for control in ("#sign", "#abandon", "#snapshot", "#challenge", "#verdict", "#guard-reason"):
        assert await inspector.is_disabled(control), control
    await _state(site, "completed")
    assert "可以关闭本页面" in await _text(site, "#after")  # what happens next
    await site.wait_for_selector("#preview[data-camera='stopped']", timeout=MS)
    assert await site.evaluate("document.getElementById('preview').srcObject === null")
    await shots.take(inspector, "6-inspector-report-signed")
    await shots.take(site, "7-phone-completed-camera-stopped")
    await inspector.click("#lang")
    assert "Verdict" in await _text(inspector, "#report-view")
    await desk.close()
    await phone.close()


def live_state(world: World, session: str) -> SurveyState:
    live = world.hub.get(session)  # running, or ended (retired from the rooms)
    assert live is not None, session
    return live.room.state


async def _camera_denied(world: World, browser: Browser, shots: Shots) -> None:
    session = "sv-media-0002"
    site_token = world.token(Role.SITE, "site-1", session_id=session)
    inspector_token = world.token(Role.INSPECTOR, "insp-1", session_id=session)
    phone = await _phone(browser, "microphone", "geolocation")  # no camera: denied
    desk = await browser.new_context(permissions=["microphone"])
    inspector = await desk.new_page()
    await inspector.goto(f"{world.base_url}/survey/v1/inspector#token={inspector_token}")
    await _state(inspector, "waiting_site")
    site = await phone.new_page()
    await site.goto(f"{world.base_url}/survey/v1/site#token={site_token}", timeout=MS)
    await site.click("#notice-ack")
    await _state(site, "site_no_camera")
    assert "未获得摄像头权限" in await _text(site, "#camera-problem")
    assert await site.is_visible("#retry")
    await inspector.wait_for_selector("#presence-site[data-camera='denied']", timeout=MS)
    await _state(inspector, "site_no_camera")
    assert "摄像头：未授权" in await _text(inspector, "#presence-site")
    await inspector.click("#snapshot")  # refused in Chinese, with the next step
    # a locator wait: the page's CSP forbids the string evaluation wait_for_function
    # polls with once its first try finds the condition false
    await expect(inspector.locator("#error")).to_contain_text(
        "请等待现场方画面出现后再操作", timeout=MS
    )
    assert live_state(world, session) is SurveyState.SCHEDULED
    await shots.take(site, "8-phone-camera-denied")
    await shots.take(inspector, "9-inspector-site-camera-denied")
    await desk.close()
    await phone.close()


async def _refusals(world: World, browser: Browser, shots: Shots) -> None:
    expired = world.token(
        Role.SITE,
        "site-1",
        session_id="sv-media-0002",
        not_before=datetime.now(UTC) - timedelta(hours=3),
        valid_for=timedelta(hours=1),
    )
    phone = await _phone(browser, "camera", "microphone", "geolocation")
    page = await phone.new_page()
    await page.goto(f"{world.base_url}/survey/v1/site#token={expired}", timeout=MS)
    await _state(page, "refused")
    assert "此链接已过期" in await _text(page, "#reason")
    await shots.take(page, "10-phone-link-expired")
    # survey 2's site link was redeemed by the phone above: another phone is refused
    used = world.token(Role.SITE, "site-1", session_id="sv-media-0002")
    first, other = await _phone(browser, "microphone"), await _phone(browser, "microphone")
    await (await first.new_page()).goto(f"{world.base_url}/survey/v1/site#token={used}")
    second = await other.new_page()
    await second.goto(f"{world.base_url}/survey/v1/site#token={used}", timeout=MS)
    await _state(second, "refused")
    assert "另一部手机" in await _text(second, "#reason")
    await shots.take(second, "11-phone-link-used-on-another-phone")
    for ctx in (phone, first, other):
        await ctx.close()


@asynccontextmanager
async def _serving(hub: SurveyHub, port: int) -> AsyncIterator[int]:
    runner = web.AppRunner(survey_app(hub), shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


async def _restart_mid_survey(world: World, browser: Browser, shots: Shots) -> None:
    """The node stops during a live survey and starts again on the same address: both
    pages reconnect by themselves, the survey resumes with a gap and records on."""
    session = "sv-media-0003"
    world.hub.open(make_plan(datetime.now(UTC), session_id=session))
    site_token = world.token(Role.SITE, "site-1", session_id=session)
    inspector_token = world.token(Role.INSPECTOR, "insp-1", session_id=session)
    phone = await _phone(browser, "camera", "microphone", "geolocation")
    desk = await browser.new_context(permissions=["microphone"])
    async with _serving(world.hub, 0) as port:
        base = f"http://{HOST}:{port}"
        inspector = await desk.new_page()
        await inspector.goto(f"{base}/survey/v1/inspector#token={inspector_token}", timeout=MS)
        site = await phone.new_page()
        await site.goto(f"{base}/survey/v1/site#token={site_token}", timeout=MS)
        await site.click("#notice-ack")
        await _state(site, "live")
        await inspector.wait_for_selector("#segments:not([data-count='0'])", timeout=MS)
    # stopped: the open segment was closed and chained, the session interrupted on disk
    await _state(site, "reconnecting")
    before = world.hub.rooms[session].room
    assert before.state is SurveyState.INTERRUPTED
    segments_before = before.segment_count
    await shots.take(site, "12-phone-node-restarting")
    world.hub = SurveyHub(world.hub.config)  # a new process: only the disk is left
    assert session in world.hub.resume()
    async with _serving(world.hub, port):
        await _state(site, "live")  # the page reconnected by itself, same link
        await _state(inspector, "live")
        room = world.hub.rooms[session].room
        async with asyncio.timeout(WAIT):
            while room.segment_count <= segments_before:
                await asyncio.sleep(0.1)
        await shots.take(site, "13-phone-resumed-after-restart")
        items = inspector.locator("#checklist li")
        for n in range(await items.count()):
            await items.nth(n).locator(".answer").select_option("fail")
            await items.nth(n).locator(".note").fill("需整改")
        await inspector.select_option("#verdict", "fail")
        await inspector.click("#sign")
        await inspector.click("#confirm-sign")
        await inspector.wait_for_selector("#report:not([hidden])", timeout=MS)
        await _state(site, "completed")
    names = [e.body.name for e in room.chain.entries if isinstance(e.body, Segment)]
    assert names == [f"seg-{n:06d}.mkv" for n in range(1, len(names) + 1)]  # one numbering
    gaps = [e.body for e in room.chain.entries if isinstance(e.body, Gap)]
    assert len(gaps) == 1  # the time the node was down
    assert world.verify_cli(session).returncode == 0
    await desk.close()
    await phone.close()


async def test_people_in_the_field_see_presence_reasons_and_guarded_signing(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, segment_ms=2000)
    now = datetime.now(UTC)
    world.hub.open(make_plan(now))
    world.hub.open(make_plan(now, session_id="sv-media-0002"))
    shots = Shots(Path(os.environ.get("TONGBAN_SURVEY_ARTEFACTS", tmp_path)) / "screenshots")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=FLAGS, timeout=MS
        )
        try:
            async with served(world, HOST):
                await _location_denied_and_guarded_signing(world, browser, shots)
                await _camera_denied(world, browser, shots)
                await _refusals(world, browser, shots)
            await _restart_mid_survey(world, browser, shots)
        finally:
            await browser.close()
    ended = world.hub.get("sv-media-0001")  # it ended before the restart: opened from disk
    assert ended is not None
    assert "sv-media-0001" not in world.hub.rooms  # not read at the restart itself
    room = ended.room
    assert room.report_token is not None
    report = SurveyReport.from_payload(b64url_decode(room.report_token.split(".")[1]))
    assert report.guard == Guard(
        ("location", "challenge"), "店主手机定位权限被拒；门牌与营业执照已在截图 #1 中核对"
    )
    assert report.answers[0].snapshots == (report.evidence.snapshots[0].sha256,)
    notes = [e.body for e in room.chain.entries if e.body.KIND == "note"]
    assert [(n.text, n.by) for n in notes] == [("recording-notice-acknowledged", "site-1")]
    assert world.verify_cli().returncode == 0
    for name in ("2-phone-live-waiting-for-inspector-location-denied", "8-phone-camera-denied"):
        assert (shots.folder / f"{name}.png").stat().st_size > 1000
