"""Issue 11: schemathesis fuzzes the served federation, staff and public APIs against
``docs/openapi.yaml``: no 5xx, and every response (status, content type, body, headers)
matches the document. The federation API is reached over real mutual TLS with a client
certificate of the test PKI. Bounded: a few examples per operation (the total is
printed at the end of the module, ``fuzz cases: N``).

The servers run on 127.0.0.1 in a thread of their own (schemathesis calls them with
``requests``, synchronously), over the fake core of the other HTTP tests.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import urllib3
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, settings
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, make_pki
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relay.config import Limits
from relay.http.federation import federation_app
from relay.http.openapi import openapi_bytes
from relay.http.public import public_app
from relay.http.staff import staff_app
from relay.staff_auth import StaffRole, issue_token
from relay.tls import BundleSource, server_context

NODE = "420106"
SPEC: dict[str, Any] = yaml.safe_load(openapi_bytes())
SERVED = (
    r"^/federation/v1/(packets|attachments/\{digest\}|descriptor)$"
    r"|^/staff/v1/(packets|packets/\{packet_id\}|attachments|attachments/\{digest\}"
    r"|outbox|inbox|alerts)$"
    r"|^/(healthz|readyz|openapi\.yaml|\.well-known/tongban/node\.json)$"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
schema = schemathesis.openapi.from_dict(SPEC).include(path_regex=SERVED)
# valid requests and requests that break the document (negative): both must get a
# documented answer, never a 5xx
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


class FuzzCore(FakeCore):
    """The fake core, answering receipts in their documented shape (compact JWS)."""

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        await super().receive_batch(peer_id, packets)
        return ["eyJ0eXAiOiJmYWtlIn0.e30.c2ln" for _ in packets]


@dataclass
class Servers:
    urls: dict[str, str]
    token: str
    pki: Pki
    cases: list[str]


def _serve_forever(pki: Pki, base: Path, ready: threading.Event, box: dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    box["loop"] = loop

    async def start() -> None:
        from aiohttp import web

        core = FuzzCore(base)
        key = Ed25519PrivateKey.generate()
        box["token"] = issue_token(
            key, node_id=NODE, subject="fuzz", roles=[StaffRole.CLERK], now=datetime.now(UTC),
            ttl=3600,
        )  # fmt: skip
        limits = Limits(request_timeout=10.0)
        apps = {
            "federation": (
                federation_app(
                    core,
                    bundle=BundleSource(pki.bundle_path),
                    clock=lambda: datetime.now(UTC),
                    limits=limits,
                    descriptor=lambda: b'{"descriptor":"x"}',
                ),
                server_context(
                    pki.a / "tls.pem", pki.a / "tls.key", pki.bundle, require_client_cert=True
                ),
            ),
            "staff": (
                staff_app(
                    core,
                    node_id=NODE,
                    token_key=key.public_key(),
                    clock=lambda: datetime.now(UTC),
                    limits=limits,
                ),
                None,
            ),
            "public": (
                public_app(
                    descriptor=lambda: b'{"descriptor":"x"}', readiness={"storage": lambda: True}
                ),
                None,
            ),
        }
        box["runners"] = []
        for name, (app, context) in apps.items():
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            box["runners"].append(runner)
            box[name] = f"{'https' if context else 'http'}://127.0.0.1:{port}"

    loop.run_until_complete(start())
    ready.set()
    loop.run_forever()
    for runner in box["runners"]:
        loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("fuzz")
    pki = make_pki(base / "pki")
    ready, box = threading.Event(), {}
    thread = threading.Thread(target=_serve_forever, args=(pki, base, ready, box), daemon=True)
    thread.start()
    assert ready.wait(60), "the fuzz servers did not start"
    found = Servers(
        urls={k: box[k] for k in ("federation", "staff", "public")},
        token=box["token"],
        pki=pki,
        cases=[],
    )
    yield found
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    thread.join(60)
    modes = Counter(c.rsplit(" ", 1)[1] for c in found.cases)
    # a 5xx fails its case above, so a passing module had none
    print(f"\nfuzz cases: {len(found.cases)} ({dict(modes)}), 5xx: 0")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_answers_every_generated_request_as_documented(
    case: schemathesis.Case, servers: Servers
) -> None:
    path = case.operation.path
    kwargs: dict[str, Any] = {"timeout": 30}
    if path.startswith("/federation/"):
        base = servers.urls["federation"]
        kwargs["cert"] = (str(servers.pki.b / "tls.pem"), str(servers.pki.b / "tls.key"))
        kwargs["verify"] = False  # the server is judged here, not its certificate
    elif path.startswith("/staff/"):
        base = servers.urls["staff"]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {servers.token}"}
    else:
        base = servers.urls["public"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        response = case.call(base_url=base, **kwargs)
    servers.cases.append(f"{case.method} {path} {response.status_code} {case.meta.generation.mode}")
    case.validate_response(response, checks=CHECKS)
