"""``GET /staff/v1/cases/{case}/dossier``: download a case dossier (docs/dossier.md).

The same file ``tongban dossier export`` writes, built on demand from the running
node: a checkpoint is signed and timestamp tokens caught up first. Any valid staff
token may download it, as for ``GET /staff/v1/cases/{case}`` (it holds what staff can
read already, plus proofs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from relay.dossier.export import UnknownCase, export_case
from relay.dossier.layout import MEDIA_TYPE
from relay.problem import Problem, ProblemCode

if TYPE_CHECKING:
    from relay.http.audit_node import AuditNode

__all__ = ["add_dossier_staff_route"]


def _now() -> datetime:
    return datetime.now(UTC)


def add_dossier_staff_route(
    app: web.Application, audit: AuditNode, *, clock: Callable[[], datetime] = _now
) -> None:
    async def get_dossier(request: web.Request) -> web.Response:
        case = request.match_info["case"]
        try:
            data = await export_case(
                audit.config,
                case,
                service=audit.service,
                keys=audit.partner_keys,
                stamper=audit.stamper,
                now=clock(),
            )
        except UnknownCase:
            raise Problem(404, ProblemCode.NOT_FOUND, f"this node holds no case {case}") from None
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in case)
        return web.Response(
            body=data,
            content_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{safe}.dossier.zip"'},
        )

    app.router.add_get("/staff/v1/cases/{case}/dossier", get_dossier)
