"""Case services of a running node: the desk, its HTTP routes, licence verification.

:func:`attach_cases` builds them from the node configuration around the relay core the
node runs: the case store (tables ``cases`` and ``case_packets`` in the node's SQLite
file), the agreement terms, office names and public endpoints from the verified node
descriptors (our own and the partners'), the working-day calendar (the default one with
the office's official years from ``<data_dir>/calendars/``, see :mod:`relay.calendars`;
its alerts go on the staff board), and the node's seal for tracking links. The node
serves the federation listener with :attr:`CaseServices.core` (the core that refuses a
partner's case packet the state machine does not allow and whose ``receive_batch``
applies the accepted ones) and adds the staff and public routes with
:meth:`CaseServices.add_routes`.

:class:`CaseLayer` plugs all of it into :class:`relay.node.Node` without the node
knowing about cases: its ``core_factory`` wraps the node's core factory (the core the
node gets is the case-applying one; closing it closes the case store too) and its
``extension`` adds the routes::

    cases = CaseLayer()
    node = Node(config, core_factory=cases.core_factory, extensions=[cases.extension])
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from relay.alerts import ALERTS
from relay.calendars import CalendarDir
from relay.cases.desk import UNSENT_AFTER, CaseDesk, SyncingCore
from relay.cases.errors import CaseError
from relay.cases.short_links import ShortLinks
from relay.cases.sla import ClockState, Colour
from relay.cases.sqlite_store import SqliteCaseStore
from relay.cases.terms import AgreementTerms, load_terms
from relay.config import NodeConfig
from relay.core.errors import RelayError
from relay.core.ports import PeerLink
from relay.db.open import database_errors, open_connection
from relay.http.cases import add_case_routes
from relay.http.licence_status import (
    LicenceStatus,
    add_licence_status_routes,
    renew_status_lists_hourly,
)
from relay.http.licences import LicenceVerifier, add_licence_routes
from relay.http.tracking import add_tracking_routes
from relay.metrics import METRICS, cached
from relay.node import CoreFactory, CoreHandle, relay_core_factory
from relay.tls import BundleSource
from signing.descriptor import verify_descriptor
from signing.errors import SigningError
from signing.licence_compact import Issuer, IssuerList
from signing.nodedir import load_node_keys

__all__ = ["CaseLayer", "CaseServices", "attach_cases"]

_log = logging.getLogger("tongban.relay.cases")


@dataclass
class CaseServices:
    desk: CaseDesk
    verifier: LicenceVerifier
    core: Any  # the relay core, receive_batch wrapped to apply case packets
    store: SqliteCaseStore
    licence_status: LicenceStatus | None = None
    calendars: CalendarDir | None = None
    terms: AgreementTerms | None = None  # read by the console (agreements, standards)
    started: datetime = dataclasses.field(init=False)  # this process (the desk's clock)

    def __post_init__(self) -> None:
        self.started = self.desk.now()
        if self._one_worker:  # every step on its way is this process's, holding its case
            self.desk.unsent_before = self.desk.now

    def add_routes(self, listener: str, app: web.Application) -> None:
        if listener == "staff":
            add_case_routes(app, self.desk)
            if self.calendars is not None:
                calendars, desk = self.calendars, self.desk
                app[ALERTS].add_source(
                    "calendar", lambda now: calendars.alerts(now, desk.unknown_clocks)
                )
            if METRICS in app:
                app[METRICS].add_gauges("cases", cached(self._sla_gauges, timedelta(minutes=1)))
            if self.licence_status is not None:
                add_licence_status_routes(app, self.licence_status)
                app.cleanup_ctx.append(self._renewing_status_lists)
                app[ALERTS].add_source("licences", self.licence_status.alerts)
            if not self._one_worker:
                app.cleanup_ctx.append(self._sending_unsent)
        elif listener == "public":
            add_tracking_routes(app, self.desk)
            add_licence_routes(app, self.verifier)

    def _sla_gauges(self, now: datetime) -> list[Metric]:
        """Open cases (clock not stopped) by the colour of their statutory clock."""
        family = GaugeMetricFamily(
            "tongban_cases", "Open cases by the colour of their SLA clock", labels=["colour"]
        )
        counts = dict.fromkeys(Colour, 0)
        for report in self.desk.statutory_clocks(now):
            if report.state is not ClockState.STOPPED:
                counts[report.colour] += 1
        for colour, n in counts.items():
            family.add_metric([colour.value], n)
        return [family]

    async def _renewing_status_lists(self, app: web.Application) -> AsyncIterator[None]:
        """While the staff listener runs: keep the published status lists valid."""
        assert self.licence_status is not None
        stop = asyncio.Event()
        task = asyncio.create_task(
            renew_status_lists_hourly(self.licence_status, stop), name="status-lists"
        )
        yield
        stop.set()
        await task

    async def start(self) -> None:
        """Queue the packets of steps a stop left unsent, then apply case packets that
        arrived while the case layer was not running."""
        await self._send_unsent(self.started if self._one_worker else None)
        try:
            await self.desk.sync()
        except (CaseError, RelayError) as exc:
            _log.error("case packets not applied at start: %s", exc)

    @property
    def _one_worker(self) -> bool:
        """A node on SQLite runs one worker (several are refused); on PostgreSQL several
        may share the database."""
        return isinstance(self.store.connection, sqlite3.Connection)

    async def _send_unsent(self, stored_before: datetime | None) -> None:
        """:meth:`CaseDesk.send_unsent` for the steps stored before ``stored_before``
        (None: :data:`UNSENT_AFTER` ago). A failure is logged; the next look tries again."""
        before = stored_before or self.desk.now() - UNSENT_AFTER
        try:
            await self.desk.send_unsent(before)
        except database_errors(CaseError, RelayError) as exc:
            _log.error("unsent case packets not queued: %s", exc)

    async def _sending_unsent(self, app: web.Application) -> AsyncIterator[None]:
        """While the staff listener of a node of several workers runs: every minute,
        queue the packets of steps a worker that stopped left unsent."""

        async def every_minute() -> None:
            while True:
                await asyncio.sleep(60)
                await self._send_unsent(None)

        task = asyncio.create_task(every_minute(), name="unsent-case-packets")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def close(self) -> None:
        if self.desk.short_links is not None:
            self.desk.short_links.close()
        self.store.close()


def attach_cases(
    config: NodeConfig, core: Any, bundle: BundleSource, clock: Callable[[], datetime]
) -> CaseServices:
    now = clock()
    trust = bundle.current()
    keys = load_node_keys(config.key_dir)
    names: dict[str, tuple[str, str]] = {}
    public: dict[str, str] = {}
    issuers = IssuerList()
    descriptors = [keys.descriptor_bytes]
    descriptors += [p.descriptor.read_bytes() for p in config.partners]
    for data in descriptors:
        try:
            descriptor = verify_descriptor(data, trust, at=now)
        except SigningError as exc:
            _log.warning("descriptor not used for case names: %s", exc)
            continue
        names[descriptor.node_id] = (descriptor.name_zh, descriptor.name_en)
        if "public" in descriptor.endpoints:
            issuers.add(Issuer.from_descriptor(descriptor))  # compact licences' key ids
        if "public" in descriptor.endpoints:
            public[descriptor.node_id] = descriptor.endpoints["public"]
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteCaseStore(open_connection(config, "cases"))
    terms = load_terms(config.agreements, trust, at=now)
    calendars = CalendarDir(config.data_dir / "calendars")
    calendars.current()  # read (and log any invalid file) at start
    desk = CaseDesk(
        node_id=config.node_id,
        relay=core,
        store=store,
        terms=terms,
        calendar=calendars.current,
        signer=keys.seal,
        bundle=bundle.current,
        clock=clock,
        office_names=names,
        short_links=ShortLinks(open_connection(config, "short_links")),
    )
    verifier = LicenceVerifier(
        node_id=config.node_id,
        bundle=bundle.current,
        clock=clock,
        public_endpoints=public,
        status_dir=config.data_dir / "status",
        entitled=terms.entitled,
        issuers=issuers,
    )
    status = LicenceStatus(
        node_id=config.node_id,
        desk=desk,
        store=store,
        signer=keys.seal,
        status_dir=verifier.status_dir,
        clock=clock,
    )
    return CaseServices(desk, verifier, SyncingCore(core, desk), store, status, calendars, terms)


class CaseLayer:
    """The case services of one node, for ``Node(core_factory=…, extensions=[…])``."""

    def __init__(self, inner: CoreFactory = relay_core_factory) -> None:
        self._inner = inner
        self.services: CaseServices | None = None
        self._catch_up: asyncio.Task[None] | None = None

    def core_factory(
        self,
        config: NodeConfig,
        link: PeerLink,
        bundle: BundleSource,
        clock: Callable[[], datetime],
    ) -> CoreHandle:
        handle = self._inner(config, link, bundle, clock)
        try:
            services = attach_cases(config, handle.core, bundle, clock)
        except BaseException:
            handle.close()
            raise
        self.services = services
        # packets that arrived while the case layer was not running are applied now
        self._catch_up = asyncio.get_running_loop().create_task(services.start())

        def close() -> None:
            if self._catch_up is not None:
                self._catch_up.cancel()
            services.close()
            handle.close()

        return dataclasses.replace(handle, core=services.core, close=close)

    def extension(self, listener: str, app: web.Application) -> None:
        if self.services is None:
            raise RuntimeError("the case layer's core factory has not run")
        self.services.add_routes(listener, app)
