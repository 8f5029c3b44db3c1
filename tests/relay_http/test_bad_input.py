"""Issue 11, finding 3: bad input is a 4xx problem document, never a 500; ordinary
business numbers (fractions) are accepted. Over the staff API on a fake core."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import jwt
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, client_ssl, serve
from test_staff_public_api import NODE, PACKET, Staff

from relay.config import Limits
from relay.http.federation import federation_app
from relay.http.staff import staff_app
from relay.problem import problem_middleware
from relay.staff_auth import issue_token
from relay.tls import BundleSource, server_context

POST = "/staff/v1/packets"


@pytest.fixture
async def staff(pki: Pki, tmp_path: Path) -> AsyncIterator[Staff]:
    core = FakeCore(tmp_path)
    key = Ed25519PrivateKey.generate()
    app = staff_app(
        core,
        node_id=NODE,
        token_key=key.public_key(),
        clock=lambda: datetime.now(UTC),
        limits=Limits(max_body_bytes=4096),
    )
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, None))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        yield Staff(core, url, session, key)


async def _post_raw(staff: Staff, raw: bytes) -> aiohttp.ClientResponse:
    return await staff.session.post(
        staff.url + POST,
        data=raw,
        headers={**staff.auth(), "Content-Type": "application/json"},
    )


def _packet_with(content_json: str, **over: object) -> bytes:
    head = json.dumps({**PACKET, **over, "content": None}, ensure_ascii=False)
    return head.replace('"content": null', f'"content": {content_json}').encode()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        pytest.param(b"[" * 1000 + b"]" * 1000, "", id="nested-1000-deep"),
        pytest.param(_packet_with('{"a":' * 40 + "1" + "}" * 40), "", id="nested-40-deep"),
        pytest.param(_packet_with('{"fee": NaN}'), "NaN", id="nan"),
        pytest.param(_packet_with('{"fee": Infinity}'), "Infinity", id="infinity"),
        pytest.param(_packet_with('{"n": 9007199254740993}'), "/content/n", id="int-above-2^53"),
        pytest.param(_packet_with('{"n": 1e300}'), "/content/n", id="huge-float"),
        pytest.param(_packet_with('{"a": 1, "a": 2}'), "repeats", id="repeated-key"),
        pytest.param(
            _packet_with("{}").replace(b'"C-2026-0001"', b'"\\ud800"'), "surrogate", id="surrogate"
        ),
    ],
)
async def test_json_outside_the_rules_is_400_bad_json(staff: Staff, raw: bytes, where: str) -> None:
    resp = await _post_raw(staff, raw)
    assert resp.status == 400
    problem = await resp.json(content_type=None)
    assert problem["code"] == "bad-json"
    assert where in problem["detail"]
    assert staff.core.created == []


async def test_fractional_numbers_are_ordinary_content(staff: Staff) -> None:
    raw = _packet_with('{"area_m2": 12.5, "fee": 0.1, "n": 9007199254740991}')
    resp = await _post_raw(staff, raw)
    assert resp.status == 201, await resp.text()
    [created] = staff.core.created
    assert created["content"] == {"area_m2": 12.5, "fee": 0.1, "n": 9007199254740991}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"case_id": "C" * 300}, id="case-id-300-chars"),
        pytest.param({"matter": "m" * 300}, id="matter-300-chars"),
        pytest.param({"expires_in_seconds": 10**14}, id="expires-1e14-integer"),
        pytest.param({"expires_in_seconds": 1e14}, id="expires-1e14-float"),
    ],
)
async def test_out_of_range_fields_are_400_invalid_request(
    staff: Staff, change: dict[str, object]
) -> None:
    resp = await staff.session.post(
        staff.url + POST, json={**PACKET, **change}, headers=staff.auth()
    )
    assert resp.status == 400
    assert (await resp.json(content_type=None))["code"] == "invalid-request"
    assert staff.core.created == []


async def test_a_token_without_roles_cannot_read(staff: Staff) -> None:
    token = issue_token(
        staff.key, node_id=NODE, subject="王芳", roles=["clerk"], now=datetime.now(UTC), ttl=600
    )
    # re-sign the same claims with an empty role list
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = []
    empty = jwt.encode(claims, staff.key, algorithm="EdDSA")
    resp = await staff.session.get(
        staff.url + "/staff/v1/outbox", headers={"Authorization": f"Bearer {empty}"}
    )
    assert resp.status == 401
    assert (await resp.json(content_type=None))["code"] == "token-invalid"


async def _problem_of(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[int, dict[str, str], dict[str, object]]:
    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/x")
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


@pytest.mark.parametrize(
    "fault",
    [
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.DatabaseError("database disk image is malformed"),
        OSError(28, "No space left on device"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
    ],
    ids=["disk-full", "corrupt", "enospc", "postgresql-gone"],
)
async def test_storage_faults_are_503_with_retry_after(fault: Exception) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise fault

    status, headers, problem = await _problem_of(handler)
    assert status == 503
    assert problem["code"] == "storage-unavailable"
    assert int(headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"packets": ' + b"[" * 1000 + b"]" * 1000 + b"}", id="nested-1000-deep"),
        pytest.param(b'{"packets": ["\\udfff"]}', id="lone-surrogate"),
        pytest.param(b'{"packets": [NaN]}', id="nan"),
    ],
)
async def test_federation_json_outside_the_rules_is_400_over_mutual_tls(
    pki: Pki, tmp_path: Path, raw: bytes
) -> None:
    core = FakeCore(tmp_path)
    app = federation_app(
        core,
        bundle=BundleSource(pki.bundle_path),
        clock=lambda: datetime.now(UTC),
        limits=Limits(max_body_bytes=4096),
        descriptor=lambda: b"{}",
    )
    context = server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, pki.a))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        resp = await session.post(
            url + "/federation/v1/packets",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status == 400
        assert (await resp.json(content_type=None))["code"] == "bad-json"
