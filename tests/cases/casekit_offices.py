"""Two offices in one process for the case integration tests: real RelayNodes on
SQLite over the in-memory FakeNetwork, a real signed agreement, real case desks, and
their staff and public aiohttp applications served on 127.0.0.1."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from casekit import HANDLING, RECEIVING
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agreements.calendar import WorkingCalendar, default_calendar
from agreements.catalog import default_catalog
from agreements.draft import draft_from_template
from agreements.errors import CalendarError
from agreements.signatures import sign_agreement
from agreements.signed import SignedAgreement
from certs.pki import init_federation, issue_node
from relay.authorizer import load_authorizer
from relay.cases.desk import CaseDesk, SyncingCore
from relay.cases.sqlite_store import SqliteCaseStore
from relay.cases.terms import load_terms
from relay.config import Limits
from relay.core.directory import Directory
from relay.core.fakes import FakeNetwork
from relay.core.service import RelayNode
from relay.core.sqlite_store import SqliteStore, SqlStore
from relay.db.migrations import Connection
from relay.http.cases import add_case_routes
from relay.http.licences import LicenceVerifier, add_licence_routes
from relay.http.public import public_app
from relay.http.staff import staff_app
from relay.http.tracking import add_tracking_routes
from relay.staff_auth import StaffRole, issue_token
from signing.certificates import TrustBundle
from signing.nodedir import NodeKeys, load_node_keys


def plain_beijing_monday_10(now: datetime, weeks: int = 3) -> datetime:
    """The latest Monday 10:00 in Beijing (02:00 UTC) at or before `now` that starts
    `weeks` plain weeks (Monday to Friday working, weekends off) on the default calendar.

    The case tests start their injected clock there ("11 days later: 9 working days
    used" holds whatever the date); their PKI is made a day before it. Until the calendar
    covers the year of `now`, the latest Monday is taken as it is.
    """
    monday = (now - timedelta(hours=2)).date()
    monday -= timedelta(days=monday.weekday())
    calendar = default_calendar()
    for back in range(12):
        start = monday - timedelta(weeks=back)
        days = [start + timedelta(days=i) for i in range(7 * weeks)]
        try:
            if all(calendar.is_working_day(d) == (d.weekday() < 5) for d in days):
                monday = start
                break
        except CalendarError:
            break
    return datetime(monday.year, monday.month, monday.day, 2, 0, tzinfo=UTC)


START = plain_beijing_monday_10(datetime.now(UTC))  # Monday 10:00 in Beijing, from now


NAMES = {RECEIVING: ("武昌区政务服务中心", "Wuchang District Service Centre"),
         HANDLING: ("大丰区行政审批局", "Dafeng District Approval Bureau")}  # fmt: skip
MATTERS = ("publication-retail-licence", "food-business-licence")


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass(frozen=True)
class Pki:
    federation: Path
    bundle: TrustBundle
    keys: dict[str, NodeKeys]
    agreement: Path


def make_pki(
    base: Path,
    then: datetime = START - timedelta(days=1),
    categories: tuple[str, ...] = ("case-materials",),
) -> Pki:
    """The offices' PKI and agreement made at `then` (a day before START for the tests on
    the injected clock; a day before the real now for nodes on the wall clock)."""
    fed = base / "federation"
    init_federation(fed, "Cases", now=then)
    keys = {}
    for node in (RECEIVING, HANDLING):
        issue_node(fed, node, NAMES[node][0], "127.0.0.1", base / node, now=then)
        keys[node] = load_node_keys(base / node)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    agreement = write_agreement(base / "agreement.json", keys, at=then, categories=categories)
    return Pki(fed, bundle, keys, agreement)


def write_agreement(
    path: Path,
    keys: dict[str, NodeKeys],
    *,
    at: datetime,
    categories: tuple[str, ...] = ("case-materials",),
) -> Path:
    ids = sorted(keys)
    template = {
        "format": "tongban-agreement/1",
        "id": "hubei-jiangsu-cases-2026",
        "version": 1,
        "supersedes": None,
        "title": {"zh": "鄂苏跨省通办协议", "en": "Hubei-Jiangsu cross-province agreement"},
        "parties": [
            {
                "id": RECEIVING,
                "name_zh": NAMES[RECEIVING][0],
                "name_en": NAMES[RECEIVING][1],
                "province": "湖北省",
            },
            {
                "id": HANDLING,
                "name_zh": NAMES[HANDLING][0],
                "name_en": NAMES[HANDLING][1],
                "province": "江苏省",
            },
        ],
        "valid_from": (at - timedelta(days=365)).isoformat(),
        "valid_until": (at + timedelta(days=2 * 365)).isoformat(),
        "matters": [
            {
                "matter": matter,
                "modes": ["proxy_receipt"],
                "roles": {
                    "receive_for": {RECEIVING: [HANDLING]},
                    "handle": [HANDLING],
                    "survey_for": {RECEIVING: [HANDLING]},
                    "issue": [HANDLING],
                },
            }
            for matter in MATTERS
        ],
        "data_categories": list(categories),
        "retention_years": 30,
    }
    agreement = draft_from_template(json.loads(json.dumps(template)), default_catalog())
    signed = SignedAgreement(agreement)
    for node in ids:
        signed = signed.with_signature(sign_agreement(agreement, keys[node].seal, at=at))
    path.write_bytes(signed.to_bytes())
    return path


@dataclass
class Office:
    node_id: str
    relay: RelayNode
    desk: CaseDesk
    store: SqlStore
    cases: SqliteCaseStore
    verifier: LicenceVerifier
    token_key: Ed25519PrivateKey

    def staff_token(self, clock: Clock, role: StaffRole = StaffRole.CLERK) -> str:
        return issue_token(
            self.token_key, node_id=self.node_id, subject="clerk-1", roles=[role],
            now=clock(), ttl=3600,
        )  # fmt: skip

    def public(self) -> web.Application:
        app = public_app(descriptor=lambda: b"{}", readiness={})
        add_tracking_routes(app, self.desk)
        add_licence_routes(app, self.verifier)
        return app

    def staff(self, clock: Clock) -> web.Application:
        app = staff_app(
            self.relay, node_id=self.node_id, token_key=self.token_key.public_key(),
            clock=clock, limits=Limits(),
        )  # fmt: skip
        add_case_routes(app, self.desk)
        return app


@dataclass
class Offices:
    pki: Pki
    clock: Clock
    network: FakeNetwork
    r: Office  # receiving (420106)
    h: Office  # handling (320982)

    async def deliver(self) -> None:
        """Run outbox passes on both offices until nothing more moves."""
        for _ in range(20):
            moved = await self.r.relay.deliver_once() + await self.h.relay.deliver_once()
            if not moved and not self._open():
                return
        raise AssertionError("packets still in flight after 20 passes")

    def _open(self) -> bool:
        return any(
            item.state.value in ("queued", "in_flight")
            for office in (self.r, self.h)
            for item in office.relay.list_outbox()
        )

    def close(self) -> None:
        for office in (self.r, self.h):
            office.cases.close()
            office.store.close()


def make_offices(
    pki: Pki,
    root: Path,
    clock: Clock,
    public_urls: dict[str, str] | None = None,
    calendar: Callable[[], WorkingCalendar] | None = None,
    case_database: Callable[[str], Connection] | None = None,
    relay_store: Callable[[str], SqlStore] | None = None,
) -> Offices:
    """Two offices on a fake network; ``calendar`` (asked each time) defaults to the
    default calendar; ``case_database(node)`` opens the database of an office's cases
    and ``relay_store(node)`` its relay store (default: both in its SQLite file)."""
    network = FakeNetwork(rng=random.Random(3))
    directory = Directory(pki.bundle)
    directory.add_all((k.descriptor_bytes for k in pki.keys.values()), at=clock())
    offices = {}
    desk_calendar = calendar or default_calendar()
    for node in (RECEIVING, HANDLING):
        store = relay_store(node) if relay_store else SqliteStore(root / node)
        relay = RelayNode(
            node_id=node, keys=pki.keys[node], bundle=pki.bundle, directory=directory,
            authorizer=load_authorizer([pki.agreement], pki.bundle, at=clock()),
            store=store, link=network.link(node), clock=clock,
            rng=random.Random(node.__hash__() & 0xFF),
        )  # fmt: skip
        cases = SqliteCaseStore(
            case_database(node) if case_database else root / node / "relay.sqlite3"
        )
        terms = load_terms([pki.agreement], pki.bundle, at=clock())
        desk = CaseDesk(
            node_id=node, relay=relay, store=cases, terms=terms, calendar=desk_calendar,
            signer=pki.keys[node].seal, bundle=lambda: pki.bundle, clock=clock,
            office_names=NAMES, randbytes=random.Random(node.__hash__()).randbytes,
        )  # fmt: skip
        network.nodes[node] = SyncingCore(relay, desk)  # type: ignore[assignment]
        verifier = LicenceVerifier(
            node_id=node, bundle=lambda: pki.bundle, clock=clock,
            public_endpoints=public_urls or {}, status_dir=root / node / "status",
            entitled=terms.entitled,
        )  # fmt: skip
        offices[node] = Office(
            node, relay, desk, store, cases, verifier, Ed25519PrivateKey.generate()
        )
    return Offices(pki, clock, network, offices[RECEIVING], offices[HANDLING])


@asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (``port``, default ephemeral); yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    from relay.loopback import free_ports

    return free_ports(1)[0]
