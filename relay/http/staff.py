"""The staff API: the office's own staff and systems, with bearer tokens.

Routes::

    POST /staff/v1/packets                create a case packet   (role clerk)
    HEAD /staff/v1/attachments/{digest}   Upload-Offset of a staged attachment
    PUT  /staff/v1/attachments/{digest}   stage an attachment, streamed and resumable
                                          (Content-Range; ?name=; Content-Type) (clerk)
    POST /staff/v1/attachments            stage a whole file in one request, its SHA-256
                                          in Repr-Digest (RFC 9530) (clerk)
    GET  /staff/v1/outbox[?state=&peer=]  outgoing packets, delivery state, receipts
    GET  /staff/v1/inbox[?case_id=]       accepted incoming packets and receipts
    GET  /staff/v1/packets/{id}           a packet opened: content and proofs
    GET  /staff/v1/alerts                 standing staff alerts (every source on
                                          ``app[ALERTS]``), oldest first
    GET  /openapi.yaml                    the API description (no token needed)

Every route also takes a console session cookie instead of the token when the node
gives ``signin`` (:mod:`relay.signin.web`, which adds ``/login`` and ``/console/v1/``);
what each role may do is :mod:`relay.permissions`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay.alerts import ALERTS, AlertBoard, Severity, StaffAlert
from relay.config import Limits
from relay.core.model import OutboxState
from relay.http.api import RelayApi, core_error_middleware
from relay.http.body import limit_param, read_json_object, require_str
from relay.http.encode import attachment_json, inbox_json, outbox_json, packet_json, summary_json
from relay.http.federation import DIGEST_PATTERN
from relay.http.limits import (
    UploadRange,
    body_chunks,
    declared_size_middleware,
    timeout_middleware,
    upload_range,
)
from relay.http.openapi import openapi_handler
from relay.permissions import StaffAction, permission_middleware, require
from relay.problem import Problem, ProblemCode, problem_middleware
from relay.signin.web import SignIn
from relay.staff_auth import staff_auth_middleware
from signing.certificates import is_node_id

__all__ = ["staff_app"]

_MAX_ATTACHMENTS = 100
_MAX_EXPIRES_SECONDS = 10 * 366 * 86400  # ten years: far beyond any time limit


def _is_upload(request: web.Request) -> bool:
    return request.method == "PUT" and request.path.startswith("/staff/v1/attachments/")


def _is_streamed(request: web.Request) -> bool:
    """Attachment uploads: their size limit is the attachment limit, checked per route."""
    return _is_upload(request) or (
        request.method == "POST" and request.path == "/staff/v1/attachments"
    )


def _repr_digest(request: web.Request) -> str:
    """The SHA-256 declared in ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530), as hex."""
    header = request.headers.get("Repr-Digest", "")
    for member in header.split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            try:
                raw = base64.b64decode(value[1:-1], validate=True)
            except ValueError:
                break
            if len(raw) == 32:
                return raw.hex()
    raise Problem(
        400,
        ProblemCode.INVALID_REQUEST,
        "POST /staff/v1/attachments needs Repr-Digest: sha-256=:<base64 SHA-256>:",
    )


def _packet_request(body: dict[str, Any]) -> dict[str, Any]:
    to = require_str(body, "to")
    if not is_node_id(to):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "'to' must be a 6-digit node id")
    content = body.get("content")
    if not isinstance(content, dict):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "'content' must be a JSON object")
    attachments = body.get("attachments", [])
    if (
        not isinstance(attachments, list)
        or len(attachments) > _MAX_ATTACHMENTS
        or not all(isinstance(a, str) and len(a) == 64 for a in attachments)
    ):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "'attachments' must be SHA-256 hex digests")
    expires = body.get("expires_in_seconds")
    if expires is not None and (
        isinstance(expires, bool)
        or not isinstance(expires, int)
        or not 0 < expires <= _MAX_EXPIRES_SECONDS
    ):
        raise Problem(
            400,
            ProblemCode.INVALID_REQUEST,
            f"'expires_in_seconds' must be an integer from 1 to {_MAX_EXPIRES_SECONDS}",
        )
    return {
        "to": to,
        "case_id": require_str(body, "case_id"),
        "matter": require_str(body, "matter", max_length=256),
        "action": require_str(body, "action", max_length=256),
        "mode": require_str(body, "mode", max_length=256),
        "content": content,
        "attachments": tuple(attachments),
        "expires_in": timedelta(seconds=expires) if expires is not None else None,
    }


PARTNER_UNREACHABLE_AFTER = timedelta(hours=1)
"""Consecutive delivery failures to a partner for this long raise an alert."""


def delivery_alerts(core: RelayApi, now: datetime) -> list[StaffAlert]:
    """Alerts of the outbox, each until the packet is sent again (a later packet of its
    case queued to that partner): a parked packet (dead), an expired one, a packet the
    partner rejected (:func:`rejection_alerts`; one refused because the agreement does
    not allow a profile has an alert of its own, :func:`profile_refusal_alerts`), and a
    partner unreachable for longer than :data:`PARTNER_UNREACHABLE_AFTER`."""
    alerts: list[StaffAlert] = []
    for item in core.parked_packets():  # indexed: the refusals standing now only
        s = item.summary
        if item.reason == "expired":
            alerts.append(
                StaffAlert(
                    id=f"outbox:expired:{s.packet_id}",
                    source="outbox",
                    code="packet-expired",
                    severity=Severity.CRITICAL,
                    at=now,
                    title_zh="有一份案卷超过有效期仍未送达对方，已停止发送",
                    title_en="A packet expired before it was delivered and was set aside",
                    detail=f"Packet {s.packet_id} of case {s.case_id} to node {s.receiver} "
                    "was not delivered before it expired (the partner could not be reached, "
                    "or it arrived too late). Check the partner, then resend the packet if "
                    "its step still stands",
                    subject=s.packet_id,
                    extra={"reason": item.reason, "peer": s.receiver, "case_id": s.case_id},
                )
            )
            continue
        alerts.append(
            StaffAlert(
                id=f"outbox:parked:{s.packet_id}",
                source="outbox",
                code="packet-parked",
                severity=Severity.CRITICAL,
                at=now,
                title_zh="有一份案卷无法送达对方，已暂停发送",
                title_en="A packet can never be delivered as it is and was set aside",
                detail=f"Packet {s.packet_id} of case {s.case_id} to node {s.receiver} was "
                f"refused for good ({item.reason}). Fix the cause (e.g. upload the "
                "attachment again), then resend the packet; other cases keep moving",
                subject=s.packet_id,
                extra={"reason": item.reason, "peer": s.receiver, "case_id": s.case_id},
            )
        )
    for row in core.unconfirmed_packets(now):
        alerts.append(
            StaffAlert(
                id=f"outbox:unconfirmed:{row.packet_id}",
                source="outbox",
                code="packet-unconfirmed",
                severity=Severity.CRITICAL,
                at=now,
                title_zh="有一份案卷已发出但对方始终未确认，且已超过有效期",
                title_en="A packet was sent but never confirmed, and it has expired",
                detail=f"Packet {row.packet_id} of case {row.case_id} to node {row.peer} was "
                "sent but never answered, and it expired on "
                f"{row.expires.isoformat()}. The partner may hold it, so it is sent again "
                "until the partner answers (its case waits behind it). Ask the partner's "
                "office whether it arrived, and check the partner's address and certificate",
                subject=row.packet_id,
                extra={"peer": row.peer, "case_id": row.case_id},
            )
        )
    alerts += profile_refusal_alerts(core, now)
    alerts += rejection_alerts(core, now)
    for peer, (cases, latest) in sorted(core.partners_lacking_agreements().items()):
        alerts.append(
            StaffAlert(
                id=f"outbox:agreement-unknown:{peer}",
                source="outbox",
                code="partner-lacks-agreement",
                severity=Severity.WARNING,
                at=latest,
                title_zh="对方节点尚未载入案卷所依据的协议版本，案卷正在排队重试",
                title_en="A partner has not loaded the agreement version our packets name; "
                "they wait",
                detail=f"Node {peer} refuses packets of {cases} case(s) as agreement-unknown: "
                "it does not hold the agreement version they were sent under (signed by "
                "every party). They are retried until it does. Ask the partner's office to "
                "install the signed agreement file and reload its node",
                subject=peer,
                extra={"cases": cases, "peer": peer},
            )
        )
    for peer, since in sorted(core.unreachable_partners().items()):
        if now - since < PARTNER_UNREACHABLE_AFTER:
            continue
        alerts.append(
            StaffAlert(
                id=f"outbox:unreachable:{peer}",
                source="outbox",
                code="partner-unreachable",
                severity=Severity.WARNING,
                at=since,
                title_zh="对方节点长时间无法连通，案卷正在排队重试",
                title_en="A partner node has been unreachable for a long time; packets wait",
                detail=f"Every delivery to node {peer} has failed since {since.isoformat()}. "
                "Check the network and the partner's address and certificate with its office",
                subject=peer,
                extra={"since": since.isoformat(), "peer": peer},
            )
        )
    return alerts


PROFILE_REFUSED = "agreement-denied:profile-not-allowed"
"""The receipt reason of a packet refused for a cryptographic profile (protocol.md §8.5)."""

SURVEY_REPORT_REFUSED = "content-refused:survey-"
"""The receipt reasons of a survey report the partner refused (its alert:
:func:`relay.http.survey_cases.refused_report_alerts`)."""


def rejection_alerts(core: RelayApi, now: datetime) -> list[StaffAlert]:
    """An alert per packet the partner rejected, until a later packet of its case goes
    to that partner; those with an alert of their own (a profile, a survey report) are
    left to it."""
    alerts: list[StaffAlert] = []
    for item in core.standing_rejections():  # indexed: the refusals standing now only
        s, reason = item.summary, item.reason or ""
        if reason == PROFILE_REFUSED or reason.startswith(SURVEY_REPORT_REFUSED):
            continue
        alerts.append(
            StaffAlert(
                id=f"outbox:rejected:{s.packet_id}",
                source="outbox",
                code="packet-rejected",
                severity=Severity.CRITICAL,
                at=now,
                title_zh="对方拒收了一份案卷，该案件暂不能继续发往对方",
                title_en="A partner rejected a packet; its case cannot go on to that partner",
                detail=f"Node {s.receiver} rejected packet {s.packet_id} of case {s.case_id} "
                f"({reason}). Open the case to see the refusal, agree the next step with the "
                "partner's office, then resend the packet or take the step again",
                subject=s.packet_id,
                extra={"reason": reason, "peer": s.receiver, "case_id": s.case_id},
            )
        )
    return alerts


def _listing(request: web.Request) -> tuple[int | None, bool]:
    """``limit`` (1..10000; absent: every item) and ``order`` (``asc``, the default:
    oldest first; ``desc``: newest first) of an outbox or inbox listing."""
    limit = limit_param(request, most=10_000, default=None)
    order = request.query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise Problem(400, ProblemCode.INVALID_REQUEST, "'order' must be asc or desc")
    return limit, order == "desc"


def profile_refusal_alerts(core: RelayApi, now: datetime) -> list[StaffAlert]:
    """An alert per packet a partner rejected because the agreement it names does not
    allow the cryptographic profile of one of the two nodes (``crypto_profiles``), until
    a later packet of its case to that partner is sent (resent under an agreement
    that allows both)."""
    alerts: list[StaffAlert] = []
    for item in core.standing_rejections():  # indexed: the refusals standing now only
        s = item.summary
        if item.reason != PROFILE_REFUSED:
            continue
        alerts.append(
            StaffAlert(
                id=f"outbox:profile:{s.packet_id}",
                source="outbox",
                code="profile-not-allowed",
                severity=Severity.CRITICAL,
                at=now,
                title_zh="对方按协议拒收了案卷：协议不允许该密码配置（国密/默认）",
                title_en="A partner refused a packet: the agreement does not allow a "
                "cryptographic profile",
                detail=f"Node {s.receiver} refused packet {s.packet_id} of case {s.case_id} "
                f"({item.reason}): the agreement does not allow the cryptographic profile "
                "(default or SM) of this node or of the partner. Agree with the partner "
                "on a version of the agreement that names both profiles, load it on both "
                "nodes, then resend the packet",
                subject=s.packet_id,
                extra={"reason": item.reason, "peer": s.receiver, "case_id": s.case_id},
            )
        )
    return alerts


def staff_app(
    core: RelayApi,
    *,
    node_id: str,
    token_key: Ed25519PublicKey,
    clock: Callable[[], datetime],
    limits: Limits | Callable[[], Limits],
    signin: SignIn | None = None,
) -> web.Application:
    """The staff application (serve over TLS unless bound to a trusted interface).
    With ``signin`` it also takes console sessions and serves the sign-in routes.
    ``limits`` may be a callable returning the limits in force: ``max_attachment_bytes``
    is then read on every upload (a reload changes it); body size and timeout are fixed
    when the application is built."""
    current = limits if callable(limits) else (lambda: limits)
    built = current()
    if signin is None:
        auth = staff_auth_middleware(token_key, node_id, clock)
        journal: list[Middleware] = []
    else:
        auth = staff_auth_middleware(
            token_key,
            node_id,
            clock,
            open_paths={"/openapi.yaml", *signin.open_paths},
            session_check=signin.session_check,
            on_denied=signin.on_denied,
        )
        journal = [signin.journal_middleware]
    app = web.Application(
        client_max_size=built.max_body_bytes,
        middlewares=[
            problem_middleware,
            declared_size_middleware(built.max_body_bytes, _is_streamed),
            auth,
            *journal,
            permission_middleware,
            timeout_middleware(built.request_timeout, _is_upload),
            core_error_middleware,
        ],
    )
    app[ALERTS] = AlertBoard()
    app[ALERTS].add_source("outbox", lambda now: delivery_alerts(core, now))
    if signin is not None:
        signin.add_routes(app)  # also its alert source ("signin": locked accounts)

    async def post_packet(request: web.Request) -> web.Response:
        require(request, StaffAction.RECEIVE)
        body = await read_json_object(request)
        summary = await core.create_packet(**_packet_request(body))
        return web.json_response(
            summary_json(summary),
            status=201,
            headers={"Location": f"/staff/v1/packets/{summary.packet_id}"},
        )

    async def head_attachment(request: web.Request) -> web.Response:
        offset = core.attachment_offset(request.match_info["digest"])
        return web.Response(headers={"Upload-Offset": str(offset), "Cache-Control": "no-store"})

    async def stage(request: web.Request, digest: str, target: UploadRange) -> web.Response:
        require(request, StaffAction.RECEIVE)
        chunks = body_chunks(request, target.length, built.request_timeout)
        info = await core.write_attachment(
            digest,
            target.size,
            target.offset,
            chunks,
            media_type=request.content_type or "application/octet-stream",
            name=request.query.get("name", ""),
        )
        offset = target.size if info is not None else core.attachment_offset(digest)
        body: dict[str, Any] = {"digest": digest, "offset": offset, "size": target.size}
        body["attachment"] = attachment_json(info) if info is not None else None
        return web.json_response(
            body,
            status=201 if info is not None else 200,
            headers={
                "Upload-Offset": str(offset),
                "Location": f"/staff/v1/attachments/{digest}",
            },
        )

    async def put_attachment(request: web.Request) -> web.Response:
        target = upload_range(request, max_size=current().max_attachment_bytes)
        return await stage(request, request.match_info["digest"], target)

    async def post_attachment(request: web.Request) -> web.Response:
        if request.headers.get("Content-Range") is not None:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, "POST uploads a whole file; resume with PUT"
            )
        digest = _repr_digest(request)
        return await stage(
            request, digest, upload_range(request, max_size=current().max_attachment_bytes)
        )

    async def get_outbox(request: web.Request) -> web.Response:
        state_text = request.query.get("state")
        try:
            state = OutboxState(state_text) if state_text else None
        except ValueError:
            allowed = ", ".join(s.value for s in OutboxState)
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, f"'state' must be one of {allowed}"
            ) from None
        limit, newest_first = _listing(request)
        items = core.list_outbox(
            state=state, peer=request.query.get("peer") or None,
            limit=limit, newest_first=newest_first,
        )  # fmt: skip
        return web.json_response({"items": [outbox_json(i) for i in items]})

    async def get_inbox(request: web.Request) -> web.Response:
        limit, newest_first = _listing(request)
        items = core.list_inbox(
            case_id=request.query.get("case_id") or None, limit=limit, newest_first=newest_first
        )
        return web.json_response({"items": [inbox_json(i) for i in items]})

    async def get_packet(request: web.Request) -> web.Response:
        content = core.read_packet(request.match_info["packet_id"])
        return web.json_response(packet_json(content))

    async def get_alerts(request: web.Request) -> web.Response:
        alerts = request.app[ALERTS].current(clock())
        return web.json_response({"alerts": [a.to_json() for a in alerts]})

    attachment = f"/staff/v1/attachments/{{digest:{DIGEST_PATTERN}}}"
    app.router.add_post("/staff/v1/packets", post_packet)
    app.router.add_route("HEAD", attachment, head_attachment)
    app.router.add_put(attachment, put_attachment)
    app.router.add_post("/staff/v1/attachments", post_attachment)
    app.router.add_get("/staff/v1/outbox", get_outbox)
    app.router.add_get("/staff/v1/inbox", get_inbox)
    app.router.add_get("/staff/v1/packets/{packet_id}", get_packet)
    app.router.add_get("/staff/v1/alerts", get_alerts)
    app.router.add_get("/openapi.yaml", openapi_handler)
    return app
