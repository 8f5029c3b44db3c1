"""The pages are served as static files with a strict policy, no build step."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from media_support import make_world, served


async def test_pages_and_scripts_are_served_with_a_same_origin_policy(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        for page, script in (("site", "site.js"), ("inspector", "inspector.js")):
            resp = await http.get(f"{world.base_url}/survey/v1/{page}")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            html = await resp.text()
            assert f'src="static/{script}"' in html
            assert 'lang="zh-CN"' in html
            js = await http.get(f"{world.base_url}/survey/v1/static/{script}")
            assert js.status == 200
            assert "javascript" in js.headers["Content-Type"]
        shared = await (await http.get(f"{world.base_url}/survey/v1/static/survey.js")).text()
        site_js = await (await http.get(f"{world.base_url}/survey/v1/static/site.js")).text()
        assert 'let facing = "environment"' in site_js  # the rear camera first
        assert "facingMode: { ideal: facing }" in site_js
        assert "en: {" in shared
        assert "zh: {" in shared
        outside = await http.get(f"{world.base_url}/survey/v1/static/../web.py")
        assert outside.status in (403, 404)


async def test_the_survey_mounts_on_the_nodes_public_listener_app_only(tmp_path: Path) -> None:
    from aiohttp import web

    from relay.http.public import public_app
    from remote_survey.web import survey_extension

    world = make_world(tmp_path)
    extension = survey_extension(world.hub)
    staff_like = web.Application()
    extension("staff", staff_like)
    extension("federation", staff_like)
    assert len(staff_like.router.routes()) == 0
    app = public_app(descriptor=lambda: b"{}", readiness={})
    extension("public", app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    world.base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(f"{world.base_url}/healthz")).status == 200
            page = await http.get(f"{world.base_url}/survey/v1/site")
            assert page.status == 200
            # behind the public listener's problem middleware the socket still upgrades
            async with await world.join(http, "not-a-token", "d1") as ws:
                msg = await ws.receive(timeout=10)
                assert (msg.data, msg.extra) == (4404, "wrong-session")
    finally:
        await runner.cleanup()
