"""The staff console end to end in real headless Chromium through two real `tongban serve`
nodes (Debian's /usr/bin/chromium via Playwright).

A clerk at 武昌区 hands in a case with the applicant's data and a scanned material; the
approver at 大丰区 sees it appear in the work queue live (no reload), asks for a
correction naming a missing material; the clerk supplements; the approver accepts,
approves and issues the licence; the clerk delivers. Both consoles show the same state
and timeline at every step. Screenshots at 1366×768 and 768×1024, in Chinese and
English, go under the test's tmp dir; axe-core (npm, pinned, installed by
scripts/npm-deps.sh) finds no serious or critical violation; no Chinese page shows a
code. Fails (never skips) when Chromium or axe-core is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from casekit import HANDLING, RECEIVING
from casekit_offices import free_port
from console_kit import with_categories
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    async_playwright,
    expect,
)
from test_node_cases import write_config

from relay.cases.model import CaseState, EventKind
from relay.cases.sla import ClockState, Colour
from relay.config import load_config
from relay.core.model import OutboxState
from relay.signin.testing import add_account, sign_in_page

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / ".cache/npm/node_modules/axe-core/axe.min.js"
MS = 30_000  # generous: the machine may be busy with other suites
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BOOKS_ZH = "出版物零售业务许可"
DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}
# every stable value the console's API answers: none may show on a Chinese page
CODES = {
    *(s.value for s in CaseState), *(k.value for k in EventKind), *(c.value for c in Colour),
    *(c.value for c in ClockState), *(s.value for s in OutboxState),
    "received", "missing", "correction", "receiving", "handling", "approve", "deny",
    "publication-retail-licence", "food-business-licence", "None", "null", "undefined",
    "[object",
}  # fmt: skip


PASSWORD = "a-long-password-for-tests"
PEOPLE = {  # one person per office: the window clerk (who also surveys and runs the
    # office's systems) and the approver
    RECEIVING: ("wang.shoujian", "王收件", ["clerk", "inspector", "administrator"]),
    HANDLING: ("li.shenpi", "李审批", ["approver", "licence_officer"]),
}


def png(width: int = 4, height: int = 3) -> bytes:
    """A real (red) PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def with_dead_webhook(config: Path) -> Path:
    """A webhook target nothing listens on: its deliveries park after one attempt."""
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[webhooks]]\nurl = "http://127.0.0.1:{free_port()}/webhooks"\n'
                 'max_attempts = 1\nbase_backoff = "1s"\n')  # fmt: skip
    return config


def staff_over_tls(config: Path) -> Path:
    """The console's session cookie is Secure: serve the staff listener over TLS."""
    text = config.read_text("utf-8")
    text = re.sub(r"(\[listeners\.staff\]\nport = \d+\n)tls = false", r"\1tls = true", text)
    config.write_text(text, "utf-8")
    return config


@asynccontextmanager
async def tongban_serve(config: Path, node: str) -> AsyncIterator[str]:
    """A real node; yields its staff URL, with the office's person's account made."""
    name, display, roles = PEOPLE[node]
    add_account(load_config(config).data_dir, name, PASSWORD, roles, display_name=display)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"serving" in line, line
        staff = re.search(rb"staff=(https://\S+)", line)
        assert staff is not None, line
        yield staff.group(1).decode().rstrip("/")
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)


async def _scan_qr(png: bytes) -> str:
    """The text of the one QR code in a screenshot, as a phone camera reads it."""
    import io

    import zxingcpp
    from PIL import Image

    [code] = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    return str(code.text)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"headless Chromium is required at {CHROMIUM} for the console test: "
            "install Debian's chromium package (scripts/system-deps.sh does, as root)"
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=MS
        )
        try:
            yield launched
        finally:
            await launched.close()


def _axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is required at {AXE}: run scripts/npm-deps.sh (make npm-deps)")
    return AXE.read_text("utf-8")


async def axe_check(page: Page, where: str) -> None:
    """No serious or critical accessibility violation on the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(_axe_source())
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{where}: {bad}"


async def no_codes(page: Page, where: str) -> None:
    """A Chinese page shows no state, event, colour or matter code, nor a JS repr."""
    assert await page.get_attribute("html", "lang") == "zh-CN"
    text = await page.inner_text("body")
    words = set(re.findall(r"[A-Za-z_\[\-]+", text))
    shown = sorted(c for c in CODES if c in words or (c.startswith("[") and c in text))
    assert shown == [], f"{where} shows codes: {shown}"


async def shot(page: Page, folder: Path, name: str) -> None:
    for label, size in (("1366x768", DESKTOP), ("768x1024", TABLET)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)


async def timeline(page: Page) -> list[str | None]:
    return await page.eval_on_selector_all(
        "#timeline li", "items => items.map(i => i.dataset.event)"
    )


async def agree(r: Page, h: Page, state: str) -> None:
    """Both consoles show the case in ``state`` with the same timeline."""
    for page in (r, h):
        await expect(page.locator("#case-view")).to_have_attribute("data-state", state, timeout=MS)
    assert await timeline(r) == await timeline(h)


async def act(page: Page, event: str, state: str) -> None:
    """Take ``event`` from the case page: open its form, confirm, see the new state."""
    await page.click(f"#actions button[data-event='{event}']")
    await expect(page.locator("#action-dialog")).to_be_visible(timeout=MS)
    await page.click("#action-confirm")
    await expect(page.locator("#case-view")).to_have_attribute("data-state", state, timeout=MS)


async def test_hand_in_correction_licence_delivery_across_two_consoles(
    browser, office_pki, tmp_path
):
    office_pki = with_categories(office_pki)  # the form's data categories are agreed
    axe = _axe_source()  # fail early when missing
    assert axe
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ports = {n: {k: free_port() for k in ("federation", "public", "staff")}
             for n in (RECEIVING, HANDLING)}  # fmt: skip
    config_r = with_dead_webhook(staff_over_tls(write_config(
        tmp_path / "r", office_pki, RECEIVING, ports[RECEIVING], HANDLING,
        ports[HANDLING]["federation"])))  # fmt: skip
    config_h = staff_over_tls(write_config(
        tmp_path / "h", office_pki, HANDLING, ports[HANDLING], RECEIVING,
        ports[RECEIVING]["federation"]))  # fmt: skip
    async with (
        tongban_serve(config_r, RECEIVING) as node_r,
        tongban_serve(config_h, HANDLING) as node_h,
    ):
        contexts = [
            await browser.new_context(viewport=DESKTOP, locale="zh-CN", ignore_https_errors=True)
            for _ in range(2)
        ]
        r, h = [await c.new_page() for c in contexts]
        await r.goto(f"{node_r}/", timeout=MS)
        await r.wait_for_url(re.compile(r"/login\?next=/"), timeout=MS)  # no session yet
        await expect(r.locator("#user")).to_be_visible(timeout=MS)
        await axe_check(r, "sign-in page (zh)")
        await sign_in_page(r, node_r, PEOPLE[RECEIVING][0], PASSWORD)
        await sign_in_page(h, node_h, PEOPLE[HANDLING][0], PASSWORD)
        await expect(h.locator("#queue-empty")).to_be_visible(timeout=MS)
        await expect(h.locator("#live")).to_have_attribute("data-live", "on", timeout=MS)
        await expect(h.locator("#whoami")).to_have_text("经办人：李审批")
        # the approver holds no 'receive' permission: no hand-in for them
        assert await h.is_hidden("#nav-hand-in")
        await h.evaluate("window.__samePage = true")
        # a refusal reads in the page's language, with what to do next: a case that is
        # not there (404 from the API, whose detail is English) in Chinese
        await h.evaluate("location.hash = '#/case/420106-20260101-NOSUCHCASE'")
        await expect(h.locator("p.error:not(#error)")).to_contain_text("未找到", timeout=MS)
        assert (
            re.search(r"[A-Za-z]{3,}", await h.locator("p.error:not(#error)").text_content() or "")
            is None
        )
        await h.evaluate("location.hash = '#/queue'")

        # 收件: the clerk hands in the case with the applicant's data and one scan
        await r.click("#nav-hand-in")
        await r.select_option("#handin-matter", label=BOOKS_ZH)
        await r.fill("#applicant-name", "武昌书店")
        await r.fill("#applicant-id_number", "91420106MA4KXXXX1X")
        await r.fill("#applicant-phone", "027-88886666")
        await r.fill("#applicant-address", "武汉市武昌区中北路 1 号")
        await r.check("#mat-0")
        scan = {"name": "营业执照.pdf", "mimeType": "application/pdf",
                "buffer": b"%PDF-1.4 " + os.urandom(600_000)}  # fmt: skip
        await r.set_input_files("#file-0", files=[scan])
        await no_codes(r, "hand-in form")
        await axe_check(r, "hand-in form (zh)")
        await shot(r, shots, "hand-in-zh")
        await r.click("#handin-submit")
        await expect(r.locator("#handin-done")).to_be_visible(timeout=MS)
        case_id = await r.text_content("#handin-case")
        assert case_id
        assert re.fullmatch(
            r"[2-9A-HJ-NP-Z]{5}-[2-9A-HJ-NP-Z]{5}", await r.text_content("#handin-code") or ""
        )

        # the approver's queue shows it without a reload
        row = h.locator(f"#queue-table tr[data-case='{case_id}']")
        await expect(row).to_be_visible(timeout=MS)
        assert await h.evaluate("window.__samePage") is True
        assert BOOKS_ZH in await row.inner_text()
        assert "武昌区政务服务中心" in await row.inner_text()
        await expect(row.locator(".clock")).to_have_attribute("data-colour", "green")
        await no_codes(h, "work queue")
        await axe_check(h, "work queue (zh)")
        await shot(h, shots, "queue-zh")

        await row.locator("a").click()
        await r.click("#handin-open")
        await agree(r, h, "submitted")
        assert "武昌书店" in await h.inner_text("#case-view")
        await expect(h.locator("dd[data-field='id_type']")).to_have_text("统一社会信用代码")
        await expect(h.locator("dd[data-field='address']")).to_have_text("武汉市武昌区中北路 1 号")
        statuses = await h.eval_on_selector_all(
            "#checklist li", "items => items.map(i => i.dataset.status)"
        )
        assert statuses[0] == "received"
        assert "missing" in statuses
        assert "营业执照.pdf" in await h.inner_text("#attachments")
        await no_codes(h, "case page")
        await axe_check(h, "case page (zh)")
        await shot(h, shots, "case-zh")
        # a PDF is viewed in the page
        await h.click("#attachments li:has-text('营业执照.pdf') button[data-view]")
        await expect(h.locator("#attachments iframe[data-viewer='pdf']")).to_be_visible(timeout=MS)
        assert (await h.get_attribute("#attachments iframe", "src") or "").startswith("blob:")

        # a correction naming the missing materials (pre-checked in the form)
        await h.click("#actions button[data-event='request-correction']")
        await expect(h.locator("#action-dialog")).to_be_visible(timeout=MS)
        await axe_check(h, "correction form (zh)")
        await h.click("#action-confirm")
        await agree(r, h, "correction_requested")
        await expect(r.locator("#case-state")).to_have_text("待补正")
        await expect(r.locator(".clock")).to_have_attribute("data-clock", "paused")
        assert await r.locator("#checklist li[data-status='correction']").count() >= 1

        # the clerk supplements with a file (progress bar, resumable upload)
        await r.click("#actions button[data-event='supplement']")
        await r.set_input_files(
            "#f-files", files=[{"name": "经营场所证明.pdf", "mimeType": "application/pdf",
                                "buffer": b"%PDF-1.4 " + os.urandom(300_000)},
                               {"name": "经营场所照片.png", "mimeType": "image/png",
                                "buffer": png()}]
        )  # fmt: skip
        await r.click("#action-confirm")
        await expect(r.locator("#case-view")).to_have_attribute(
            "data-state", "submitted", timeout=MS
        )
        await agree(r, h, "submitted")
        assert await r.locator("#checklist li[data-status='correction']").count() == 0
        # a picture is shown in the page; nothing is offered inline but images and PDFs
        await h.click("#attachments li:has-text('经营场所照片.png') button[data-view]")
        picture = h.locator("#attachments img[data-viewer='image']")
        await expect(picture).to_be_visible(timeout=MS)
        assert await picture.evaluate("img => img.decode().then(() => img.naturalWidth)") == 4

        await act(h, "accept", "accepted")
        await agree(r, h, "accepted")
        # a denial needs its reason before it goes to the node, which would refuse it
        await h.click("#actions button[data-event='decide']")
        await expect(h.locator("#action-dialog")).to_be_visible(timeout=MS)
        await expect(h.locator("label[for='f-reason']")).to_have_text("理由（不予许可时必填）")
        await h.check("input[name=decision][value=deny]")
        await h.click("#action-confirm")
        assert await h.evaluate("document.getElementById('f-reason').validity.valueMissing")
        await expect(h.locator("#action-dialog")).to_be_visible()
        await h.click("#action-cancel")

        # a step of the partner's this office could not take: its own heading, in words
        async def as_if_refused_here(route: Route) -> None:
            response = await route.fetch()
            body = await response.json()
            body["incoming_refused"] = [{"packet_id": "p-1", "reason": "wrong-state", "detail": ""}]
            await route.fulfill(response=response, json=body)

        page_of_case = f"**/staff/v1/console/cases/{case_id}"
        await h.route(page_of_case, as_if_refused_here)
        await h.reload()
        await expect(h.locator("#incoming-refused")).to_have_text(
            "本办公室未能接收对方发来的操作", timeout=MS
        )
        assert await h.locator("#refused li[data-reason='wrong-state']").inner_text() == (
            "对方的操作与本办公室的案件进度不符。请与对方单位核对案件进度；需要时请联系管理员。"
        )
        assert "对方拒收" not in await h.locator("#refused").inner_text()
        await h.unroute(page_of_case)

        # the handling office asked itself to survey: no remote form it could not use
        async def as_if_surveying_itself(route: Route) -> None:
            response = await route.fetch()
            body = await response.json()
            body.update(state="survey_requested", surveyor="handling")
            await route.fulfill(response=response, json=body)

        await h.route(page_of_case, as_if_surveying_itself)
        await h.reload()
        await expect(h.locator("#survey-onsite-only")).to_contain_text(
            "登记现场勘查结论", timeout=MS
        )
        assert await h.locator("#survey-form").count() == 0
        await h.unroute(page_of_case)
        await h.reload()
        await expect(h.locator("#refused")).to_have_count(0, timeout=MS)
        # a refused step keeps its dialog open with what was typed, the reason in it (it
        # closed, and a long reason was lost to one wrong character)
        steps = re.compile(r".*/staff/v1/console/cases/[^/]+/steps$")

        async def refuse(route: Route) -> None:
            await route.fulfill(
                status=422, content_type="application/problem+json",
                body=json.dumps({"type": "about:blank", "title": "Unprocessable", "status": 422,
                                 "code": "invalid-request", "detail": "too long"}),
            )  # fmt: skip

        await h.route(steps, refuse)
        await h.click("#actions button[data-event='decide']")
        await expect(h.locator("#action-dialog")).to_be_visible(timeout=MS)
        await h.click("#action-confirm")
        await expect(h.locator("#action-error")).to_be_visible(timeout=MS)
        await expect(h.locator("#action-dialog")).to_be_visible()
        await h.unroute(steps)
        await h.click("#action-confirm")
        approved = h.locator("#case-view")
        await expect(approved).to_have_attribute("data-state", "approved", timeout=MS)
        await expect(h.locator("#action-dialog")).to_be_hidden()
        await agree(r, h, "approved")
        await h.click("#actions button[data-event='issue-licence']")
        assert await h.input_value("#f-holder-name") == "武昌书店"
        await h.click("#action-confirm")
        await agree(r, h, "licence_issued")
        number = await r.text_content("#licence-number")
        assert number
        assert number == await h.text_content("#licence-number")

        await act(r, "deliver", "delivered")
        await agree(r, h, "delivered")
        assert await timeline(r) == [
            "submit", "request-correction", "supplement", "accept", "decide",
            "issue-licence", "deliver",
        ]  # fmt: skip
        # an applicant who lost the access code gets a new one at the counter, shown once
        r.once("dialog", lambda question: asyncio.ensure_future(question.accept()))
        await r.click("#access-code-new")
        await expect(r.locator("#access-code-issued")).to_be_visible(timeout=MS)
        assert (await r.text_content("#access-code-issued") or "").strip()
        # the clerk's case page held the applicant's personal data: a read in the node's
        # access log, which the administrator reads (it was in none)
        log = await r.evaluate(
            "(c) => fetch('/staff/v1/personal-data/reads?case=' + c).then((x) => x.json())",
            case_id,
        )
        assert {(x["who"], x["what"]) for x in log["reads"]} == {
            (PEOPLE[RECEIVING][0], "application")
        }
        await no_codes(r, "delivered case")
        await shot(r, shots, "case-delivered-zh")

        # the licence print view with its QR code
        await h.click("#case-view a[href^='#/licence/']")
        await expect(h.locator("#licence-qr")).to_be_visible(timeout=MS)
        # its QR code is a link a phone camera opens: the verify page, the licence in the
        # compact form, valid at once (its status lists published at issuance)
        scanned = await _scan_qr(await h.locator("#licence-qr").screenshot())
        _, credential = scanned.split("/v#", 1)
        assert credential.isdigit(), scanned
        phone = await contexts[1].new_page()
        await phone.goto(f"http://127.0.0.1:{ports[HANDLING]['public']}/v#{credential}")
        await expect(phone.locator("#verdict")).to_have_text("有效", timeout=MS)
        await phone.close()
        # the receiving office hands the partner's licence over: its QR is a short link to
        # its own verify page (only the issuer can put a licence in the compact form);
        # the whole vc+jwt was a version-38 code
        await r.click("#case-view a[href^='#/licence/']")
        await expect(r.locator("#licence-qr")).to_be_visible(timeout=MS)
        link = urlsplit(await _scan_qr(await r.locator("#licence-qr").screenshot()))
        assert re.fullmatch(r"/l/[2-9A-HJ-NP-Z]{10}", link.path), link
        phone = await contexts[0].new_page()
        await phone.goto(f"http://127.0.0.1:{ports[RECEIVING]['public']}{link.path}")
        await expect(phone.locator("#verdict")).not_to_be_empty(timeout=MS)
        verdict = await phone.get_attribute("#verdict", "data-failure")
        assert verdict in ("", "status-unavailable"), verdict  # read whole, seal verified
        await phone.close()
        await r.go_back()
        # suspended and reinstated by the licence officer, each with a reason, confirmed
        for button, reason in (
            ("#licence-suspend", "场所整改期间"),
            ("#licence-reinstate", "已整改"),
        ):
            await h.click(button)
            await expect(h.locator("#action-dialog")).to_be_visible(timeout=MS)
            await h.fill("#f-reason", reason)
            await h.click("#action-confirm")
            await expect(h.locator("#notice")).to_have_text("证照状态已更新。", timeout=MS)
            await h.evaluate("document.getElementById('notice').textContent = ''")
        await no_codes(h, "licence print view")
        await axe_check(h, "licence print view (zh)")
        await shot(h, shots, "licence-zh")

        records = (tmp_path / "h" / "data" / "console" / "licence-status.jsonl").read_text()
        kept = [json.loads(line) for line in records.splitlines()]
        assert [(k["purpose"], k["value"], k["reason"], k["person"]) for k in kept] == [
            ("suspension", True, "场所整改期间", PEOPLE[HANDLING][0]),
            ("suspension", False, "已整改", PEOPLE[HANDLING][0]),
        ]

        # the other pages, in Chinese: outbox per partner, supervision, agreements

        async def as_if_waiting(route: Route) -> None:  # the newest packet, partner away
            response = await route.fetch()
            body = await response.json()
            body["items"][0].update(state="queued", reason="peer-unavailable", attempts=3)
            await route.fulfill(response=response, json=body)

        await r.route("**/staff/v1/outbox?order=desc&limit=100", as_if_waiting)
        async with r.expect_request(  # the latest packets, not every one ever exchanged
            lambda request: "/staff/v1/outbox?order=desc&limit=100" in request.url
        ):
            await r.click("#nav-outbox")
        waiting = r.locator(f"section[data-peer='{HANDLING}'] tr[data-state='queued']")
        await expect(waiting.locator("div.muted").first).to_have_text(
            "暂时连不上对方，系统将自动重试", timeout=MS
        )  # waiting is no refusal: not in red, not "对方拒收"
        assert await waiting.locator("div.error").count() == 0
        await r.unroute("**/staff/v1/outbox?order=desc&limit=100")
        await expect(r.locator(f"section[data-peer='{HANDLING}'] h2")).to_have_text(
            "大丰区行政审批局", timeout=MS
        )
        await expect(r.locator("#outbox-recent")).to_have_text(re.compile("最近收发的各 100 件"))
        assert await r.locator(f"section[data-peer='{HANDLING}'] tbody tr").count() == 3  # ours
        actions = r.locator(f"section[data-peer='{HANDLING}'] tbody td:nth-child(2)")
        assert all(await actions.all_text_contents())  # every packet's action in words
        # the handling office names the office it receives from (it hands none cases)
        await h.click("#nav-outbox")
        await expect(h.locator(f"section[data-peer='{RECEIVING}'] h2")).to_have_text(
            "武昌区政务服务中心", timeout=MS
        )
        h_actions = h.locator(f"section[data-peer='{RECEIVING}'] tbody td:nth-child(2)")
        assert all(await h_actions.all_text_contents())
        await no_codes(r, "outbox")
        await axe_check(r, "outbox (zh)")
        await r.click("#nav-alerts")
        await expect(r.locator("body[data-view='alerts']")).to_be_visible(timeout=MS)
        # each alert says in Chinese what to do (the English detail is the English page's)
        cards = r.locator("#alerts li[data-alert]")
        await expect(cards.first).to_be_visible(timeout=MS)
        for card in await cards.all():
            assert "请" in await card.locator(".next").inner_text()

        async def with_a_partner_away(route: Route) -> None:
            response = await route.fetch()
            body = await response.json()
            body["alerts"].append({
                "id": f"outbox:unreachable:{HANDLING}", "source": "outbox",
                "code": "partner-unreachable", "severity": "warning",
                "at": datetime.now(UTC).isoformat(),
                "title": {"zh": "对方节点长时间无法连通，案卷正在排队重试", "en": "away"},
                "detail": "Every delivery failed", "subject": HANDLING, "peer": HANDLING,
            })  # fmt: skip
            await route.fulfill(response=response, json=body)

        await r.route("**/staff/v1/console/alerts", with_a_partner_away)
        await r.reload()
        away = r.locator(f"#alerts li[data-alert='outbox:unreachable:{HANDLING}']")
        await expect(away.locator(".peer")).to_have_text("对方单位: 大丰区行政审批局", timeout=MS)
        assert "请管理员检查网络" in await away.locator(".next").inner_text()
        await r.unroute("**/staff/v1/console/alerts")
        await r.reload()
        await expect(r.locator("body[data-view='alerts']")).to_be_visible(timeout=MS)
        await no_codes(r, "alerts")
        await axe_check(r, "alerts (zh)")
        await r.click("#nav-agreements")
        await expect(r.locator("section[data-agreement] h2")).to_have_text(
            "鄂苏跨省通办协议", timeout=MS
        )
        assert "出版物零售业务经营许可申请表" in await r.inner_text("section[data-agreement]")
        await no_codes(r, "agreements")
        await axe_check(r, "agreements (zh)")
        await r.go_back()
        await r.go_back()
        await r.go_back()
        await expect(r.locator("#case-view")).to_be_visible(timeout=MS)

        # English
        for page, name in ((r, "case-delivered-en"), (h, "licence-en")):
            await page.click("#lang-switch")
            await expect(page.locator("html")).to_have_attribute("lang", "en")
            await axe_check(page, f"{name} (en)")
            await shot(page, shots, name)
        await expect(r.locator("#case-state")).to_have_text("Delivered")
        await r.click("#nav-queue")
        await expect(r.locator(f"#queue-table tr[data-case='{case_id}']")).to_be_visible()
        await axe_check(r, "work queue (en)")
        await shot(r, shots, "queue-en")
        await r.click("#lang-switch")  # back to Chinese
        await expect(r.locator("html")).to_have_attribute("lang", "zh-CN")
        await one_state_at_a_time(r, case_id)

        # the office's systems: the dead webhook target's deliveries parked, retried
        await r.click("#nav-webhooks")
        target = r.locator("section[data-target]")
        await expect(target.locator("dd[data-count='parked']")).to_have_text(
            re.compile(r"[1-9]\d*"), timeout=MS
        )
        await expect(target.locator(".last-error")).to_have_text("无法连接对方系统")
        # each troubled delivery names its event and case (from the node's status alone)
        await expect(target.locator("tbody tr td").first).to_have_text("新建办件")
        await expect(target.locator(f"tbody tr a[href='#/case/{case_id}']").first).to_be_visible()
        await no_codes(r, "webhooks")
        await axe_check(r, "webhooks (zh)")
        await target.locator("button[data-retry]").click()
        await expect(r.locator("#notice")).to_have_text(re.compile(r"已重新排队 [1-9]\d* 条推送。"))

        public_r = f"http://127.0.0.1:{ports[RECEIVING]['public']}"
        await survey_from_the_case_page(r, h, contexts[0], public_r)
        for context in contexts:
            await context.close()
    assert len(list(shots.glob("*.png"))) == 16


async def one_state_at_a_time(r: Page, case_id: str) -> None:
    """The work queue's state buttons ask the node for that state's rows alone; when the
    node answers fewer rows than the state holds (at most 200 at once), the page says
    so, in Chinese, and how to narrow them down."""
    async with r.expect_request(
        lambda request: "/console/queue?" in request.url and "state=delivered" in request.url
    ):
        await r.click("#counts button[data-state='delivered']")
    await expect(r.locator("#counts button[data-state='delivered']")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(r.locator(f"#queue-table tr[data-case='{case_id}']")).to_be_visible()
    await expect(r.locator("#queue-table tbody tr:not([data-state='delivered'])")).to_have_count(0)

    async def as_if_many(route: Route) -> None:  # the node's answer, with a larger state
        response = await route.fetch()
        body = await response.json()
        body["shown"] = 500
        await route.fulfill(response=response, json=body)

    await r.route("**/staff/v1/console/queue*", as_if_many)
    await r.click("#counts button[data-state='']")
    await expect(r.locator("#queue-more")).to_have_text(re.compile(r"显示前 \d+ 件，共 500 件"))
    await no_codes(r, "work queue, more than shown")
    await r.unroute("**/staff/v1/console/queue*")
    await r.click("#counts button[data-state='']")
    await expect(r.locator("#queue-more")).to_have_count(0)


async def survey_from_the_case_page(r: Page, h: Page, context: BrowserContext, public: str) -> None:
    """A second case: the approver asks the receiving office to survey; its inspector
    schedules the survey from the case page, copies the site party's link, sees its QR
    code and opens the inspector page."""
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    await r.click("#nav-hand-in")
    await r.select_option("#handin-matter", label=BOOKS_ZH)
    await r.fill("#applicant-name", "洪山书店")
    await r.fill("#applicant-id_number", "91420111MA4KYYYY2Y")
    await r.fill("#applicant-address", "武汉市洪山区珞喻路 2 号")
    await r.check("#mat-0")
    await r.click("#handin-submit")
    await expect(r.locator("#handin-done")).to_be_visible(timeout=MS)
    case_id = await r.text_content("#handin-case")
    for page in (r, h):
        await page.evaluate(f"location.hash = '#/case/{case_id}'")
    await agree(r, h, "submitted")
    await act(h, "accept", "accepted")
    await h.click("#actions button[data-event='request-survey']")
    await h.check("input[name=surveyor][value=receiving]")
    await h.click("#action-confirm")
    await agree(r, h, "survey_requested")

    await expect(r.locator("#survey-form")).to_be_visible(timeout=MS)
    await r.evaluate(  # the window opens now, so the links are valid at once
        "(() => { const d = new Date(Date.now() - 300000);"
        " document.getElementById('sv-start').value = new Date(d.getTime()"
        " - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); })()"
    )
    await r.fill("#sv-lat", "30.5428")
    await r.fill("#sv-lon", "114.3162")
    # this matter's agreement names no survey points: the inspector writes them
    assert await r.input_value("#sv-checklist") == ""
    await r.fill("#sv-checklist", "书架与消防通道\n经营场所面积")
    await no_codes(r, "survey form")
    await r.click("#survey-form button[type=submit]")
    site = r.locator("#survey-links li[data-link='现场人员链接']")
    await expect(site.locator("img.qr")).to_be_visible(timeout=MS)
    link = await site.locator("input").input_value()
    assert "/survey/v1/site#token=" in link
    await site.locator("button").click()
    await expect(r.locator("#notice")).to_have_text("已复制。", timeout=MS)
    assert await r.evaluate("navigator.clipboard.readText()") == link
    await no_codes(r, "survey links")
    await axe_check(r, "survey links (zh)")
    # the links are shown once; after a reload, new ones for whoever lost theirs
    await r.reload()
    state = r.locator("#survey-state")
    await expect(state).to_have_attribute("data-state", "scheduled", timeout=MS)
    await r.click("#survey-links-again")
    again = r.locator("#survey-links li[data-link='现场人员链接'] input")
    await expect(again).to_be_visible(timeout=MS)
    assert "/survey/v1/site#token=" in await again.input_value()
    assert await again.input_value() != link

    # the links name the public endpoint of the node's descriptor (the development PKI's,
    # not served here): the browser reaches this node's public listener in its place
    published = urlsplit(link)
    published_base = f"{published.scheme}://{published.netloc}"

    async def to_public_listener(route: Route) -> None:
        url = urlsplit(route.request.url)
        real = f"{public}{url.path}" + (f"?{url.query}" if url.query else "")
        await route.fulfill(response=await route.fetch(url=real))

    await context.route(f"{published_base}/**", to_public_listener)
    inspector = r.locator("#survey-links li[data-link='勘查员页面'] a")
    async with context.expect_page(timeout=MS) as opened:
        await inspector.click()
    page = await opened.value
    await page.wait_for_load_state(timeout=MS)
    assert "/survey/v1/inspector#token=" in page.url
    await expect(page.locator("body")).not_to_be_empty(timeout=MS)
    assert (await page.evaluate("document.documentElement.lang")).startswith("zh")
    await page.close()

    # a survey nobody can finish is abandoned from the case page, and the case is surveyed
    # again under a new session (the console knew one survey per case: a dead end)
    r.once("dialog", lambda question: asyncio.ensure_future(question.accept()))
    await r.click("#survey-abandon")
    await expect(r.locator("#survey-again")).to_be_visible(timeout=MS)
    await expect(r.locator("#survey-state")).to_have_attribute("data-state", "abandoned")
    await expect(r.locator("#survey-form")).to_be_visible(timeout=MS)
    await r.fill("#sv-lat", "30.5428")
    await r.fill("#sv-lon", "114.3162")
    await r.fill("#sv-checklist", "书架与消防通道")
    await r.click("#survey-form button[type=submit]")
    second = r.locator("#survey-links li[data-link='现场人员链接'] img.qr")
    await expect(second).to_be_visible(timeout=MS)
    await r.reload()
    state = r.locator("#survey-state")
    await expect(state).to_have_attribute("data-state", "scheduled", timeout=MS)
    await no_codes(r, "survey scheduled again")
