"""Sign-in in real Chromium: the page (zh/en, errors) and OpenID Connect against a real
provider (npm oidc-provider, started here) through a whole node's TLS staff listener."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Route, async_playwright, expect
from relay_http_fake_core import RunningFakeCore
from relay_http_support import Pki, free_ports, write_config

from relay.config import NodeConfig, load_config
from relay.core.ports import PeerLink
from relay.node import CoreHandle, Node
from relay.signin.store import StaffStore
from relay.signin.testing import add_account, sign_in_page
from relay.tls import BundleSource

CHROMIUM = "/usr/bin/chromium"
MS = 30_000  # generous: the machine may be busy
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
PROVIDER_LIB = ROOT / ".cache/npm-oidc/node_modules/oidc-provider/lib/index.js"
PROVIDER_JS = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_SECRET = "a-client-secret-of-the-test-only-0123456789"
PASSWORD = "a long enough password"
START_DEADLINE = 120  # seconds for node + oidc-provider to listen on a busy machine
HANDED_OUT = "handed-out-4711"


@dataclass
class Setup:
    node: Node
    staff: str
    issuer: str
    store: StaffStore


async def _page(request: web.Request) -> web.Response:
    return web.Response(
        text="<!doctype html><title>工作台</title><h1>工作台</h1>", content_type="text/html"
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"headless Chromium is required at {CHROMIUM}: run scripts/system-deps.sh")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=MS
        )
        try:
            yield launched
        finally:
            await launched.close()


def _shifted_clock() -> dict[str, str]:
    """libfaketime's variables when the suite runs on a shifted clock (``make
    test-dates``): the provider must live on the node's clock, or its ID tokens are
    a year old (or not yet valid) when they arrive."""
    return {
        name: value
        for name, value in os.environ.items()
        if name == "LD_PRELOAD" or name.startswith("FAKETIME")
    }


@dataclass(frozen=True)
class Provider:
    issuer: str
    staff_port: int  # the node's staff port, registered in the provider's redirect URI


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """One oidc-provider for the module (its start is the slow part), on 127.0.0.1."""
    node = shutil.which("node")
    if node is None or not PROVIDER_LIB.exists():
        pytest.fail(
            "the OpenID Connect test needs Node.js and npm's oidc-provider: "
            "run scripts/npm-oidc.sh (make oidc-deps)"
        )
    port, staff_port = free_ports(2)
    env = {
        **_shifted_clock(),
        "PATH": "/usr/bin:/bin",
        "OIDC_PROVIDER_LIB": str(PROVIDER_LIB),
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": "tongban-420106",
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": f"https://127.0.0.1:{staff_port}/login/oidc/callback",
    }
    process = subprocess.Popen(
        [node, str(PROVIDER_JS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=START_DEADLINE):
                pytest.fail(f"oidc-provider did not start within {START_DEADLINE} s")
        line = process.stdout.readline()
        if not line.startswith(b"listening "):
            pytest.fail(f"oidc-provider did not start: {line!r}")
        yield Provider(f"http://127.0.0.1:{port}", staff_port)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


@pytest.fixture
async def setup(pki: Pki, tmp_path: Path, provider: Provider) -> AsyncIterator[Setup]:
    staff, issuer = provider.staff_port, provider.issuer
    federation, public = [p for p in free_ports(3) if p != staff][:2]
    staff_url = f"https://127.0.0.1:{staff}"
    oidc = f"""
[staff]
lockout_threshold = 2
[staff.oidc]
issuer = "{issuer}"
client_id = "tongban-420106"
client_secret = "{CLIENT_SECRET}"
role_claim = "tongban_roles"
redirect_uri = "{staff_url}/login/oidc/callback"
[staff.oidc.roles]
tongban-approver = "approver"
tongban-clerk = "clerk"
tongban-licence = ["licence_officer"]
"""
    config_path = write_config(
        tmp_path / "node", pki, pki.a, "420106", ports=(federation, public, staff), extra=oidc
    )
    config = load_config(config_path)
    add_account(config.data_dir, "zhou.min", PASSWORD, ["clerk"], display_name="周敏")
    add_account(config.data_dir, "lu.xun", PASSWORD, ["approver"], display_name="鲁迅")
    add_account(config.data_dir, "han.mei", HANDED_OUT, ["clerk"], must_change=True)

    def factory(
        config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: object
    ) -> CoreHandle:
        core = RunningFakeCore(tmp_path)
        return CoreHandle(core=core, storage_ok=lambda: True, close=lambda: None)

    def pages(name: str, app: web.Application) -> None:
        if name == "staff":
            app.router.add_get("/cases/{case}", _page)

    node = Node(config, core_factory=factory, extensions=[pages])
    store = StaffStore(config.data_dir)
    try:
        await node.start()
        yield Setup(node, node.urls["staff"], issuer, store)
    finally:
        await node.stop()
        store.close()


async def _context(browser: Browser) -> BrowserContext:
    """A fresh context that trusts the dev PKI and reaches nothing but loopback."""
    context = await browser.new_context(ignore_https_errors=True, locale="zh-CN")

    async def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:  # e.g. the provider's dev pages import a web font
            await route.abort()

    await context.route("**/*", only_loopback)
    return context


async def _through_provider(context: BrowserContext, setup: Setup, login: str) -> str:
    """Start at a console page, sign in at the provider as ``login``; the final URL."""
    page = await context.new_page()
    await page.goto(f"{setup.staff}/cases/WC-1", timeout=MS)
    assert urlsplit(page.url).path == "/login"
    link = page.locator("#oidc")
    await expect(link).to_be_visible(timeout=MS)
    await expect(link).to_have_text("使用统一身份认证平台登录")
    await link.click()
    await page.wait_for_url(f"{setup.issuer}/**", timeout=MS)
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "anything")
    await page.click("button[type=submit]")
    consent = page.locator("button[autofocus]")
    await page.wait_for_load_state()
    if page.url.startswith(setup.issuer) and await consent.count():
        await consent.click()
    await page.wait_for_url(f"{setup.staff}/**", timeout=MS)
    await page.wait_for_load_state("networkidle", timeout=MS)
    return page.url


async def test_openid_connect_sign_in_maps_roles_from_the_claim(browser, setup) -> None:
    context = await _context(browser)
    final = await _through_provider(context, setup, "wang.fang")
    assert urlsplit(final).path == "/cases/WC-1"  # back where the person started
    page = context.pages[0]
    await expect(page.locator("h1")).to_have_text("工作台")
    me = await page.evaluate("fetch('/console/v1/me').then((r) => r.json())")
    assert me["name"] == "wang.fang"
    assert me["display_name"] == "王芳"
    assert me["roles"] == ["approver"]  # "unrelated-group" maps to nothing
    assert me["credential"] == "session"
    cookies = {c["name"]: c for c in await context.cookies(setup.staff)}
    session = cookies["__Host-tongban-session"]
    assert (session["httpOnly"], session["secure"], session["sameSite"]) == (True, True, "Strict")
    assert "__Host-tongban-oidc" not in cookies  # the state binding is gone
    [entry] = [e for e in setup.store.journal_entries(name="wang.fang") if e.event == "signin"]
    assert entry.detail["via"] == "oidc"
    assert entry.detail["issuer"] == setup.issuer
    await context.close()


async def test_a_provider_account_without_a_mapped_role_is_refused(browser, setup) -> None:
    context = await _context(browser)
    final = await _through_provider(context, setup, "zhang.san")
    assert urlsplit(final).path == "/login"
    page = context.pages[0]
    await expect(page.locator("#message")).to_contain_text("未被授予本系统的任何岗位")
    await page.click("#lang")
    await expect(page.locator("#message")).to_contain_text("holds no role in this system")
    cookies = {c["name"] for c in await context.cookies(setup.staff)}
    assert "__Host-tongban-session" not in cookies
    [entry] = [e for e in setup.store.journal_entries(name="zhang.san")]
    assert (entry.event, entry.detail["reason"]) == ("signin-failed", "oidc-no-role")
    await context.close()


async def test_password_sign_in_page_in_chinese_and_english(browser, setup) -> None:
    context = await _context(browser)
    page = await context.new_page()
    await page.goto(f"{setup.staff}/login?next=/cases/WC-2", timeout=MS)
    await expect(page.locator("label[for=user]")).to_have_text("用户名")
    await page.fill("#user", "zhou.min")
    await page.fill("#password", "not the password")
    await page.click("#submit")
    await expect(page.locator("#message")).to_have_text("用户名或密码错误。")
    await page.click("#lang")
    await expect(page.locator("label[for=password]")).to_have_text("Password")
    await expect(page.locator("#message")).to_have_text("The user name or password is wrong.")
    assert await page.evaluate("document.documentElement.lang") == "en"
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{setup.staff}/cases/WC-2", timeout=MS)
    await expect(page.locator("h1")).to_have_text("工作台")
    # the helper the console's tests use does the same in a fresh context
    other = await _context(browser)
    helper_page = await other.new_page()
    await sign_in_page(helper_page, setup.staff, "zhou.min", PASSWORD)
    assert urlsplit(helper_page.url).path == "/"
    await other.close()
    await context.close()


async def test_the_page_says_when_a_locked_account_may_try_again(browser, setup) -> None:
    context = await _context(browser)
    page = await context.new_page()
    await page.goto(f"{setup.staff}/login", timeout=MS)
    await page.fill("#user", "lu.xun")
    for _ in range(2):  # lockout_threshold = 2, lockout_duration 15 minutes
        await page.fill("#password", "not the password")
        await page.click("#submit")
        await expect(page.locator("#message")).not_to_have_text("正在登录……")
    message = page.locator("#message")
    await expect(message).to_have_text("登录失败次数过多，账户已暂时锁定，请在 15 分钟后重试。")
    await page.click("#lang")
    await expect(message).to_have_text(
        "Too many failed sign-ins: the account is locked. Try again in 15 minute(s)."
    )
    await page.fill("#password", PASSWORD)  # the right one, while locked
    await page.click("#submit")
    await expect(message).to_contain_text("Try again in 15 minute(s)")
    assert urlsplit(page.url).path == "/login"
    await context.close()


async def test_a_response_for_another_browser_is_refused(setup) -> None:
    """A state started in one browser, its callback (with a code) sent from another."""
    from relay.signin.testing import cookie_session

    async with cookie_session() as mine, cookie_session() as theirs:
        async with mine.get(
            f"{setup.staff}/login/oidc?next=/cases/WC-3", ssl=False, allow_redirects=False
        ) as resp:
            assert resp.status == 303
            location = resp.headers["Location"]
        assert location.startswith(f"{setup.issuer}/auth?")
        query = dict(parse_qsl(urlsplit(location).query))
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43
        assert query["nonce"]
        assert query["state"]
        callback = f"{setup.staff}/login/oidc/callback?state={query['state']}&code=x"
        async with theirs.get(callback, ssl=False, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/login?error=oidc"
        async with mine.get(callback, ssl=False, allow_redirects=False) as resp:
            assert resp.status == 303  # the state was used up by the refused attempt
    reasons = [e.detail["reason"] for e in setup.store.journal_entries()]
    assert reasons == ["oidc-state", "oidc-state"]


async def test_a_handed_out_password_asks_for_the_persons_own(browser, setup) -> None:
    context = await _context(browser)
    page = await context.new_page()
    await page.goto(f"{setup.staff}/login?next=/cases/WC-4", timeout=MS)
    await page.fill("#user", "han.mei")
    await page.fill("#password", HANDED_OUT)
    await page.click("#submit")
    message = page.locator("#message")
    await expect(message).to_have_text("这是发给您的一次性密码，请设置您自己的新密码后登录。")
    await expect(page.locator("#change-row legend")).to_have_text(
        "请设置您自己的密码（至少 10 个字符）"
    )
    await expect(page.locator("label[for=new-password]")).to_have_text("新密码")
    await page.fill("#new-password", PASSWORD)
    await page.fill("#new-password-2", PASSWORD + "!")
    await page.click("#submit")
    await expect(message).to_have_text("两次输入的新密码不一致。")
    await page.fill("#new-password-2", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(f"{setup.staff}/cases/WC-4", timeout=MS)
    account = setup.store.account("han.mei")
    assert account is not None
    assert account.must_change is False
    await context.close()
