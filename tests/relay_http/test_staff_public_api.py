"""The staff API (bearer token, over TLS) and the public listener, over a fake core."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, client_ssl, serve

from relay.config import Limits
from relay.http.public import public_app
from relay.http.staff import staff_app
from relay.staff_auth import StaffRole, issue_token
from relay.tls import server_context

NODE = "420106"


class Staff:
    def __init__(
        self, core: FakeCore, url: str, session: aiohttp.ClientSession, key: Ed25519PrivateKey
    ) -> None:
        self.core, self.url, self.session, self.key = core, url, session, key

    def auth(self, *roles: StaffRole) -> dict[str, str]:
        token = issue_token(
            self.key,
            node_id=NODE,
            subject="王芳",
            roles=roles or (StaffRole.CLERK,),
            now=datetime.now(UTC),
            ttl=600,
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def staff(pki: Pki, tmp_path: Path) -> AsyncIterator[Staff]:
    core = FakeCore(tmp_path)
    key = Ed25519PrivateKey.generate()
    app = staff_app(
        core,
        node_id=NODE,
        token_key=key.public_key(),
        clock=lambda: datetime.now(UTC),
        limits=Limits(max_body_bytes=2048),
    )
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, None))
    async with serve(app, context) as url, aiohttp.ClientSession(connector=connector) as session:
        yield Staff(core, url, session, key)


PACKET = {
    "to": "320982",
    "case_id": "C-2026-0001",
    "matter": "business-licence",
    "action": "submit",
    "mode": "proxy_receipt",
    "content": {"applicant": "张三"},
}


async def test_create_packet_after_staging_its_attachment(staff: Staff) -> None:
    data = b"%PDF-1.7 scanned ID card" * 1000
    digest = hashlib.sha256(data).hexdigest()
    missing = await staff.session.post(
        staff.url + "/staff/v1/packets",
        json={**PACKET, "attachments": [digest]},
        headers=staff.auth(),
    )
    assert missing.status == 404
    put = await staff.session.put(
        f"{staff.url}/staff/v1/attachments/{digest}?name=id.pdf",
        data=data,
        headers={**staff.auth(), "Content-Type": "application/pdf"},
    )
    assert put.status == 201
    info = (await put.json())["attachment"]
    assert info["name"] == "id.pdf"
    assert info["media_type"] == "application/pdf"
    resp = await staff.session.post(
        staff.url + "/staff/v1/packets",
        json={**PACKET, "attachments": [digest]},
        headers=staff.auth(),
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["to"] == "320982"
    assert resp.headers["Location"] == f"/staff/v1/packets/{body['packet_id']}"
    assert staff.core.created[0]["content"] == {"applicant": "张三"}


async def test_reader_role_cannot_create_packets(staff: Staff) -> None:
    resp = await staff.session.post(
        staff.url + "/staff/v1/packets", json=PACKET, headers=staff.auth(StaffRole.READER)
    )
    assert resp.status == 403
    assert (await resp.json(content_type=None))["code"] == "forbidden"
    assert staff.core.created == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"to": "32098"}, 400, "invalid-request"),
        ({"content": "text"}, 400, "invalid-request"),
        ({"mode": None}, 400, "invalid-request"),
        ({"attachments": ["abc"]}, 400, "invalid-request"),
        ({"to": "999999"}, 404, "unknown-node"),
        ({"action": "forbidden"}, 403, "not-authorized"),
    ],
)
async def test_bad_packet_requests_are_problems(
    staff: Staff, change: dict[str, object], status: int, code: str
) -> None:
    resp = await staff.session.post(
        staff.url + "/staff/v1/packets", json={**PACKET, **change}, headers=staff.auth()
    )
    assert resp.status == status
    assert (await resp.json(content_type=None))["code"] == code
    assert staff.core.created == []


async def test_staff_bad_json_and_oversize_body(staff: Staff) -> None:
    bad = await staff.session.post(
        staff.url + "/staff/v1/packets",
        data=b"{",
        headers={**staff.auth(), "Content-Type": "application/json"},
    )
    assert (await bad.json(content_type=None))["code"] == "bad-json"
    big = await staff.session.post(
        staff.url + "/staff/v1/packets",
        json={**PACKET, "content": {"x": "y" * 4000}},
        headers=staff.auth(),
    )
    assert big.status == 413
    assert (await big.json(content_type=None))["code"] == "body-too-large"


async def test_outbox_inbox_and_packet_reading(staff: Staff) -> None:
    await staff.session.post(staff.url + "/staff/v1/packets", json=PACKET, headers=staff.auth())
    reader = staff.auth(StaffRole.READER)
    outbox = await (await staff.session.get(staff.url + "/staff/v1/outbox", headers=reader)).json()
    assert [i["state"] for i in outbox["items"]] == ["queued"]
    assert outbox["items"][0]["packet"]["created"] == "2026-11-28T01:00:00Z"
    bad = await staff.session.get(staff.url + "/staff/v1/outbox?state=lost", headers=reader)
    assert bad.status == 400
    inbox = await (await staff.session.get(staff.url + "/staff/v1/inbox", headers=reader)).json()
    assert len(inbox["items"]) == 2
    newest = staff.url + "/staff/v1/inbox?order=desc&limit=1"
    latest = await (await staff.session.get(newest, headers=reader)).json()
    assert [i["packet"]["packet_id"] for i in latest["items"]] == [
        inbox["items"][-1]["packet"]["packet_id"]
    ]
    for query in ("limit=0", "limit=10001", "limit=x", "order=up"):
        for path in ("/staff/v1/outbox", "/staff/v1/inbox"):
            bad = await staff.session.get(f"{staff.url}{path}?{query}", headers=reader)
            assert bad.status == 400, (path, query)
            assert (await bad.json(content_type=None))["code"] == "invalid-request"
    packet = await staff.session.get(staff.url + "/staff/v1/packets/p1", headers=reader)
    assert (await packet.json())["content"] == {"applicant": "张三"}
    missing = await staff.session.get(staff.url + "/staff/v1/packets/p9", headers=reader)
    assert missing.status == 404
    assert (await missing.json(content_type=None))["code"] == "not-found"


async def test_staff_routes_need_a_token(staff: Staff) -> None:
    for path in ("/staff/v1/outbox", "/staff/v1/inbox", "/staff/v1/packets/p1"):
        resp = await staff.session.get(staff.url + path)
        assert resp.status == 401
        assert (await resp.json(content_type=None))["code"] == "unauthorized"


async def test_health_and_readiness(tmp_path: Path) -> None:
    state = {"storage": True, "outbox": True}
    app = public_app(
        descriptor=lambda: b'{"node_id": "420106"}',
        readiness={"storage": lambda: state["storage"], "outbox": lambda: state["outbox"]},
    )
    async with serve(app, None) as url, aiohttp.ClientSession() as session:
        assert (await (await session.get(url + "/healthz")).json()) == {"status": "ok"}
        ready = await session.get(url + "/readyz")
        assert ready.status == 200
        state["outbox"] = False
        not_ready = await session.get(url + "/readyz")
        assert not_ready.status == 503
        body = await not_ready.json(content_type=None)
        assert body["code"] == "not-ready"
        assert body["checks"] == {"storage": True, "outbox": False}
        assert (await session.get(url + "/healthz")).status == 200
        node = await session.get(url + "/.well-known/tongban/node.json")
        assert await node.read() == b'{"node_id": "420106"}'
        missing = await session.get(url + "/nope")
        assert (await missing.json(content_type=None))["code"] == "not-found"


async def test_post_attachment_with_repr_digest(staff: Staff) -> None:
    import base64

    data = "办事指南".encode() * 5000
    sha = hashlib.sha256(data)
    header = f"sha-256=:{base64.b64encode(sha.digest()).decode()}:"
    resp = await staff.session.post(
        staff.url + "/staff/v1/attachments?name=guide.txt",
        data=data,
        headers={**staff.auth(), "Repr-Digest": header, "Content-Type": "text/plain"},
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["digest"] == sha.hexdigest()
    assert resp.headers["Location"] == f"/staff/v1/attachments/{sha.hexdigest()}"
    assert sha.hexdigest() in staff.core.complete

    missing = await staff.session.post(
        staff.url + "/staff/v1/attachments", data=data, headers=staff.auth()
    )
    assert missing.status == 400
    assert (await missing.json(content_type=None))["code"] == "invalid-request"

    wrong = hashlib.sha256(b"other").digest()
    bad = await staff.session.post(
        staff.url + "/staff/v1/attachments",
        data=b"not the declared content",
        headers={**staff.auth(), "Repr-Digest": f"sha-256=:{base64.b64encode(wrong).decode()}:"},
    )
    assert bad.status == 422
    assert (await bad.json(content_type=None))["code"] == "digest-mismatch"
