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
        assert 'facingMode: { ideal: "environment" }' in (
            await (await http.get(f"{world.base_url}/survey/v1/static/site.js")).text()
        )
        assert "en: {" in shared
        assert "zh: {" in shared
        outside = await http.get(f"{world.base_url}/survey/v1/static/../web.py")
        assert outside.status in (403, 404)
