"""The signed survey report on the console's case page, in real headless Chromium
(Debian's /usr/bin/chromium via Playwright) against two real nodes: the requesting
office reads the verdict and the checklist in Chinese and sees the snapshots as
thumbnails; a person without the view-surveys permission reads the report but gets
no snapshots. Fails (never skips) when Chromium is missing."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect
from survey_case_kit import HANDLING, RECEIVING, Office, casekit_offices, make_office, node_config
from test_survey_case import PNG, _report_delivered

from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cases"))
from test_console_browser import CHROMIUM, FLAGS, MS, axe_check, no_codes


@pytest.fixture
async def console_offices(office_pki, tmp_path: Path) -> AsyncIterator[tuple[Office, Office]]:
    free = casekit_offices.free_port
    ports = {n: {k: free() for k in ("federation", "public", "staff")}
             for n in (RECEIVING, HANDLING)}  # fmt: skip
    r = make_office(node_config(tmp_path / "r", office_pki, RECEIVING, ports[RECEIVING], HANDLING,
                                ports[HANDLING]["federation"]), office_pki)  # fmt: skip
    config_h = node_config(tmp_path / "h", office_pki, HANDLING, ports[HANDLING], RECEIVING,
                           ports[RECEIVING]["federation"])  # fmt: skip
    h = make_office(config_h, office_pki, console=True)
    await h.node.start()
    await r.node.start()
    try:
        yield r, h
    finally:
        await r.node.stop()
        await h.node.stop()


def _bearer(office: Office, role: StaffRole) -> dict[str, str]:
    key = load_or_create_token_key(office.node.config.staff.token_key)
    token = issue_token(key, node_id=office.node.config.node_id, subject="system-1",
                        roles=[role], now=datetime.now(UTC), ttl=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def test_the_case_page_shows_the_signed_report_with_thumbnails(console_offices) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"headless Chromium is required at {CHROMIUM} (Debian's chromium package)")
    r, h = console_offices
    async with aiohttp.ClientSession() as http:
        await _report_delivered(http, r, h, "WC-SV-7", "SV-WC-SV-7")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            # a system's token holding view-surveys (the clerk token of the office)
            context = await browser.new_context(
                locale="zh-CN", extra_http_headers=_bearer(h, StaffRole.CLERK)
            )
            page = await context.new_page()
            await page.goto(h.url("/#/case/WC-SV-7"), timeout=MS)
            report = page.locator("#survey-report .report[data-session='SV-WC-SV-7']")
            await expect(report).to_be_visible(timeout=MS)
            await expect(report.locator(".verdict")).to_have_text("整改后通过")
            text = await report.inner_text()
            assert "书架与消防通道 — 符合" in text
            assert "李勘查" in text
            assert "张店主" in text
            assert "发出 1 次，确认 1 次，未通过 0 次" in text
            thumbs = report.locator("#thumbs-SV-WC-SV-7 img.thumb")
            await expect(thumbs).to_have_count(2)
            for i, data in enumerate((PNG, PNG[::-1])):
                src = await thumbs.nth(i).get_attribute("src")
                fetched = await page.evaluate(
                    "src => fetch(src).then(r => r.arrayBuffer()).then(b => b.byteLength)", src
                )
                assert fetched == len(data)
            await no_codes(page, "case page with a survey report")
            step = page.locator("#timeline li[data-event='survey-report']")
            await expect(step).to_contain_text("勘查结论: 整改后通过")
            step_text = await step.inner_text()
            assert "eyJ" not in step_text  # the signed report is shown above, not as text
            assert "pass_with_corrections" not in step_text
            await axe_check(page, "survey report (zh)")
            await context.close()

            # an approver reads the report, not the snapshots
            context = await browser.new_context(
                locale="zh-CN", extra_http_headers=_bearer(h, StaffRole.APPROVER)
            )
            page = await context.new_page()
            await page.goto(h.url("/#/case/WC-SV-7"), timeout=MS)
            report = page.locator("#survey-report .report")
            await expect(report.locator(".verdict")).to_have_text("整改后通过", timeout=MS)
            assert await report.locator("img.thumb").count() == 0
            assert "查看现场截图需要勘查查看权限。" in await report.inner_text()
            await context.close()
        finally:
            await browser.close()
