"""The federation API: what partner nodes call, over mutual TLS.

Routes (the peer is the node id of the validated client certificate)::

    POST /federation/v1/packets               {"packets": [JWS...]} -> {"receipts": [JWS...]}
    HEAD /federation/v1/attachments/{digest}  -> Upload-Offset: bytes held
    PUT  /federation/v1/attachments/{digest}  Content-Range upload (resumable, streamed)
    GET  /federation/v1/descriptor            this node's signed node.json
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.config import Limits
from relay.http.api import RelayApi, core_error_middleware
from relay.http.body import read_json_object
from relay.http.limits import (
    body_chunks,
    declared_size_middleware,
    peer_concurrency_middleware,
    timeout_middleware,
    upload_range,
)
from relay.problem import Problem, ProblemCode, problem_middleware
from relay.tls import PEER_KEY, BundleSource, mtls_middleware

__all__ = ["DIGEST_PATTERN", "federation_app", "partner_middleware"]

DIGEST_PATTERN = "[0-9a-f]{64}"


def partner_middleware(partners: Collection[str]) -> Middleware:
    """Refuse peers that are not partners of this node. ``partners`` is read on every
    request, so a live set the node updates (directory refresh, reload) takes effect."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request[PEER_KEY].node_id
        if peer not in partners:
            raise Problem(
                403, ProblemCode.PEER_NOT_PARTNER, f"node {peer} is not a partner of this node"
            )
        return await handler(request)

    return middleware


def reachable_middleware(core: object) -> Middleware:
    """Tell the core that the calling partner reaches us (``partner_reachable``, when the
    core has it): a partner back from an outage gets our backlog at once, not at the
    end of our backoff (docs/protocol.md §8.7)."""
    seen = getattr(core, "partner_reachable", None)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if seen is not None:
            seen(request[PEER_KEY].node_id)
        return await handler(request)

    return middleware


def _is_upload(request: web.Request) -> bool:
    return request.method == "PUT" and request.path.startswith("/federation/v1/attachments/")


def federation_app(
    core: RelayApi,
    *,
    bundle: BundleSource,
    clock: Callable[[], datetime],
    limits: Limits | Callable[[], Limits],
    descriptor: Callable[[], bytes],
    partners: Collection[str] | None = None,
    routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """The federation application. Serve it only with :func:`relay.tls.server_context`
    (``require_client_cert=True``): the peer identity comes from the TLS connection.

    With ``partners``, a validly certified node that is not one of them is refused
    (403 ``peer-not-partner``) before anything else runs. ``routes`` adds further
    federation endpoints (e.g. the audit witnessing exchange) behind the same checks and
    limits; their handlers find the caller in ``request[relay.tls.PEER_KEY]``.

    ``limits`` may be a callable returning the limits in force: ``max_batch_size`` and
    ``max_attachment_bytes`` are then read on every request (a reload changes them);
    the others are fixed when the application is built (body size, concurrency and
    timeouts shape the application and its middlewares)."""
    current = limits if callable(limits) else (lambda: limits)
    built = current()

    def batch_limits() -> dict[str, int]:
        return {"max_body_bytes": built.max_body_bytes, "max_batch_size": current().max_batch_size}

    app = web.Application(
        client_max_size=built.max_body_bytes,
        middlewares=[
            problem_middleware,
            declared_size_middleware(built.max_body_bytes, _is_upload, extra=batch_limits),
            mtls_middleware(bundle, clock),
            *([partner_middleware(partners)] if partners is not None else []),
            reachable_middleware(core),
            peer_concurrency_middleware(built.max_connections_per_peer),
            timeout_middleware(built.request_timeout, _is_upload),
            core_error_middleware,
        ],
    )

    async def post_packets(request: web.Request) -> web.Response:
        try:
            body = await read_json_object(request)
        except web.HTTPRequestEntityTooLarge as exc:
            # the sender splits its batch by these extension members (federation-http §2)
            raise Problem(
                413,
                ProblemCode.BODY_TOO_LARGE,
                f"a batch body is limited to {built.max_body_bytes} bytes",
                extra=batch_limits(),
            ) from exc
        packets = body.get("packets")
        if not isinstance(packets, list) or not all(isinstance(p, str) for p in packets):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'packets' must be an array of strings")
        if not packets:
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'packets' must not be empty")
        most = current().max_batch_size
        if len(packets) > most:
            raise Problem(
                413,
                ProblemCode.BATCH_TOO_LARGE,
                f"at most {most} packets per batch",
                extra=batch_limits(),
            )
        receipts = await core.receive_batch(request[PEER_KEY].node_id, packets)
        return web.json_response({"receipts": receipts})

    async def head_attachment(request: web.Request) -> web.Response:
        offset = core.blob_offset(request.match_info["digest"])
        return web.Response(headers={"Upload-Offset": str(offset), "Cache-Control": "no-store"})

    async def put_attachment(request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        target = upload_range(request, max_size=current().max_attachment_bytes)
        chunks = body_chunks(request, target.length, built.request_timeout)
        offset = await core.write_blob(
            request[PEER_KEY].node_id, digest, target.size, target.offset, chunks
        )
        return web.json_response(
            {"digest": digest, "offset": offset, "size": target.size},
            headers={"Upload-Offset": str(offset)},
        )

    async def get_descriptor(request: web.Request) -> web.Response:
        return web.Response(body=descriptor(), content_type="application/json")

    attachment = f"/federation/v1/attachments/{{digest:{DIGEST_PATTERN}}}"
    app.router.add_post("/federation/v1/packets", post_packets)
    app.router.add_route("HEAD", attachment, head_attachment)
    app.router.add_put(attachment, put_attachment)
    app.router.add_get("/federation/v1/descriptor", get_descriptor)
    app.router.add_routes(routes)
    return app
