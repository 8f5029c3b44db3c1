"""The OpenAPI 3.1 document: valid, served, in step with the routes and the responses."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, client_ssl, serve

from relay.config import Limits, OidcSettings
from relay.http.federation import federation_app
from relay.http.openapi import openapi_bytes
from relay.http.public import public_app
from relay.http.staff import staff_app
from relay.signin.oidc import OidcSignIn
from relay.signin.web import SignIn
from relay.staff_auth import StaffRole, issue_token
from relay.tls import BundleSource, server_context

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(openapi_bytes())
NODE = "420106"


def _schema_check(instance: object, name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    OAS31Validator(schema).validate(instance)


def test_document_is_valid_openapi_31() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


class _UniqueKeys(yaml.SafeLoader):
    """A YAML loader that refuses a mapping naming a key twice (a plain load keeps the
    last one silently: a path documented twice would hide one of its copies)."""


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {twice}")
    return loader.construct_mapping(node)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def test_document_names_every_key_once() -> None:
    assert yaml.load(openapi_bytes(), Loader=_UniqueKeys) == SPEC


def test_docs_copy_is_the_served_document() -> None:
    assert DOCS.read_bytes() == openapi_bytes()


def _routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None:  # a static folder: documented as PREFIX/{filename}
            path = info["prefix"].rstrip("/") + "/{filename}"
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)
        found.add((route.method.lower(), path))
    return found


def _console_signin() -> SignIn:
    """Console sign-in with OpenID Connect on, for its routes only."""
    signin = SignIn(None, None, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    OidcSignIn(OidcSettings(issuer="https://idp.test", client_id="c", client_secret="s"), signin)
    return signin


def test_every_route_is_documented_and_every_documented_route_exists(pki: Pki) -> None:
    core = FakeCore(Path("."))
    apps = [
        federation_app(
            core,
            bundle=BundleSource(pki.bundle_path),
            clock=lambda: datetime.now(UTC),
            limits=Limits(),
            descriptor=lambda: b"{}",
        ),
        staff_app(
            core,
            node_id=NODE,
            token_key=Ed25519PrivateKey.generate().public_key(),
            clock=lambda: datetime.now(UTC),
            limits=Limits(),
            signin=_console_signin(),
        ),
        public_app(descriptor=lambda: b"{}", readiness={}),
    ]
    from relay.http.audit import add_audit_federation_routes, add_audit_staff_routes

    add_audit_federation_routes(apps[0], None)  # type: ignore[arg-type]  # routes only
    add_audit_staff_routes(apps[1], None)  # type: ignore[arg-type]
    from relay.http.dossier import add_dossier_staff_route

    add_dossier_staff_route(apps[1], None)  # type: ignore[arg-type]
    from relay.federation.reload import reload_extension
    from relay.federation.service import FederationService
    from relay.http.cases import add_case_routes
    from relay.http.licences import add_licence_routes
    from relay.http.tracking import add_tracking_routes

    reload_extension(None)("staff", apps[1])
    FederationService.extension(None, "public", apps[2])  # type: ignore[arg-type]

    add_case_routes(apps[1], None)  # type: ignore[arg-type]  # routes only
    from relay.http.licence_status import add_licence_status_routes

    add_licence_status_routes(apps[1], None)  # type: ignore[arg-type]
    from relay.console.http import add_console_routes

    add_console_routes(apps[1], None)  # type: ignore[arg-type]  # routes only
    add_tracking_routes(apps[2], None)  # type: ignore[arg-type]
    add_licence_routes(apps[2], None)  # type: ignore[arg-type]
    from types import SimpleNamespace

    from relay.http.survey_cases import SurveyCaseLayer
    from remote_survey.staffapi import add_staff_routes as add_survey_staff_routes
    from remote_survey.web import add_survey_routes

    hub: Any = SimpleNamespace(
        config=SimpleNamespace(node_id=NODE, clock=None), rooms={}, ended={}, get=lambda s: None
    )
    add_survey_staff_routes(apps[1], hub, Ed25519PrivateKey.generate())
    SurveyCaseLayer(None, hub).extension("staff", apps[1])  # type: ignore[arg-type]
    add_survey_routes(apps[2], hub)
    from relay.integration.http import add_integration_routes

    add_integration_routes(apps[1], None, None, None)  # type: ignore[arg-type]  # routes only
    from relay.metrics import NodeMetrics, add_metrics_routes

    add_metrics_routes(apps[1], NodeMetrics(lambda: datetime.now(UTC)))
    served = set().union(*(_routes(a) for a in apps))
    served = {(m, p) for m, p in served if m != "head" or "attachments" in p}
    documented = {
        (method, path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in {"get", "put", "post", "head", "delete", "patch"}
    }
    assert served == documented


@pytest.fixture
async def staff_url(
    pki: Pki, tmp_path: Path
) -> AsyncIterator[tuple[str, FakeCore, Ed25519PrivateKey]]:
    core = FakeCore(tmp_path)
    key = Ed25519PrivateKey.generate()
    app = staff_app(
        core,
        node_id=NODE,
        token_key=key.public_key(),
        clock=lambda: datetime.now(UTC),
        limits=Limits(),
    )
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    async with serve(app, context) as url:
        yield url, core, key


async def test_served_on_staff_and_public_listeners_without_token(
    pki: Pki, staff_url: tuple[str, FakeCore, Ed25519PrivateKey]
) -> None:
    url, _, _ = staff_url
    public = public_app(descriptor=lambda: b"{}", readiness={})
    async with serve(public, None) as public_url, aiohttp.ClientSession() as session:
        for base, context in ((url, client_ssl(pki, None)), (public_url, None)):
            resp = await session.get(base + "/openapi.yaml", ssl=context or False)
            assert resp.status == 200
            assert resp.content_type == "application/yaml"
            validate(yaml.safe_load(await resp.read()))


async def test_staff_responses_match_their_schemas(
    pki: Pki, staff_url: tuple[str, FakeCore, Ed25519PrivateKey]
) -> None:
    url, _, key = staff_url
    token = issue_token(
        key, node_id=NODE, subject="s", roles=[StaffRole.CLERK], now=datetime.now(UTC), ttl=60
    )
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "to": "320982",
        "case_id": "C1",
        "matter": "m",
        "action": "submit",
        "mode": "online",
        "content": {"a": 1},
    }
    _schema_check(body, "NewPacket")
    async with aiohttp.ClientSession(headers=headers) as session:
        ctx = client_ssl(pki, None)
        created = await session.post(url + "/staff/v1/packets", json=body, ssl=ctx)
        _schema_check(await created.json(), "PacketSummary")
        outbox = await (await session.get(url + "/staff/v1/outbox", ssl=ctx)).json()
        for item in outbox["items"]:
            _schema_check(item, "OutboxItem")
        inbox = await (await session.get(url + "/staff/v1/inbox", ssl=ctx)).json()
        for item in inbox["items"]:
            _schema_check(item, "InboxItem")
        packet = await (await session.get(url + "/staff/v1/packets/p1", ssl=ctx)).json()
        _schema_check(packet, "PacketContent")
        missing = await session.get(url + "/staff/v1/packets/nope", ssl=ctx)
        _schema_check(await missing.json(content_type=None), "Problem")
        data = b"hello attachment"
        digest = hashlib.sha256(data).hexdigest()
        put = await session.put(url + f"/staff/v1/attachments/{digest}", data=data, ssl=ctx)
        _schema_check(await put.json(), "UploadProgress")


def test_problem_codes_in_the_document_match_the_code() -> None:
    from relay.problem import ProblemCode

    documented = set(SPEC["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert documented == {c.value for c in ProblemCode}
