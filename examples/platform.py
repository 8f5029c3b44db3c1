"""A stand-in for an office's own platform (统一受理平台): the reference adapter.

It does what an office's platform does with its node (docs/integration.md):

- **receives webhooks** on ``POST /webhooks``: checks the ``Tongban-Signature``
  (a detached JWS) with the node's seal certificate using joserfc — a JOSE library
  tongban does not use, so it is an independent check — refuses a bad one with 401,
  and keeps each event once by its ``Tongban-Event-Id`` (a repeat is answered 200 and
  counted, never processed twice);
- **imports a case**: reads the matter's schema from the node, maps its own form onto
  it (here: the form already uses the schema's field names) and posts it to
  ``/staff/v1/integration/cases``;
- **takes the result back**: ``/staff/v1/integration/cases/{case}/result`` with a
  purpose (the read is logged at the node).

Run it as a program::

    python examples/platform.py serve --port 9300 --seal nodes/420106/seal.pem
    python examples/platform.py import --staff http://127.0.0.1:8445 --token T \\
        --matter food-business-licence --handling 320982 --form form.json

Tests use :class:`Platform` and :func:`import_case` in process. ``down`` makes the
webhook endpoint answer 503 (a platform under maintenance); ``lose_answers`` makes it
take the next events and then answer 502, as when the answer is lost on the way back
(the node sends them again and the platform must not act twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey

SIGNATURE_TYP = "tongban-webhook+jws"


def seal_key(pem: bytes) -> OKPKey | ECKey:
    """The joserfc key of the node's seal certificate (the first in ``pem``)."""
    public = x509.load_pem_x509_certificates(pem)[0].public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return OKPKey.import_key(public)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECKey.import_key(public)
    raise ValueError("the seal certificate's key is neither Ed25519 nor EC")


def _registry() -> jws.JWSRegistry:
    # the header carries the seal certificate chain (x5c): larger than joserfc's 512-byte
    # default; our own members (tongban_event) are checked below, not by the registry
    registry = jws.JWSRegistry(algorithms=["EdDSA", "ES256"], strict_check_header=False)
    registry.max_header_length = 16384
    registry.max_payload_length = 1 << 20
    return registry


def verify_signature(signature: str, body: bytes, key: OKPKey | ECKey) -> dict[str, Any]:
    """The protected header of a valid detached JWS over ``body``; raises ``JoseError``
    or ``ValueError``."""
    with warnings.catch_warnings():  # tongban signs with "EdDSA" (docs/protocol.md §2),
        # which RFC 9864 deprecates in favour of "Ed25519"; joserfc still verifies it
        warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
        compact = jws.deserialize_compact(signature, key, registry=_registry(), payload=body)
    header = dict(compact.protected)
    if header.get("typ") != SIGNATURE_TYP:
        raise ValueError(f"typ is {header.get('typ')!r}")
    return header


@dataclass
class Platform:
    """The webhook receiver (see the module note)."""

    key: OKPKey | ECKey
    down: bool = False
    lose_answers: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> body, once
    order: list[str] = field(default_factory=list)
    repeats: int = 0
    refused: int = 0
    unavailable: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        if self.down:
            self.unavailable += 1
            return web.json_response({"error": "maintenance"}, status=503)
        body = await request.read()
        event_id = request.headers.get("Tongban-Event-Id", "")
        try:
            header = verify_signature(request.headers.get("Tongban-Signature", ""), body, self.key)
            event = json.loads(body)
            if event.get("id") != event_id or header.get("tongban_event") != event_id:
                raise ValueError("the event id differs between header, signature and body")
        except (JoseError, ValueError) as exc:
            self.refused += 1
            return web.json_response({"error": f"bad signature: {exc}"}, status=401)
        async with self.arrived:
            if event_id in self.events:
                self.repeats += 1
            else:
                self.events[event_id] = event
                self.order.append(event_id)
            self.arrived.notify_all()
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return web.json_response({"error": "lost on the way"}, status=502)
        return web.json_response({"ok": True})

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        """Wait until ``predicate(self)`` holds (TimeoutError after ``timeout`` s)."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: predicate(self)), timeout)


async def import_case(
    http: aiohttp.ClientSession,
    staff: str,
    token: str,
    *,
    matter: str,
    handling: str,
    form: dict[str, Any],
) -> dict[str, Any]:
    """Import the platform's ``form`` as a case at the node; the node's answer."""
    auth = {"Authorization": f"Bearer {token}"}
    async with http.get(
        f"{staff}/staff/v1/integration/schemas/{matter}", params={"handling": handling},
        headers=auth,
    ) as resp:  # fmt: skip
        resp.raise_for_status()
        schema = await resp.json(content_type=None)
    application = {k: v for k, v in form.items() if k in schema["properties"]}
    body = {"matter": matter, "handling": handling, "application": application}
    async with http.post(f"{staff}/staff/v1/integration/cases", json=body, headers=auth) as resp:
        answer: dict[str, Any] = await resp.json(content_type=None)
        if resp.status != 201:
            raise RuntimeError(f"import refused ({resp.status}): {answer}")
        return answer


async def case_result(
    http: aiohttp.ClientSession, staff: str, token: str, case: str, purpose: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Tongban-Purpose": purpose}
    async with http.get(
        f"{staff}/staff/v1/integration/cases/{case}/result", headers=headers
    ) as resp:
        resp.raise_for_status()
        result: dict[str, Any] = await resp.json(content_type=None)
        return result


async def _serve(port: int, seal: Path) -> None:
    platform = Platform(seal_key(seal.read_bytes()))
    runner = web.AppRunner(platform.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"platform: webhooks at http://127.0.0.1:{port}/webhooks", flush=True)
    try:
        while True:
            async with platform.arrived:
                await platform.arrived.wait()
            event = platform.events[platform.order[-1]]
            print(json.dumps(event, ensure_ascii=False), flush=True)
    finally:
        await runner.cleanup()


async def _import(args: argparse.Namespace) -> None:
    form = json.loads(Path(args.form).read_text(encoding="utf-8"))
    async with aiohttp.ClientSession() as http:
        answer = await import_case(
            http, args.staff, args.token, matter=args.matter, handling=args.handling, form=form
        )
    print(json.dumps(answer, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a stand-in office platform for tongban")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="receive and verify webhooks")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--seal", type=Path, required=True, help="the node's seal.pem")
    imp = sub.add_parser("import", help="import a case from a form (JSON)")
    for name in ("staff", "token", "matter", "handling", "form"):
        imp.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            asyncio.run(_serve(args.port, args.seal))
        else:
            asyncio.run(_import(args))
    except (OSError, ValueError, RuntimeError, aiohttp.ClientError) as exc:
        print(f"platform: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
