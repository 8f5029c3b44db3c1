"""The audit log wired into a running node: routes, the checkpoint and witness tasks.

:class:`AuditNode` is built from the node configuration and handed to
:class:`relay.node.Node` as an extension (``Node(config, extensions=[audit.extension])``):

- on the federation listener it adds the §7.5 exchange
  (:func:`relay.http.audit.add_audit_federation_routes`) behind the listener's mutual
  TLS, partner and limit checks, and runs two tasks while that listener is up: signing
  a checkpoint every ``[audit] checkpoint_interval`` when the log grew, and a witness
  round every ``[audit] witness_interval`` (:meth:`AuditService.witness_round` over
  :class:`~relay.http.audit_client.AuditClient` per partner) — both once per node: only
  while this worker leads (``app[LEADERSHIP]``, :mod:`relay.workers`);
- on the staff listener it adds ``POST /staff/v1/audit/checkpoint`` and
  ``GET /staff/v1/alerts``;
- on the staff listener also ``GET /staff/v1/cases/{case}/dossier``
  (:mod:`relay.http.dossier`);
- with a ``[timestamps]`` table it stamps each new checkpoint at an RFC 3161 TSA right
  after signing it (:class:`relay.timestamps.stamper.Stamper`, catching up what the TSA
  missed) and adds the ``timestamps`` staff alert source.

Partners' seal keys come from their signed descriptors (the configured files), verified
and path-validated against the trust bundle at each use (:class:`DescriptorKeys`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric

from relay.alerts import ALERTS
from relay.audit.errors import AuditError, CheckpointError
from relay.audit.service import AuditPeer, AuditService, RoundResult
from relay.audit.state import open_state
from relay.config import NodeConfig
from relay.db.open import open_connection
from relay.http.audit import add_audit_federation_routes, add_audit_staff_routes
from relay.http.audit_client import AuditClient
from relay.http.dossier import add_dossier_staff_route
from relay.metrics import METRICS
from relay.timestamps.stamper import HttpTsa, Stamper
from relay.timestamps.store import TimestampStore
from relay.timestamps.tokens import TimestampError, TsaTrust
from relay.tls import BundleSource, client_context
from relay.workers import LEADERSHIP, SoleWorker, while_leading
from signing.certificates import Purpose, validate_path
from signing.descriptor import verify_descriptor
from signing.errors import SigningError
from signing.nodedir import load_node_keys

__all__ = ["AuditNode", "DescriptorKeys"]

_log = logging.getLogger("tongban.relay.audit")


def _now() -> datetime:
    return datetime.now(UTC)


class DescriptorKeys:
    """Seal chains of this node and its partners, validated when asked."""

    def __init__(
        self,
        config: NodeConfig,
        bundle: BundleSource,
        clock: Callable[[], datetime],
        own_chain: tuple[x509.Certificate, ...],
    ) -> None:
        self._config = config
        self._bundle = bundle
        self._clock = clock
        self._own = own_chain

    def seal_chain(self, node_id: str) -> tuple[x509.Certificate, ...]:
        try:
            trust, now = self._bundle.current(), self._clock()
            if node_id == self._config.node_id:
                chain = self._own
            else:
                partner = self._config.partner(node_id)
                if partner is None:
                    raise CheckpointError(f"node {node_id} is not a partner of this node")
                descriptor = verify_descriptor(partner.descriptor.read_bytes(), trust, at=now)
                if descriptor.node_id != node_id:
                    raise CheckpointError(f"the descriptor of {node_id} names another node")
                chain = descriptor.seal_chain
            validate_path(chain, trust, purpose=Purpose.SEAL, at=now, node_id=node_id)
        except (OSError, SigningError) as exc:
            raise CheckpointError(f"no valid seal key for node {node_id}: {exc}") from exc
        return chain


class AuditNode:
    """The audit service of one node and its background tasks."""

    def __init__(self, config: NodeConfig, *, clock: Callable[[], datetime] = _now) -> None:
        self.config = config
        self._clock = clock
        self._service: AuditService | None = None
        self._peers: dict[str, AuditClient] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stamper: Stamper | None = None
        self._stamps: TimestampStore | None = None
        self._partner_keys: DescriptorKeys | None = None

    @property
    def partner_keys(self) -> DescriptorKeys:
        """Seal chains of this node and its partners (opens the service if needed)."""
        _ = self.service
        assert self._partner_keys is not None
        return self._partner_keys

    @property
    def stamper(self) -> Stamper | None:
        """The checkpoint stamper, when ``[timestamps]`` is configured."""
        settings = self.config.timestamps
        if settings is None:
            return None
        if self._stamper is None:
            try:
                trust = TsaTrust.from_pem(settings.trust.read_bytes())
            except OSError as exc:
                raise TimestampError(f"cannot read [timestamps] trust: {exc}") from exc
            self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._stamps = TimestampStore(open_connection(self.config, "timestamps"))
            self._stamper = Stamper(
                self._stamps,
                HttpTsa(settings.url, timeout=settings.timeout),
                trust,
                alert_after=settings.alert_after,
                clock=self._clock,
            )
        return self._stamper

    @property
    def service(self) -> AuditService:
        """The service, opening the node's database on first use."""
        if self._service is None:
            config = self.config
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            keys = load_node_keys(config.key_dir)
            bundle = BundleSource(config.trust_bundle)
            state = open_state(config.data_dir, config.database)  # shared by the workers
            self._partner_keys = DescriptorKeys(config, bundle, self._clock, keys.seal.chain)
            self._service = AuditService(
                node_id=config.node_id,
                state=state,
                seal=keys.seal,
                keys=self._partner_keys,
                clock=self._clock,
            )
            context = client_context(
                bundle.current(), config.key_dir / "tls.pem", config.key_dir / "tls.key"
            )
            self._peers = {
                p.node_id: AuditClient(
                    p.node_id,
                    p.federation_url,
                    bundle=bundle,
                    ssl_context=context,
                    clock=self._clock,
                    timeout=config.limits.request_timeout,
                )
                for p in config.partners
            }
        return self._service

    @property
    def peers(self) -> dict[str, AuditPeer]:
        _ = self.service
        return dict(self._peers)

    def extension(self, listener: str, app: web.Application) -> None:
        """``Node`` extension: add routes (and, on federation, the tasks)."""
        if listener == "federation":
            add_audit_federation_routes(app, self.service)
            app.on_startup.append(self._on_startup)
            app.on_cleanup.append(self._on_cleanup)
        elif listener == "staff":
            add_audit_staff_routes(app, self.service)
            if METRICS in app:
                app[METRICS].add_gauges("audit", self._gauges)
            add_dossier_staff_route(app, self)
            stamper = self.stamper
            if stamper is not None:
                app[ALERTS].add_source("timestamps", stamper.alerts)

    def _gauges(self, now: datetime) -> list[Metric]:
        state = self.service.state
        out: list[Metric] = [
            GaugeMetricFamily(
                "tongban_audit_log_leaves", "Leaves in the audit log", value=state.log.size()
            )
        ]
        last = state.last_cosignature_at()
        if last is not None:
            out.append(
                GaugeMetricFamily(
                    "tongban_audit_last_cosignature_age_seconds",
                    "Seconds since a partner last cosigned a checkpoint of this node",
                    value=max((now - last).total_seconds(), 0.0),
                )
            )
        return out

    async def witness_round(self) -> list[RoundResult]:
        """Witness every partner now (also what the witness task runs)."""
        return await self.service.witness_round(self.peers)

    def checkpoint(self) -> bytes:
        return self.service.checkpoint()

    async def _on_startup(self, app: web.Application) -> None:
        self._stop.clear()
        leadership = app.get(LEADERSHIP) or SoleWorker()  # once per node: on the leader

        def periodic(interval: float, step: Callable[[], object], name: str) -> asyncio.Task[None]:
            def work(stop: asyncio.Event) -> Awaitable[None]:
                return self._every(interval, step, stop)

            return asyncio.create_task(
                while_leading(leadership, work, self._stop, name=name), name=name
            )

        audit = self.config.audit
        self._tasks = [
            periodic(audit.checkpoint_interval, self._checkpoint_step, "audit-checkpoints"),
            periodic(audit.witness_interval, self._witness_step, "audit-witness"),
        ]

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.close()

    async def _checkpoint_step(self) -> None:
        self.service.checkpoint()
        if self.stamper is not None:
            await self.stamper.catch_up()
        # keep the packet index current in small steps, so that requests that need it
        # (inclusion by packet digest) find little or nothing left to do
        while not self.service.state.index_packets(limit=5000):
            await asyncio.sleep(0)

    async def _witness_step(self) -> None:
        for result in await self.witness_round():
            _log.info("audit: %s %s %s", result.partner, result.outcome.value, result.detail)

    async def _every(
        self, interval: float, step: Callable[[], object], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except (AuditError, sqlite3.Error) as exc:
                _log.error("audit task step failed: %s", exc)
            except Exception:  # one bad step (a TSA's answer, a database error) ends no task
                _log.exception("audit task step failed")

    async def close(self) -> None:
        """Stop the tasks, close the partner clients and the database connection."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self._peers.values():
            await peer.close()
        self._peers = {}
        if self._stamps is not None:
            self._stamps.close()
            self._stamps, self._stamper = None, None
        if self._service is not None:
            self._service.state.close()
            self._service = None
