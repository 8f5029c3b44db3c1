"""Mutual TLS on the federation listener, over real TLS 1.3 on 127.0.0.1."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from relay_http_support import Pki, client_ssl, serve

from relay.problem import problem_middleware
from relay.tls import PEER_KEY, BundleSource, client_context, mtls_middleware, server_context


def _app(pki: Pki, seen: list[str]) -> web.Application:
    source = BundleSource(pki.bundle_path)
    app = web.Application(
        middlewares=[problem_middleware, mtls_middleware(source, lambda: datetime.now(UTC))]
    )

    async def who(request: web.Request) -> web.Response:
        seen.append(request[PEER_KEY].node_id)
        return web.json_response({"peer": request[PEER_KEY].node_id})

    app.router.add_post("/who", who)
    return app


def _server_ssl(pki: Pki) -> ssl.SSLContext:
    return server_context(
        pki.b / "tls.pem", pki.b / "tls.key", pki.bundle, require_client_cert=True
    )


async def _post(url: str, context: ssl.SSLContext) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(url + "/who", json={"x": 1}, ssl=context)
        await resp.read()
        return resp


async def test_trusted_client_is_identified_by_its_certificate(pki: Pki) -> None:
    seen: list[str] = []
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        resp = await _post(url, client_ssl(pki, pki.a))
    assert resp.status == 200
    assert seen == ["420106"]


async def test_client_without_certificate_is_refused_at_tls_layer(pki: Pki) -> None:
    seen: list[str] = []
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        with pytest.raises(aiohttp.ClientError):
            await _post(url, client_ssl(pki, None))
    assert seen == []


async def test_client_from_unknown_root_is_refused_at_tls_layer(pki: Pki) -> None:
    seen: list[str] = []
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        with pytest.raises(aiohttp.ClientError):
            await _post(url, client_ssl(pki, pki.foreign))
    assert seen == []


async def test_revoked_client_gets_peer_revoked_problem(pki: Pki) -> None:
    seen: list[str] = []
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        resp = await _post(url, client_ssl(pki, pki.revoked))
        body = await resp.json(content_type=None)
    assert resp.status == 403
    assert resp.content_type == "application/problem+json"
    assert body["code"] == "peer-revoked"
    assert body["type"] == "urn:tongban:problem:peer-revoked"
    assert seen == []


async def test_seal_certificate_is_not_a_tls_identity(pki: Pki) -> None:
    seen: list[str] = []
    context = client_context(pki.bundle, pki.a / "seal.pem", pki.a / "seal.key")
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        try:
            resp = await _post(url, context)
        except aiohttp.ClientError:
            pass  # refused by OpenSSL: also correct
        else:
            assert resp.status == 403
            assert (await resp.json(content_type=None))["code"] == "peer-not-trusted"
    assert seen == []


async def test_tls12_client_is_refused(pki: Pki) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(pki.root / "root.pem")
    context.load_cert_chain(pki.a / "tls.pem", pki.a / "tls.key")
    seen: list[str] = []
    async with serve(_app(pki, seen), _server_ssl(pki)) as url:
        with pytest.raises(aiohttp.ClientError):
            await _post(url, context)
    assert seen == []


async def test_crl_update_takes_effect_without_restart(pki: Pki, tmp_path: Path) -> None:
    """A bundle without the CRL accepts the node; writing the CRL in refuses it."""

    bundle_file = tmp_path / "bundle.pem"
    bundle_file.write_bytes((pki.root / "root.pem").read_bytes())
    source = BundleSource(bundle_file)
    seen: list[str] = []
    app = web.Application(
        middlewares=[problem_middleware, mtls_middleware(source, lambda: datetime.now(UTC))]
    )

    async def who(request: web.Request) -> web.Response:
        seen.append(request[PEER_KEY].node_id)
        return web.Response(text="ok")

    app.router.add_post("/who", who)
    async with serve(app, _server_ssl(pki)) as url:
        first = await _post(url, client_ssl(pki, pki.revoked))
        bundle_file.write_bytes(pki.bundle_path.read_bytes())
        second = await _post(url, client_ssl(pki, pki.revoked))
    assert first.status == 200
    assert second.status == 403
    assert seen == ["420981"]


async def test_unreadable_trust_bundle_fails_closed(pki: Pki, tmp_path: Path) -> None:
    bundle_file = tmp_path / "bundle.pem"
    bundle_file.write_bytes(pki.bundle_path.read_bytes())
    source = BundleSource(bundle_file)
    seen: list[str] = []
    app = web.Application(
        middlewares=[problem_middleware, mtls_middleware(source, lambda: datetime.now(UTC))]
    )

    async def who(request: web.Request) -> web.Response:
        seen.append(request[PEER_KEY].node_id)
        return web.Response(text="ok")

    app.router.add_post("/who", who)
    async with serve(app, _server_ssl(pki)) as url:
        bundle_file.write_bytes(
            b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
        )
        resp = await _post(url, client_ssl(pki, pki.a))
        assert resp.status == 503
        assert (await resp.json(content_type=None))["code"] == "service-unavailable"
    assert seen == []
