"""A whole node's staff listener (TLS) with console sign-in: nothing open without it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from relay_http_fake_core import RunningFakeCore
from relay_http_support import Pki, client_ssl, free_ports, write_config

from relay.config import NodeConfig, load_config
from relay.core.ports import PeerLink
from relay.node import CoreHandle, Node
from relay.signin.testing import add_account, cookie_session, sign_in
from relay.tls import BundleSource

PASSWORD = "a long enough password"
SIGN_IN = ("POST", "/console/v1/session")
OPEN = {"/openapi.yaml", "/login", "/login/options", "/login/login.js", "/login/login.css"}


def _factory(folder: Path):
    def factory(
        config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: object
    ) -> CoreHandle:
        return CoreHandle(core=RunningFakeCore(folder), storage_ok=lambda: True, close=lambda: None)

    return factory


async def _page(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>工作台</title>", content_type="text/html")


@pytest.fixture
async def node(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Node, web.Application]]:
    ports = free_ports(3)
    config_path = write_config(tmp_path / "node", pki, pki.a, "420106", ports=ports)
    config = load_config(config_path)
    add_account(config.data_dir, "wang.fang", PASSWORD, ["clerk"], display_name="王芳")
    apps: dict[str, web.Application] = {}

    def console_pages(name: str, app: web.Application) -> None:
        apps[name] = app
        if name == "staff":  # as the console adds its pages at the root
            app.router.add_get("/", _page)
            app.router.add_get("/cases/{case}", _page)

    running = Node(config, core_factory=_factory(tmp_path), extensions=[console_pages])
    await running.start()
    try:
        yield running, apps["staff"]
    finally:
        await running.stop()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x" * 64, path)


async def test_no_staff_page_or_route_is_reachable_without_a_session_or_token(
    node: tuple[Node, web.Application], pki: Pki
) -> None:
    running, app = node
    base = running.urls["staff"]
    assert base.startswith("https://")
    checked: set[tuple[str, str]] = set()
    async with aiohttp.ClientSession() as http:
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if path in OPEN or route.method == "HEAD" or (route.method, path) == SIGN_IN:
                continue
            url = base + _concrete(path)
            async with http.request(
                route.method, url, ssl=client_ssl(pki, None), allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as resp:  # fmt: skip
                assert resp.status == 401, (route.method, path, resp.status)
            checked.add((route.method, path))
            if route.method == "GET":  # a browser asking for the page goes to sign in
                async with http.get(
                    url, ssl=client_ssl(pki, None), allow_redirects=False,
                    headers={"Accept": "text/html,application/xhtml+xml"},
                ) as resp:  # fmt: skip
                    if path.startswith(("/staff/", "/console/v1/")):
                        assert resp.status == 401, path
                    else:
                        assert resp.status == 303, path
                        location = resp.headers["Location"]
                        assert location.startswith("/login?next=/"), location
    assert {
        ("GET", "/"), ("GET", "/cases/{case}"), ("GET", "/console/v1/me"),
        ("DELETE", "/console/v1/session"), ("GET", "/staff/v1/outbox"),
        ("POST", "/staff/v1/packets"), ("PUT", "/staff/v1/attachments/{digest}"),
    } <= checked  # fmt: skip


async def test_a_signed_in_person_reaches_pages_and_the_staff_api_over_tls(
    node: tuple[Node, web.Application], pki: Pki
) -> None:
    running, _ = node
    base, tls = running.urls["staff"], client_ssl(pki, None)
    async with cookie_session() as http:
        async with http.get(base + "/", ssl=tls, allow_redirects=False) as resp:
            assert resp.status == 401  # no Accept: text/html: an API answer
        me = await sign_in(http, base, "wang.fang", PASSWORD, ssl=tls)
        assert me["display_name"] == "王芳"
        async with http.get(base + "/", ssl=tls, headers={"Accept": "text/html"}) as resp:
            assert resp.status == 200
            assert "工作台" in await resp.text()
        async with http.get(base + "/staff/v1/inbox", ssl=tls) as resp:
            assert resp.status == 200
        async with http.get(base + "/login", ssl=tls) as resp:
            page = await resp.text()
            assert resp.status == 200
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert '<html lang="zh-CN">' in page
        assert '<label for="user"' in page
        assert '<label for="password"' in page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing off-node
