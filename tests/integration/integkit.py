"""Two offices (tests/cases/casekit_offices.py) with the integration of each attached:
event outbox and sink, webhook dispatcher, retention purge, and a staff application
with the case and integration routes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from casekit import HANDLING, RECEIVING
from casekit_offices import Clock, Office, Offices, Pki, make_offices
from dbkit import Database

from relay.config import Webhook
from relay.core.pg_store import PgStore
from relay.http.case_services import CaseServices
from relay.integration.events import EventType
from relay.integration.layer import Integration

CATEGORIES = ("applicant-identity", "case-materials")
BOOKS = "publication-retail-licence"  # 20 working days, no survey
FOOD = "food-business-licence"  # 10 working days, survey required

FORM: dict[str, Any] = {  # the platform's form, in the schema's names
    "applicant-identity": {
        "name": "武昌书店有限公司",
        "id_type": "unified-social-credit-code",
        "id_number": "91420106MA4KXXXX1X",
        "phone": "027-88886666",
    },
    "case-materials": [
        {"material": "出版物零售业务经营许可申请表", "pages": 2},
        {"material": "营业执照", "digest": "ab" * 32},
    ],
}


def target(url: str, **kw: Any) -> Webhook:
    settings: dict[str, Any] = {"base_backoff": 0.02, "max_backoff": 0.2, "timeout": 5.0}
    settings.update(kw)
    return Webhook(url=url, events=frozenset(EventType), **settings)


@dataclass
class WiredOffices:
    offices: Offices
    r: Integration
    h: Integration

    @property
    def clock(self) -> Clock:
        return self.offices.clock

    def office(self, node: str) -> Office:
        return self.offices.r if node == RECEIVING else self.offices.h

    def staff(self, node: str) -> web.Application:
        """The staff application of ``node`` with the case and integration routes."""
        app = self.office(node).staff(self.clock)
        (self.r if node == RECEIVING else self.h).add_routes(app, background=False)
        return app

    async def deliver(self) -> None:
        await self.offices.deliver()

    def close(self) -> None:
        self.r.close()
        self.h.close()
        self.offices.close()


def wired_offices(
    pki: Pki,
    root: Path,
    clock: Clock,
    webhooks: dict[str, list[Webhook]] | None = None,
    database: Database | None = None,
) -> WiredOffices:
    """The two offices with the integration attached; with a PostgreSQL ``database``
    each office's relay store, cases and integration tables share one of its
    databases (else all are in the office's SQLite file)."""
    pg = database if database is not None and database.postgresql else None
    offices = make_offices(
        pki, root, clock,
        case_database=None if pg is None else pg.connect,
        relay_store=None if pg is None else (
            lambda node: PgStore(pg.url(node), blobs=root / node / "blobs", work=root / node,
                                 worker=node, clock=clock)
        ),
    )  # fmt: skip
    wired = {}
    for node, office in ((RECEIVING, offices.r), (HANDLING, offices.h)):
        services = CaseServices(office.desk, office.verifier, office.relay, office.cases)
        wired[node] = Integration.attach(
            node_id=node, data_dir=root / node, webhooks=(webhooks or {}).get(node, []),
            signer=pki.keys[node].seal, services=services, clock=clock,
            connect=None if pg is None else functools.partial(pg.connect, node),
        )  # fmt: skip
    return WiredOffices(offices, wired[RECEIVING], wired[HANDLING])


def later(clock: Clock, **kw: float) -> None:
    clock.now += timedelta(**kw)
