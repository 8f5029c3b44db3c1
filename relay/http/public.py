"""The public listener: liveness, readiness, the published descriptor, the API description.

Routes::

    GET /healthz                        200 {"status": "ok"} while the process serves
    GET /readyz                         200 when every readiness check passes, else 503;
                                        with what runs out when (``expiry``: CRLs and
                                        the node's certificates, days left)
    GET /.well-known/tongban/node.json  this node's signed descriptor
    GET /openapi.yaml                   the OpenAPI description
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from relay.http.dead_ends import dead_end_middleware
from relay.http.limits import declared_size_middleware
from relay.http.openapi import openapi_handler
from relay.http.qr_decode import QR_DECODE_PATH
from relay.problem import Problem, ProblemCode, problem_middleware

__all__ = ["ReadinessChecks", "public_app"]

_MAX_BODY = 64 * 1024  # tracking, rating, complaint and licence-verify bodies are small

ReadinessChecks = Mapping[str, Callable[[], bool]]
"""Named checks, e.g. ``{"storage": ..., "outbox": ...}``; each True when ready."""


def public_app(
    *,
    descriptor: Callable[[], bytes],
    readiness: ReadinessChecks,
    detail: Callable[[], Mapping[str, object]] | None = None,
) -> web.Application:
    """``detail`` adds members to the ``/readyz`` answer (what runs out when: CRLs and
    certificates), ready or not; it never decides readiness."""
    app = web.Application(
        client_max_size=_MAX_BODY,
        middlewares=[
            dead_end_middleware,  # a person's browser gets a page, a program the problem
            problem_middleware,
            # camera stills for the verify page's QR reader have their own, larger limit
            declared_size_middleware(_MAX_BODY, lambda request: request.path == QR_DECODE_PATH),
        ],
    )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(request: web.Request) -> web.Response:
        checks = {name: bool(check()) for name, check in readiness.items()}
        extra: dict[str, object] = {}
        if detail is not None:
            try:
                extra.update(detail())
            except Exception as exc:  # unreadable files: reported, readiness unchanged
                extra["detail_error"] = f"{type(exc).__name__}: {exc}"
        if not all(checks.values()):
            failing = ", ".join(name for name, ok in checks.items() if not ok)
            raise Problem(
                503,
                ProblemCode.NOT_READY,
                f"not ready: {failing}",
                headers={"Cache-Control": "no-store"},
                extra={"checks": checks, **extra},
            )
        return web.json_response(
            {"status": "ready", "checks": checks, **extra}, headers={"Cache-Control": "no-store"}
        )

    async def node_json(request: web.Request) -> web.Response:
        return web.Response(body=descriptor(), content_type="application/json")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/.well-known/tongban/node.json", node_json)
    app.router.add_get("/openapi.yaml", openapi_handler)
    return app
