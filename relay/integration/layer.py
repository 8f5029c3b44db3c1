"""The integration services of a running node, around its case layer.

:class:`IntegrationLayer` wraps the node's core factory (after the case layer's, so the
case store exists and no case change happens before the event sink is attached) and
adds the staff routes, the alert source, the ``tongban_webhook_deliveries{target,state}``
gauges (a grouped count at scrape time) and the background work while the staff
listener runs::

    cases = CaseLayer()
    integration = IntegrationLayer(cases)
    node = Node(config, core_factory=integration.core_factory(cases.core_factory),
                extensions=[cases.extension, integration.extension])

Background work (one task, stopped with the listener, run by the node's leader only
when it has several workers, see :mod:`relay.workers`): the webhook dispatcher; every
``scan_interval`` (30 s) the look for events nothing writes (a partner's refusal of our
packet, an SLA clock turned yellow or red); at start and every ``purge_interval`` (1 h)
the retention purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from relay.alerts import ALERTS
from relay.cases.sla import Colour
from relay.config import NodeConfig, Webhook
from relay.core.model import OutboxState
from relay.core.ports import PeerLink
from relay.db.migrations import Connection
from relay.db.open import RELAY_FILE, open_connection, sqlite_connection
from relay.http.case_services import CaseLayer, CaseServices
from relay.integration.events import refused_event, sla_event
from relay.integration.http import add_integration_routes
from relay.integration.retention import RetentionPurge
from relay.integration.store import IntegrationStore, OutboxSink, Read
from relay.integration.webhooks import WebhookDispatcher
from relay.metrics import METRICS, cached
from relay.node import CoreFactory, CoreHandle
from relay.tls import BundleSource
from relay.workers import LEADERSHIP, SoleWorker, while_leading
from signing.keys import Signer
from signing.nodedir import load_node_keys

__all__ = ["Integration", "IntegrationLayer"]

_REFUSALS_PER_READ = 500
"""Refusals the integration scan reads at a time (a backlog of them is read in pages)."""

_log = logging.getLogger("tongban.relay.integration")


@dataclass
class Integration:
    """The integration of one node: its store, sink, dispatcher and purge."""

    node_id: str
    services: CaseServices
    store: IntegrationStore
    sink: OutboxSink
    dispatcher: WebhookDispatcher
    purge: RetentionPurge
    clock: Callable[[], datetime]
    scan_interval: float = 30.0
    purge_interval: float = 3600.0

    @classmethod
    def attach(
        cls,
        *,
        node_id: str,
        data_dir: Path,
        webhooks: Sequence[Webhook],
        signer: Signer,
        services: CaseServices,
        clock: Callable[[], datetime],
        connect: Callable[[], Connection] | None = None,
        blob_dir: Path | None = None,
    ) -> Integration:
        """Create the tables, attach the event sink to the case store, build the rest.
        ``connect`` opens the node's database (default: the SQLite file in
        ``data_dir``), ``blob_dir`` is where attachment blobs live (default: in it)."""
        connect = connect or (lambda: sqlite_connection(data_dir / RELAY_FILE))
        store = IntegrationStore(connect(), node_id, webhooks)
        sink = OutboxSink(node_id, webhooks, clock, lambda: services.desk.calendar)
        services.store.add_sink(sink)
        dispatcher = WebhookDispatcher(
            store=store, targets=webhooks, signer=signer, clock=clock, poll=0.5
        )
        purge = RetentionPurge(
            node_id=node_id, cases=services.store, terms=services.desk.terms_source,
            relay_dir=data_dir, clock=clock, forget_applicant=store.forget_applicant_of,
            connect=connect, blob_dir=blob_dir,
        )  # fmt: skip
        return cls(node_id, services, store, sink, dispatcher, purge, clock)

    def scan(self) -> int:
        """Record the events found by looking; how many were new."""
        return self.scan_refusals() + self.scan_clocks()

    def scan_refusals(self) -> int:
        """Record the ``step-refused`` (or, for a dead letter, ``step-undelivered``) events
        of the refusals new to the scan (an index of
        those not yet noticed), each noticed once its event is made: never every refusal
        or event kept. Runs on the event loop, whose connection the relay store is: the
        scan reads and marks only what the node committed."""
        now = self.clock()
        new = 0
        core: Any = self.services.core
        while refusals := core.unnoticed_refusals(_REFUSALS_PER_READ):
            for item in refusals:
                s = item.summary
                event = refused_event(
                    self.node_id, packet_id=s.packet_id, case_id=s.case_id,
                    action=s.action, reason=item.reason or "", at=now,
                    undelivered=item.state is not OutboxState.REJECTED,  # a dead letter
                )  # fmt: skip
                new += self.store.record(event)
            core.notice_refusals([item.summary.packet_id for item in refusals])
        return new

    def scan_clocks(self) -> int:
        """Record the SLA events of the cases flagged now, each looked up by its mark
        (never every mark kept; the cases in progress only: one that ended had its event
        from the change that ended it, :class:`~relay.integration.store.OutboxSink`)."""
        now = self.clock()
        new = 0
        for overdue in self.services.desk.overdue(now):
            colour = overdue.clock.colour
            case_id = overdue.record.case.header.case_id
            if colour not in (Colour.YELLOW, Colour.RED):
                continue
            if self.store.sla_marked(case_id, colour.value):
                continue
            event = sla_event(self.node_id, case_id=case_id, colour=colour.value,
                              matter=overdue.record.case.header.matter, at=now)  # fmt: skip
            new += self.store.record(event, sla_mark=(case_id, colour.value))
        return new

    async def run(self, stop: asyncio.Event) -> None:
        dispatching = asyncio.create_task(self.dispatcher.run(stop), name="webhooks")
        loop = asyncio.get_running_loop()
        purged_at: float | None = None
        while not stop.is_set():
            try:
                # refusals on the loop (few, indexed); the clocks in a worker thread
                if self.scan_refusals() + await asyncio.to_thread(self.scan_clocks):
                    self.dispatcher.wake()
                if purged_at is None or loop.time() - purged_at >= self.purge_interval:
                    purged_at = loop.time()
                    await asyncio.to_thread(self.purge.run)
            except Exception:  # the loop outlives one bad pass; the cause is logged
                _log.exception("integration scan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.scan_interval)
        await dispatching

    def add_routes(self, app: web.Application, *, background: bool = True) -> None:
        """The staff routes and alert source; with ``background`` the dispatcher, scan
        and purge run while ``app`` does."""
        add_integration_routes(
            app, self.services.desk, self.store,
            lambda target: self.store.retry_parked(target, self.clock()),
        )  # fmt: skip
        app[ALERTS].add_source("webhooks", self.dispatcher.alerts)
        if METRICS in app:  # a count over every delivery kept: at most once a minute
            app[METRICS].add_gauges("webhooks", cached(self.webhook_gauges, timedelta(minutes=1)))
        if background:
            app.cleanup_ctx.append(self._running)

    def webhook_gauges(self, now: datetime) -> list[Metric]:
        """``tongban_webhook_deliveries{target,state}``, counted at scrape time."""
        family = GaugeMetricFamily(
            "tongban_webhook_deliveries",
            "Webhook deliveries per target by state (pending, delivered, parked)",
            labels=["target", "state"],
        )
        for (target, state), n in sorted(self.store.delivery_counts().items()):
            family.add_metric([target, state], n)
        return [family]

    async def _running(self, app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        leadership = app.get(LEADERSHIP) or SoleWorker()  # once per node: on the leader
        task = asyncio.create_task(
            while_leading(leadership, self.run, stop, name="integration"), name="integration"
        )
        yield
        stop.set()
        await task

    def close(self) -> None:
        self.store.close()


class IntegrationLayer:
    """The integration of one node, for ``Node(core_factory=…, extensions=[…])``."""

    def __init__(self, cases: CaseLayer) -> None:
        self._cases = cases
        self.integration: Integration | None = None

    def core_factory(self, inner: CoreFactory) -> CoreFactory:
        def factory(
            config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: Callable[[], datetime]
        ) -> CoreHandle:
            handle = inner(config, link, bundle, clock)
            services = self._cases.services
            if services is None:
                handle.close()
                raise RuntimeError("the case layer's core factory has not run")
            try:
                integration = Integration.attach(
                    node_id=config.node_id, data_dir=config.data_dir, webhooks=config.webhooks,
                    signer=load_node_keys(config.key_dir).seal, services=services, clock=clock,
                    connect=functools.partial(open_connection, config, "integration"),
                    blob_dir=config.database.blob_dir,
                )  # fmt: skip
            except BaseException:
                handle.close()
                raise
            self.integration = integration

            def close() -> None:
                handle.close()
                integration.close()

            return dataclasses.replace(handle, close=close)  # keeps every other field

        return factory

    def log_console_read(
        self, who: str, case_id: str, purpose: str, what: str = "application"
    ) -> None:
        """A person's read of a case's personal data in the console (its case page, an
        attachment: ``what``), in the personal-data access log as a read through the
        staff API is."""
        integration = self.integration
        if integration is None:
            return
        store = integration.store
        applicant = store.applicant_of(case_id)
        store.log_read(Read(integration.clock(), who, purpose, case_id, applicant, what))

    def extension(self, listener: str, app: web.Application) -> None:
        if self.integration is None:
            raise RuntimeError("the integration's core factory has not run")
        if listener == "staff":
            self.integration.add_routes(app)
