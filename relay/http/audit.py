"""HTTP routes of the audit log: the witnessing exchange and the staff endpoints.

Federation listener (mutual TLS; the requester is the client certificate's node)::

    GET  /federation/v1/audit/checkpoint                  our latest signed checkpoint
    GET  /federation/v1/audit/consistency?from=M&to=N     consistency proof
    GET  /federation/v1/audit/inclusion?index=I&size=N    inclusion proof (+ leaf if it
    GET  /federation/v1/audit/inclusion?packet=D&size=N     names the requester)
    GET  /federation/v1/audit/cosigned?origin=O           the note of O we last cosigned
    POST /federation/v1/audit/cosign                      our checkpoint, cosigned

Staff listener (bearer token)::

    POST /staff/v1/audit/checkpoint   sign a checkpoint now (clerk)
    (alerts)                          forks and split views found, on the staff
                                      alert board (GET /staff/v1/alerts)
    POST /staff/v1/audit/partners/{node}/resume
                                      witness a halted partner again (clerk)

Handlers only decode, call :class:`relay.audit.service.AuditService` and encode; audit
errors become problem documents with the codes of docs/protocol.md §7.5.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aiohttp import web

from relay.alerts import ALERTS, Severity, StaffAlert
from relay.audit.checkpoint import node_id_of_origin
from relay.audit.errors import AuditError, CheckpointError, LogStoreError
from relay.audit.service import AuditService, LeafNotFound
from relay.http.body import read_json_object
from relay.permissions import StaffAction, require
from relay.problem import Problem, ProblemCode
from relay.tls import PEER_KEY
from signing.certificates import is_node_id

__all__ = ["add_audit_federation_routes", "add_audit_staff_routes"]

_INT = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _int(request: web.Request, name: str) -> int:
    value = request.query.get(name)
    if value is None or not _INT.fullmatch(value):
        raise Problem(
            400, ProblemCode.INVALID_REQUEST, f"query parameter {name!r} must be a decimal integer"
        )
    return int(value)


def _range(exc: AuditError) -> Problem:
    return Problem(400, ProblemCode.AUDIT_RANGE, str(exc))


def _checkpoint(audit: AuditService) -> dict[str, Any]:
    try:
        return audit.answer_checkpoint()
    except LogStoreError:
        raise Problem(
            503, ProblemCode.AUDIT_UNAVAILABLE, "the node cannot sign a checkpoint now"
        ) from None


def add_audit_federation_routes(app: web.Application, audit: AuditService) -> None:
    """Add the §7.5 exchange to a federation application (behind its mTLS checks)."""

    def requester(request: web.Request) -> str:
        node = request[PEER_KEY].node_id
        if audit.is_halted(node):
            raise Problem(
                403, ProblemCode.AUDIT_HALTED, f"audit exchange with node {node} is halted"
            )
        return node

    async def get_checkpoint(request: web.Request) -> web.Response:
        requester(request)
        return web.json_response(_checkpoint(audit))

    async def get_consistency(request: web.Request) -> web.Response:
        requester(request)
        old, new = _int(request, "from"), _int(request, "to")
        try:
            return web.json_response(audit.answer_consistency(old, new))
        except LogStoreError as exc:
            raise _range(exc) from None

    async def get_inclusion(request: web.Request) -> web.Response:
        node = requester(request)
        size = _int(request, "size")
        packet = request.query.get("packet")
        try:
            if packet is not None:
                if not _HEX64.fullmatch(packet) or "index" in request.query:
                    raise Problem(
                        400,
                        ProblemCode.INVALID_REQUEST,
                        "'packet' must be a lowercase hex SHA-256, without 'index'",
                    )
                return web.json_response(audit.answer_inclusion_of_packet(packet, size, node))
            return web.json_response(audit.answer_inclusion(_int(request, "index"), size, node))
        except LeafNotFound as exc:
            raise Problem(404, ProblemCode.AUDIT_UNKNOWN_LEAF, str(exc)) from None
        except LogStoreError as exc:
            raise _range(exc) from None

    async def get_cosigned(request: web.Request) -> web.Response:
        requester(request)
        origin = request.query.get("origin", "")
        answer = audit.answer_cosigned(origin) if origin else None
        if answer is None:
            raise Problem(
                404,
                ProblemCode.AUDIT_UNKNOWN_ORIGIN,
                "no cosigned checkpoint of that origin here",
            )
        return web.json_response(answer)

    async def post_cosign(request: web.Request) -> web.Response:
        node = requester(request)
        body = await read_json_object(request)
        note = body.get("checkpoint")
        if not isinstance(note, str):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'checkpoint' must be the note text")
        try:
            audit.accept_cosignature(note.encode(), node)
        except (CheckpointError, LogStoreError) as exc:
            raise Problem(400, ProblemCode.AUDIT_COSIGNATURE, str(exc)) from None
        return web.json_response({"stored": True})

    base = "/federation/v1/audit"
    app.router.add_get(f"{base}/checkpoint", get_checkpoint)
    app.router.add_get(f"{base}/consistency", get_consistency)
    app.router.add_get(f"{base}/inclusion", get_inclusion)
    app.router.add_get(f"{base}/cosigned", get_cosigned)
    app.router.add_post(f"{base}/cosign", post_cosign)


def add_audit_staff_routes(app: web.Application, audit: AuditService) -> None:
    """Add the staff audit endpoints (behind the staff listener's bearer tokens)."""

    async def post_checkpoint(request: web.Request) -> web.Response:
        require(request, StaffAction.AUDIT)
        answer = _checkpoint(audit)
        return web.json_response(answer, status=201)

    def alerts(now: datetime) -> Iterable[StaffAlert]:
        for a in audit.state.alerts():
            yield StaffAlert(
                id=f"audit:{a.id}",
                source="audit",
                code=f"audit-{a.reason}",
                severity=Severity.CRITICAL,
                at=a.at,
                title_zh="伙伴节点的审计日志出现分叉，已停止见证",
                title_en="A partner's audit log forked; witnessing it is halted",
                detail=f"{a.detail}. Both signed checkpoints are kept as evidence; "
                "raise it with the partner office, then resume witnessing",
                subject=a.origin,
                extra={"origin": a.origin, "reason": a.reason, "peer": _node_of(a.origin),
                       "evidence": None if a.evidence is None else a.evidence.to_json()},
            )  # fmt: skip

    async def post_resume(request: web.Request) -> web.Response:
        require(request, StaffAction.AUDIT)
        node = request.match_info["node"]
        if not is_node_id(node):
            raise Problem(404, ProblemCode.NOT_FOUND, f"{node} is not a node id")
        if not audit.resume(node):
            raise Problem(409, ProblemCode.CONFLICT, f"witnessing of {node} is not halted")
        return web.json_response({"node": node, "status": "active"})

    app.router.add_post("/staff/v1/audit/checkpoint", post_checkpoint)
    app.router.add_post("/staff/v1/audit/partners/{node:[0-9]{6}}/resume", post_resume)
    app[ALERTS].add_source("audit", alerts)


def _node_of(origin: str) -> str | None:
    """The partner node an origin names (the console shows its office by name)."""
    try:
        return node_id_of_origin(origin)
    except CheckpointError:
        return None
