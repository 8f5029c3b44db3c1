"""The tracking page in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

An applicant opens /track, enters the case number and access code, sees the timeline in
Chinese, switches to English, and sees the handling office's next step appear without a
reload (WebSocket). Wrong codes are throttled on the page; another applicant's case is
never shown. These tests fail (never skip) when Chromium is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from casekit import HANDLING
from casekit_offices import make_offices, serve
from playwright.async_api import Browser, Page, async_playwright, expect

from agreements.calendar import WorkingCalendar
from relay.cases.model import EventKind

CHROMIUM = "/usr/bin/chromium"
MS = 30_000  # generous: the machine may be busy with other suites
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BOOKS = "publication-retail-licence"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"headless Chromium is required at {CHROMIUM} for the tracking page tests: "
            "install Debian's chromium package (scripts/system-deps.sh does, as root)"
        )
    async with async_playwright() as pw:  # a fresh temporary profile per launch
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=MS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _look_up(page: Page, base: str, case_id: str, code: str) -> None:
    await page.goto(f"{base}/track", timeout=MS)
    await page.fill("#case", case_id)
    await page.fill("#code", code)
    await page.click("#lookup-button")


async def test_applicant_sees_chinese_then_english_and_a_live_new_step(browser, offices):
    opened = await offices.r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-2026-0042",
        materials=["营业执照", "身份证"],
    )  # fmt: skip
    await offices.deliver()
    async with serve(offices.r.public()) as base:
        context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        page = await context.new_page()
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        await _look_up(page, base, "WC-2026-0042", opened.access_code)
        await page.wait_for_selector("#state[data-state='submitted']", timeout=MS)
        assert await page.text_content("h1") == "办件进度查询"
        assert await page.text_content("#state") == "办理地审查中"
        labels = await page.locator("#timeline li .label").all_text_contents()
        assert labels == ["收件并提交办理地"]
        assert "营业执照" in await page.text_content("#timeline")
        await page.evaluate("window.__stillTheSamePage = true")

        await page.click("#lang-switch")
        # a locator wait, not wait_for_function: the page's CSP forbids the string
        # evaluation that polling a JavaScript predicate needs
        await expect(page.locator("#state")).to_have_text(
            "Under review by the handling office", timeout=MS
        )
        assert await page.text_content("h1") == "Case progress"
        labels = await page.locator("#timeline li .label").all_text_contents()
        assert labels == ["Received and sent to the handling office"]

        # the handling office asks for a correction; the page shows what is missing
        await offices.h.desk.act(
            "WC-2026-0042", EventKind.REQUEST_CORRECTION,
            {"missing": ["经营场所证明"], "note": "内部：申请人电话未接"},
        )  # fmt: skip
        await offices.deliver()
        await page.wait_for_selector("#timeline li[data-event='request-correction']", timeout=MS)
        assert await page.is_visible("#missing-box")
        assert await page.text_content("#missing") == "经营场所证明"
        assert await page.text_content("#deadline") == "clock paused during correction"
        assert "内部" not in await page.content()
        assert await page.evaluate("window.__stillTheSamePage") is True
        # no reload (the window's flag stands); the switch only wrote the language into
        # the address
        assert [u for u in navigations if "/track" in u] == [
            f"{base}/track",
            f"{base}/track?lang=en",
        ]
        # the choice is kept: a reload, and the licence check page, stay in English (each
        # went back to Chinese)
        assert "lang=en" in page.url
        await page.reload()
        await expect(page.locator("h1")).to_have_text("Case progress", timeout=MS)
        await page.goto(f"{base}/v")
        await expect(page.locator("html")).to_have_attribute("lang", "en", timeout=MS)
        await context.close()


async def test_guessing_is_throttled_and_another_case_is_never_shown(browser, offices):
    mine = await offices.r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-A"
    )
    await offices.r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-B"
    )
    async with serve(offices.r.public()) as base:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{base}/track", timeout=MS)
        statuses = []
        for _ in range(6):  # WC-B with WC-A's code, again and again
            await page.fill("#case", "WC-B")
            await page.fill("#code", mine.access_code)
            async with page.expect_response(
                lambda r: r.url.endswith("/public/v1/track"), timeout=MS
            ) as answer:
                await page.click("#lookup-button")
            statuses.append((await answer.value).status)
            await page.wait_for_selector("#error:not([hidden])", timeout=MS)
            if statuses[-1] == 404:
                assert await page.text_content("#error") == (
                    "办件编号或查询码不正确：请核对受理回执上的编号和查询码；"
                    "查询码遗失的，请到受理窗口重新获取。"
                )
        assert statuses == [404] * 5 + [429]
        assert await page.text_content("#error") == "查询过于频繁，请稍后再试。"
        assert await page.is_hidden("#case-view")
        assert "WC-B" not in (await page.text_content("#case-view") or "")
        await context.close()


async def test_verify_page_reports_a_licence_in_chinese_and_english(browser, offices, clock):
    from datetime import timedelta

    from signing.licence import Licence, issue_licence

    licence = Licence(
        issuer_node=HANDLING, number="XK-320982-0007", licence_type=BOOKS,
        holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=clock(), valid_from=clock(), valid_until=clock() + timedelta(days=365),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=clock())
    async with serve(offices.r.public()) as base:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{base}/verify#token={token}", timeout=MS)
        await page.wait_for_selector("#verdict[data-valid='true']", timeout=MS)
        assert await page.text_content("#verdict") == "有效"
        assert "大丰区行政审批局" in await page.text_content("#licence")
        await page.click("#lang-switch")
        assert await page.text_content("#verdict") == "Valid"
        assert "Dafeng Approval Bureau" in await page.text_content("#licence")
        await page.fill("#token", token[:-8] + "AAAAAAAA")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#verdict[data-valid='false']", timeout=MS)
        outcome = await page.get_attribute("tr[data-check='signature']", "data-outcome")
        assert outcome == "failed"
        await context.close()


async def _refused(**_):
    from relay.core.errors import NotAuthorized

    raise NotAuthorized("expired")


async def test_rating_and_complaint_from_the_page_reach_the_handling_office(
    browser, offices, clock
):
    from datetime import timedelta

    from signing.licence import Licence, issue_licence

    r, h = offices.r, offices.h
    opened = await r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-RATED"
    )
    await offices.deliver()
    await h.desk.act("WC-RATED", EventKind.ACCEPT, {})
    await h.desk.act("WC-RATED", EventKind.DECIDE, {"decision": "approve"})
    licence = Licence(
        issuer_node=HANDLING, number="XK-9", licence_type=BOOKS, holder_id="H-9",
        holder_name="武昌书店", scope="图书零售", department_zh="大丰区行政审批局",
        department_en="Dafeng Approval Bureau", issued_at=clock(), valid_from=clock(),
        valid_until=clock() + timedelta(days=365),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=clock())
    issued = {"licence": token, "licence_number": "XK-9"}
    await h.desk.act("WC-RATED", EventKind.ISSUE_LICENCE, issued)
    await offices.deliver()
    await r.desk.act("WC-RATED", EventKind.DELIVER, {"method": "window"})
    await r.desk.act("WC-RATED", EventKind.CONCLUDE, {})
    async with serve(r.public()) as base:
        context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        page = await context.new_page()
        await _look_up(page, base, "WC-RATED", opened.access_code)
        await page.wait_for_selector("#state[data-state='concluded']", timeout=MS)
        assert await page.text_content("#licence") == "XK-9"
        timeline = await page.text_content("#timeline")
        assert "窗口领取" in timeline  # the delivery method in the applicant's language
        assert "window" not in timeline
        assert await page.is_visible("#rating-box")
        await page.check("input[name=rating][value=average]")
        await page.fill("#comment", "等了一周")
        with pytest.MonkeyPatch.context() as patch:  # the agreement refuses the packet once
            patch.setattr(r.desk._relay, "create_packet", _refused)
            await page.click("#rating-form button[type=submit]")
            await page.wait_for_selector("#error:not([hidden])", timeout=MS)
        assert await page.text_content("#error") == (
            "提交未成功，请稍后再试；如仍不成功，请联系办理机关。"
        )
        assert r.desk.get("WC-RATED").case.view.rating is None
        await page.click("#rating-form button[type=submit]")
        await page.wait_for_selector("#rated-box:not([hidden])", timeout=MS)
        assert await page.is_hidden("#error")
        assert await page.is_hidden("#rating-box")
        await page.fill("#complaint-text", "证照打印不清楚")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(r.desk._relay, "create_packet", _refused)
            await page.click("#complaint-form button[type=submit]")
            await page.wait_for_selector("#error:not([hidden])", timeout=MS)
        assert await page.input_value("#complaint-text") == "证照打印不清楚"  # not lost
        await page.click("#complaint-form button[type=submit]")
        await page.wait_for_selector("#complaints li", timeout=MS)
        assert await page.input_value("#complaint-text") == ""
        await context.close()
    await offices.deliver()
    handled = h.desk.get("WC-RATED").case.view
    assert handled.rating is not None
    assert dict(handled.rating) == {"rating": "average", "comment": "等了一周"}
    assert [c.text for c in handled.open_complaints] == ["证照打印不清楚"]


async def test_a_deadline_on_provisional_holidays_says_so_in_both_languages(
    browser, office_pki, tmp_path, clock
):
    # a node holding no official holiday arrangement for any year: every deadline it
    # shows is counted on the holidays computed from the statutory rules
    computed = WorkingCalendar.computed()
    offices = make_offices(office_pki, tmp_path, clock, calendar=lambda: computed)
    try:
        opened = await offices.r.desk.open_case(
            matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-PROV-2"
        )
        await offices.deliver()
        async with serve(offices.r.public()) as base:
            context = await browser.new_context()
            page = await context.new_page()
            await _look_up(page, base, "WC-PROV-2", opened.access_code)
            await page.wait_for_selector("#provisional:not([hidden])", timeout=MS)
            assert await page.text_content("#provisional") == "（按暂定节假日安排计算）"
            deadline = offices.r.desk.clock_of(opened.record.case, clock()).deadline
            assert deadline is not None
            assert await page.text_content("#deadline") == deadline.isoformat()
            await page.click("#lang-switch")
            await expect(page.locator("#provisional")).to_have_text(
                "(counted on the provisional holiday arrangement)", timeout=MS
            )
            assert await page.is_visible("#provisional")
            await context.close()
    finally:
        offices.close()


async def test_a_tracking_link_opens_the_case_and_a_dead_one_says_what_to_do(browser, offices):
    """The link of an SMS or a receipt shows the case at once; one that no longer opens
    it (here: not a link of this office) says so and asks for the number and code,
    instead of a blank form retrying for ever."""
    r = offices.r
    opened = await r.desk.open_case(
        matter=BOOKS, mode="proxy_receipt", handling=HANDLING, case_id="WC-LINK"
    )
    async with serve(r.public()) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/track#link={opened.tracking_link}", timeout=MS)
        await page.wait_for_selector("#state[data-state='submitted']", timeout=MS)
        await page.close()

        page = await browser.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"{base}/track#link=not-a-link-of-ours", timeout=MS)
        await page.wait_for_selector("#error:not([hidden])", timeout=MS)
        assert await page.text_content("#error") == (
            "此查询链接已失效或已过期：请输入办件编号和查询码查询（见受理回执）。"
        )
        assert await page.is_visible("#lookup")
        await page.wait_for_timeout(3500)  # the old page retried every 3 s
        assert sockets == []
        await page.close()
