"""The compact licence in real headless Chromium on an emulated phone.

The printed licence's QR code (a PNG at 300 dpi, 0.34 mm a module) is read by zxing-cpp;
the URL it holds is opened as a phone camera would open it, and the verify page shows
the verdict with nothing typed: 有效 for a good licence, and the right verdict for a
tampered, revoked, suspended, expired and not-entitled one, in Chinese words (no codes),
with the matter's name from the catalog, the issuing office and dates in Beijing time.
Fails (never skips) when Chromium is missing.
"""

from __future__ import annotations

import io
import re
import shutil
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from casekit import HANDLING
from casekit_offices import serve
from playwright.async_api import Browser, Page, async_playwright, expect

from signing.descriptor import verify_descriptor
from signing.digits import digits_decode, digits_encode
from signing.licence import Licence, StatusEntry
from signing.licence_compact import (
    Issuer,
    IssuerList,
    credential_from_text,
    issue_compact_licence,
    licence_url,
)
from signing.qr import render_url_qr
from signing.status_list import StatusList, StatusListCredential, StatusPurpose, sign_status_list

CHROMIUM = "/usr/bin/chromium"
MS = 30_000
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FOOD = "food-business-licence"  # in the offices' agreement, issued by HANDLING
PESTICIDE = "pesticide-retail-licence"  # in the catalog, not in the agreement


@pytest.fixture
async def phone() -> AsyncIterator[tuple[Browser, dict]]:
    """Chromium and Playwright's description of a Pixel 5 (viewport, touch, user agent)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"headless Chromium is required at {CHROMIUM} for the licence page tests: "
            "install Debian's chromium package (scripts/system-deps.sh does, as root)"
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=MS
        )
        try:
            yield launched, dict(pw.devices["Pixel 5"])
        finally:
            await launched.close()


@dataclass
class Issuing:
    issuer: Issuer
    base: str
    now: datetime

    def licence(self, **changes: object) -> Licence:
        at = self.now.replace(microsecond=0) - timedelta(days=1)
        fields: dict[str, object] = {
            "issuer_node": HANDLING,
            "number": "JY13209820260001",
            "licence_type": FOOD,
            "holder_id": "91320982MA1XK2JC3L",
            "holder_name": "盐城江城餐饮管理有限公司",
            "scope": "热食类食品制售",
            "department_zh": self.issuer.name_zh,
            "department_en": self.issuer.name_en,
            "issued_at": at,
            "valid_from": at,
            "valid_until": at + timedelta(days=5 * 365),
            "status": tuple(
                StatusEntry(p, 1, self.issuer.status_url(p))
                for p in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)
            ),
        }
        fields.update(changes)
        return Licence(**fields)  # type: ignore[arg-type]


def _publish(offices, issuer: Issuer, now: datetime, *, revoked=(), suspended=()) -> None:
    folder = offices.h.verifier.status_dir
    folder.mkdir(parents=True, exist_ok=True)
    at = now.replace(microsecond=0) - timedelta(hours=1)
    for purpose, bits in (
        (StatusPurpose.REVOCATION, revoked),
        (StatusPurpose.SUSPENSION, suspended),
    ):
        lst = StatusList.empty(purpose)
        for i in bits:
            lst = lst.with_bit(i, True)
        credential = StatusListCredential(
            issuer_node=HANDLING, url=issuer.status_url(purpose), status_list=lst,
            issued_at=at, valid_from=at, valid_until=at + timedelta(days=7),
        )  # fmt: skip
        token = sign_status_list(credential, offices.pki.keys[HANDLING].seal, at=at)
        (folder / f"{purpose.value}.jwt").write_text(token + "\n")


def _tamper(url: str) -> str:
    data = digits_decode(credential_from_text(url))
    cose = zlib.decompress(data) if data[0] == 0x78 else data
    obj = cbor2.loads(cose)
    claims = cbor2.loads(obj.value[2])
    claims[-65537][3] = "全部食品经营"
    obj.value[2] = cbor2.dumps(claims)
    return url.split("#", 1)[0] + "#" + digits_encode(cbor2.dumps(obj))


async def _open(page: Page, url: str) -> None:
    await page.goto("about:blank")
    await page.goto(url, timeout=MS)
    await expect(page.locator("#verdict")).not_to_be_empty(timeout=MS)


async def test_the_printed_qr_opens_the_verify_page_on_a_phone_with_each_verdict(
    phone, offices, clock
):
    import zxingcpp
    from PIL import Image

    browser, device = phone
    keys = offices.pki.keys[HANDLING]
    own = verify_descriptor(keys.descriptor_bytes, offices.pki.bundle, at=clock())
    async with serve(offices.h.public()) as base:  # the issuer's public listener
        issuer = Issuer(own.node_id, own.name_zh, own.name_en, base, own.seal_chain)
        offices.h.verifier.issuers = IssuerList([issuer])
        issuing = Issuing(issuer, base, clock())
        _publish(offices, issuer, clock())

        def url_of(licence: Licence) -> str:
            return licence_url(base, issue_compact_licence(licence, keys.seal, issuer))

        good = url_of(issuing.licence())
        qr = render_url_qr(good, scale=4)  # 4 dots at 300 dpi: a 0.34 mm module
        assert qr.version <= 12
        assert qr.error == "M"
        scanned = zxingcpp.read_barcodes(
            Image.open(io.BytesIO(qr.png)), formats=zxingcpp.BarcodeFormat.QRCode
        )
        assert [r.text for r in scanned] == [good]

        context = await browser.new_context(**device)
        page = await context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        await _open(page, scanned[0].text)
        assert await page.text_content("#verdict") == "有效"
        table = await page.text_content("#licence")
        assert "食品经营许可" in table  # the catalog's name, not the code
        assert FOOD not in table
        assert issuer.name_zh in table
        assert "北京时间" in table
        assert not re.search(r"\d{4}-\d{2}-\d{2}T", table)  # no ISO timestamps
        assert all("#" not in r and "/v#" not in r for r in requests)  # fragment stays local
        await page.click("#lang-switch")
        await expect(page.locator("#verdict")).to_have_text("Valid", timeout=MS)
        assert "Food business licence" in await page.text_content("#licence")
        assert "Beijing time" in await page.text_content("#licence")
        await page.click("#lang-switch")

        expired_at = clock().replace(microsecond=0) - timedelta(days=30)
        bad = {
            "signature": _tamper(good),
            "expired": url_of(
                issuing.licence(
                    issued_at=expired_at,
                    valid_from=expired_at,
                    valid_until=expired_at + timedelta(days=10),
                )
            ),
            "issuer-not-entitled": url_of(issuing.licence(licence_type=PESTICIDE)),
        }
        for code, url in bad.items():
            await _open(page, url)
            await expect(page.locator("#verdict")).to_have_attribute("data-failure", code)
            assert await page.text_content("#verdict") == "无效"
            reason = await page.text_content("#reason")
            assert code not in reason
            assert reason.strip()
            # every dead end says what to do next, in Chinese
            step = await page.text_content("#next") or ""
            assert step.strip(), code
            assert not re.search(r"[A-Za-z]", step), step
        # bad input is not "try again later": a text that is no licence at all
        await page.fill("#token", "x" * 9000)
        await page.click("#verify-form button[type='submit']")
        await expect(page.locator("#error")).to_contain_text("重新扫描", timeout=MS)
        # Debian's Chromium on Linux lacks BarcodeDetector (the camera stills then go to
        # the node: test_the_laptop_camera_reads_the_licence_qr_without_barcodedetector);
        # with no camera allowed here the page says what to do instead, in Chinese
        assert await page.evaluate("'BarcodeDetector' in window") is False
        await page.click("#scan")
        await expect(page.locator("#scan-note")).to_contain_text("摄像头", timeout=MS)
        note = await page.text_content("#scan-note")
        assert not re.search(r"[A-Za-z]", note)
        assert "再按" in note or "手机相机" in note  # a next step
        for code, lists in (("revoked", {"revoked": [1]}), ("suspended", {"suspended": [1]})):
            _publish(offices, issuer, clock(), **lists)
            await _open(page, good)
            await expect(page.locator("#verdict")).to_have_attribute("data-failure", code)
            assert await page.text_content("#verdict") == "无效"
        # the lists cannot be had: no proof of invalidity, said apart, with a next step
        for published in offices.h.verifier.status_dir.glob("*.jwt"):
            published.unlink()
        await _open(page, good)
        await expect(page.locator("#verdict")).to_have_attribute(
            "data-failure", "status-unavailable"
        )
        assert await page.text_content("#verdict") == "无法确认"
        assert "稍后再核验" in (await page.text_content("#next") or "")
        await context.close()


async def test_print_views_hold_a_qr_a_camera_reads_at_300_dpi(phone, offices, clock, tmp_path):
    """The A4 and card print views rendered by Chromium at 300 dpi (print media): zxing-cpp
    reads the verify URL from each, and the card's text and code fit on the card."""
    import zxingcpp
    from PIL import Image

    from relay.licence_print import BEIJING, PrintSize, print_view

    browser, _ = phone
    keys = offices.pki.keys[HANDLING]
    own = verify_descriptor(keys.descriptor_bytes, offices.pki.bundle, at=clock())
    issuer = Issuer(
        own.node_id, own.name_zh, own.name_en, "https://zwfw.dafeng.example", own.seal_chain
    )
    licence = Issuing(issuer, issuer.public_base, clock()).licence()
    url = licence_url(issuer.public_base, issue_compact_licence(licence, keys.seal, issuer))
    sizes = {PrintSize.A4: (210, 297), PrintSize.CARD: (85.6, 54)}
    for size, (width_mm, height_mm) in sizes.items():
        html = tmp_path / f"licence-{size.value}.html"
        html.write_text(print_view(licence, url, size=size), encoding="utf-8")
        px = 96 / 25.4  # CSS pixels per millimetre
        context = await browser.new_context(
            viewport={"width": round(width_mm * px), "height": round(height_mm * px)},
            device_scale_factor=300 / 96,  # 300 dots per inch
        )
        page = await context.new_page()
        await page.emulate_media(media="print")
        await page.goto(html.as_uri(), timeout=MS)
        png = await page.screenshot(full_page=True)
        (tmp_path / f"licence-{size.value}.png").write_bytes(png)
        dpi_width = Image.open(io.BytesIO(png)).size[0] / (width_mm / 25.4)
        assert abs(dpi_width - 300) < 3
        read = zxingcpp.read_barcodes(
            Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
        )
        assert [r.text for r in read] == [url], size
        text = await page.inner_text("body")
        assert "食品经营许可" in text
        until = licence.valid_until.astimezone(BEIJING)
        assert f"{until.year}年{until.month}月{until.day}日" in text  # Beijing, in Chinese
        if size is PrintSize.CARD:
            overflow = await page.evaluate(
                "[document.body.scrollWidth > document.body.clientWidth,"
                " document.body.scrollHeight > document.body.clientHeight]"
            )
            assert overflow == [False, False]
            box = await page.locator(".qr svg").bounding_box()
            assert box is not None
            assert box["width"] / px >= 24  # 73 modules of 0.34 mm
        await context.close()


async def test_the_sms_short_link_asks_only_for_the_access_code(phone, offices, tmp_path):
    from relay.cases.short_links import ShortLinks

    browser, device = phone
    offices.r.desk.short_links = ShortLinks(tmp_path / "short.sqlite3")
    opened = await offices.r.desk.open_case(
        matter=FOOD, mode="proxy_receipt", handling=HANDLING, case_id="WC-SMS-1"
    )
    assert opened.short_code is not None
    async with serve(offices.r.public()) as base:
        context = await browser.new_context(**device)
        page = await context.new_page()
        await page.goto(f"{base}/t/{opened.short_code}", timeout=MS)
        assert not await page.is_visible("#case")  # the link names the case
        await page.fill("#code", opened.access_code)
        await page.click("#lookup-button")
        await expect(page.locator("#case-id")).to_have_text("WC-SMS-1", timeout=MS)
        assert await page.text_content("#state") == "办理地审查中"
        await context.close()


def _y4m(png: bytes, path: Path, *, width: int = 640, height: int = 480) -> Path:
    """A short YUV4MPEG2 clip (4:2:0, 3 frames) of the QR image on a grey desk, for
    Chromium's fake camera."""
    from PIL import Image

    qr = Image.open(io.BytesIO(png)).convert("L")
    side = height - 80
    frame = Image.new("L", (width, height), 180)
    frame.paste(qr.resize((side, side), Image.Resampling.NEAREST), ((width - side) // 2, 40))
    chroma = bytes([128]) * (width // 2 * height // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(3):
            out.write(b"FRAME\n" + frame.tobytes() + chroma + chroma)
    return path


async def test_the_laptop_camera_reads_the_licence_qr_without_barcodedetector(
    offices, clock, tmp_path
):
    """Chromium on Linux has no BarcodeDetector: the page posts camera stills (here
    Chromium's fake camera playing a clip of the licence QR) to its node, which reads
    them, and the verdict appears as if the page had been opened from the QR's URL."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"headless Chromium is required at {CHROMIUM}")
    keys = offices.pki.keys[HANDLING]
    own = verify_descriptor(keys.descriptor_bytes, offices.pki.bundle, at=clock())
    async with serve(offices.h.public()) as base, async_playwright() as pw:
        issuer = Issuer(own.node_id, own.name_zh, own.name_en, base, own.seal_chain)
        offices.h.verifier.issuers = IssuerList([issuer])
        _publish(offices, issuer, clock())
        licence = Issuing(issuer, base, clock()).licence()
        url = licence_url(base, issue_compact_licence(licence, keys.seal, issuer))
        clip = _y4m(render_url_qr(url, scale=4).png, tmp_path / "licence.y4m")
        camera = ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS + camera, timeout=MS
        )
        try:
            context = await browser.new_context()
            await context.grant_permissions(["camera"], origin=base)
            page = await context.new_page()
            posted: list[str] = []
            page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
            await page.goto(f"{base}/v", timeout=MS)
            assert await page.evaluate("'BarcodeDetector' in window") is False
            await page.click("#scan")
            await expect(page.locator("#verdict")).to_have_text("有效", timeout=MS)
            assert "食品经营许可" in await page.text_content("#licence")
            assert f"{base}/public/v1/qr-decode" in posted
            await expect(page.locator("#camera")).to_be_hidden()  # the camera was stopped
        finally:
            await browser.close()
