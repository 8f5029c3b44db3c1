"""Problem documents: stable codes, aiohttp errors mapped, no internal cause leaked."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay.problem import PROBLEM_MEDIA_TYPE, Problem, ProblemCode, problem_middleware


def _app() -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=16)

    async def raise_problem(request: web.Request) -> web.Response:
        raise Problem(409, ProblemCode.CONFLICT, "already there")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret database path /var/lib/x")

    async def read_body(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app.router.add_get("/problem", raise_problem)
    app.router.add_get("/boom", boom)
    app.router.add_post("/body", read_body)
    return app


@pytest.fixture
async def client() -> TestClient:  # type: ignore[misc]
    async with TestClient(TestServer(_app())) as c:
        yield c


async def test_problem_exception_becomes_rfc9457_document(client: TestClient) -> None:
    resp = await client.get("/problem")
    assert resp.status == 409
    assert resp.content_type == PROBLEM_MEDIA_TYPE
    body = await resp.json(content_type=None)
    assert body == {
        "type": "urn:tongban:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "already there",
        "code": "conflict",
        "instance": "/problem",
    }


async def test_unknown_route_is_not_found_problem(client: TestClient) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert (await resp.json(content_type=None))["code"] == "not-found"


async def test_wrong_method_is_405_problem_with_allow(client: TestClient) -> None:
    resp = await client.delete("/problem")
    assert resp.status == 405
    assert (await resp.json(content_type=None))["code"] == "method-not-allowed"
    assert "GET" in resp.headers["Allow"]


async def test_body_over_client_max_size_is_413_problem(client: TestClient) -> None:
    resp = await client.post("/body", data=b"x" * 100)
    assert resp.status == 413
    assert (await resp.json(content_type=None))["code"] == "body-too-large"


async def test_unexpected_exception_is_500_without_cause(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="tongban.relay.http"):
        resp = await client.get("/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret" not in text
    assert "RuntimeError" not in text
    assert (await resp.json(content_type=None))["code"] == "internal-error"
    assert any("secret database path" in r.getMessage() or r.exc_info for r in caplog.records)
