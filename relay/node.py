"""One running node: three listeners, the outbox task, graceful shutdown.

:class:`Node` composes the HTTP shell around a relay core:

- federation listener — :func:`relay.http.federation.federation_app`, TLS 1.3 with
  required client certificates (:func:`relay.tls.server_context`);
- public listener — :func:`relay.http.public.public_app`, HTTPS or plain HTTP;
- staff listener — :func:`relay.http.staff.staff_app`, bearer JWT, HTTPS by default;
- the outbox task — ``core.run_outbox(stop)`` delivering through
  :class:`relay.http.link.HttpsPeerLink`.

Operations: ``GET /metrics`` on the staff listener (:mod:`relay.metrics`; the peer link
and the federation listener's view of the core are metered, gauges are read at scrape
time), the access log without query strings (:class:`relay.logs.AccessLog`), ``/readyz``
with what runs out when, and an exclusive lock on ``<data_dir>/node.lock`` while the
node runs (one node per data directory; ``tongban restore`` waits for it to stop) —
shared among the workers of one node when they share the ports (``reuse_port``,
:mod:`relay.workers`), whose once-per-node work runs on the leader only.

Every listener runs with the configured limits: ``client_max_size`` (JSON bodies),
``max_line_size``/``max_field_size`` (header size, enforced by the HTTP parser),
a per-request timeout, per-peer concurrency on the federation listener, and the same
timeout as idle keep-alive and first-request deadline, so clients that are silent or
trickle their request head do not hold connections; on TLS listeners the handshake
must also finish within that timeout (a silent TCP connection is closed).

Shutdown (:meth:`Node.stop`, on SIGTERM/SIGINT in ``tongban serve``): all listeners stop
accepting at once and TLS handshakes under way are dropped, in-flight requests finish
(up to ``shutdown_timeout``), the outbox task is told to stop and awaited, the peer link
and then the storage are closed; the stop returns once the listeners' last connections
are closed (those still open after :data:`CLOSE_WAIT` are aborted).

The core is built by a :data:`CoreFactory`; :func:`relay_core_factory` wires the real
``relay.core.service.RelayNode`` over SQLite, and tests pass a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from cryptography.x509.oid import NameOID

from relay.alerts import ALERTS
from relay.backup import DataDirLock
from relay.config import Limits, Listener, NodeConfig
from relay.core.ports import PeerLink
from relay.expiry import ExpiryWatch, read_certificates, watch_until_stopped
from relay.gcpause import gc_gauges
from relay.http.api import RelayApi
from relay.http.federation import federation_app
from relay.http.link import HttpsPeerLink
from relay.http.public import public_app
from relay.http.staff import staff_app
from relay.logs import AccessLog
from relay.metrics import (
    MeteredCore,
    MeteredLink,
    NodeMetrics,
    add_metrics_routes,
    expiry_gauges,
    helper_gauges,
    outbox_gauges,
)
from relay.signin.oidc import OidcSignIn
from relay.signin.store import StaffStore
from relay.signin.web import SignIn
from relay.staff_auth import load_or_create_token_key
from relay.tls import BundleSource, server_context
from relay.workers import (
    LEADERSHIP,
    Leadership,
    check_reuse_port,
    leader_gauges,
    leadership_for,
    while_leading,
)

if TYPE_CHECKING:
    from relay.authorizer import AgreementSwitch
    from relay.core.directory import Directory
    from relay.core.outbox import OutboxPolicy
    from relay.federation.partners import Resolution
    from relay.federation.reload import ReloadReport
    from relay.federation.service import FederationService

__all__ = [
    "CoreFactory",
    "CoreHandle",
    "CoreService",
    "Extension",
    "Node",
    "outbox_policy",
    "relay_core_factory",
    "utc_now",
]

_log = logging.getLogger("tongban.relay.node")

CLOSE_DEADLINE = 30.0
"""Seconds a listener's connection may stay closing while the node runs; checked that
often, so one closing at two checks in a row is aborted (asyncio's own deadline for a
TLS close is also 30 s, but the stuck close of :class:`_TlsSite` has none)."""

CLOSE_WAIT = 5.0
"""Seconds a stop waits, at most, for its listeners' last connections to close (a TLS
close waits for the client's close_notify; asyncio gives up on it after 30 s); those
still open then are aborted."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class CoreService(RelayApi, Protocol):
    """The core as the node runs it: the HTTP-facing methods plus the outbox loop."""

    async def run_outbox(self, stop: asyncio.Event) -> None: ...


@dataclass
class CoreHandle:
    """A built core with its storage check and its closer."""

    core: CoreService
    storage_ok: Callable[[], bool]
    close: Callable[[], None]
    directory: Directory | None = None  # partner descriptors; resolved partners are added
    agreements: AgreementSwitch | None = None  # replaced as a whole on reload
    aclose: Callable[[], Awaitable[None]] | None = None  # stops helpers (before close)


CoreFactory = Callable[[NodeConfig, PeerLink, BundleSource, Callable[[], datetime]], CoreHandle]

Extension = Callable[[str, web.Application], None]
"""``extension(listener_name, app)`` adds routes to a listener's application."""


def relay_core_factory(
    config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: Callable[[], datetime]
) -> CoreHandle:
    """Build ``relay.core.service.RelayNode`` from the configuration (the SQLite store,
    or the PostgreSQL one of ``[database] url``)."""
    import random

    from relay.audit.agreement_events import agreement_event_leaves
    from relay.audit.checkpoint import log_tree_hash
    from relay.authorizer import AgreementSwitch, load_authorizer
    from relay.core.directory import Directory
    from relay.core.service import RelayNode
    from relay.core.stores import open_relay_store
    from relay.storage_health import StorageHealth
    from signing.nodedir import load_node_keys

    keys = load_node_keys(config.key_dir)
    trust = bundle.current()
    now = clock()
    directory = Directory(trust)
    directory.add(keys.descriptor_bytes, at=now)
    for partner in config.partners:
        directory.add(partner.descriptor.read_bytes(), at=now)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lease = timedelta(seconds=config.outbox.lease)  # several workers: claims on cases
    # the audit log hashes as the seal key's profile says (SM3 for SM2), before any leaf
    store = open_relay_store(
        config.data_dir, config.database, clock=clock, lease=lease,
        tree_hash=log_tree_hash(keys.seal),
    )  # fmt: skip

    def record(loaded: AgreementSwitch | Any, trust: Any, at: datetime) -> None:
        store.audit_append_once(
            agreement_event_leaves(loaded.loaded, trust, node_id=config.node_id, at=at)
        )

    authorizer = AgreementSwitch(load_authorizer(config.agreements, trust, at=now), record)
    record(authorizer, trust, now)
    policy = outbox_policy(config)
    node = RelayNode(
        node_id=config.node_id,
        keys=keys,
        bundle=trust,
        directory=directory,
        authorizer=authorizer,
        store=store,
        link=link,
        clock=clock,
        rng=random.Random(),  # noqa: S311 - retry jitter, not a secret
        policy=policy,
        crypto_helper=config.helper.enabled,
        seal_inline_up_to=config.helper.seal_inline_up_to,
    )
    closed = False
    health = StorageHealth(lambda: store.connection, config.data_dir)
    health.check_soon()

    def storage_ok() -> bool:
        return not closed and not health.faults()

    def close() -> None:
        nonlocal closed
        closed = True
        store.close()

    return CoreHandle(
        core=node,
        storage_ok=storage_ok,
        close=close,
        directory=directory,
        agreements=authorizer,
        aclose=node.aclose,
    )


def outbox_policy(config: NodeConfig) -> OutboxPolicy:
    """The outbox policy of ``config`` (``[outbox]``; the largest packet from ``[limits]``)."""
    from relay.core.outbox import BATCH_ENVELOPE_BYTES, OutboxPolicy

    return OutboxPolicy(
        base_delay=timedelta(seconds=config.outbox.base_backoff),
        max_delay=timedelta(seconds=config.outbox.max_backoff),
        batch_size=config.outbox.batch_size,
        # a packet must fit a one-packet batch at a partner with the same limits as ours
        max_packet_bytes=config.limits.max_body_bytes - BATCH_ENVELOPE_BYTES,
    )


class Node:
    """A node's listeners and outbox task, started and stopped as one."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        core_factory: CoreFactory = relay_core_factory,
        clock: Callable[[], datetime] = utc_now,
        shutdown_timeout: float = 30.0,
        extensions: Iterable[Extension] = (),
        reuse_port: bool = False,
    ) -> None:
        """``extensions`` are called as ``extension(listener_name, app)`` for the
        ``"federation"``, ``"public"`` and ``"staff"`` applications before they start,
        to add routes (case tracking, licences, the audit witnessing exchange...). The
        routes they add sit behind that listener's middlewares: problem documents,
        limits, and mutual TLS + the partner check (federation) or the bearer token
        (staff).

        ``reuse_port``: bind the listeners with ``SO_REUSEPORT`` so that several workers
        of this node share them (PostgreSQL only; see :mod:`relay.workers`). Each
        application holds the worker's :class:`~relay.workers.Leadership` as
        ``app[LEADERSHIP]``, for the work that must happen once per node."""
        self.config = config
        self._reuse_port = reuse_port
        self.leadership: Leadership | None = None
        self._leader_task: asyncio.Task[None] | None = None
        self._extensions = (self._federation_routes, *extensions)
        self._factory = core_factory
        self._clock = clock
        self._shutdown_timeout = shutdown_timeout
        self._runners: list[web.AppRunner] = []
        self._sites: list[_TlsSite] = []
        self._outbox_stop = asyncio.Event()
        self._outbox: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._partner_ids: set[str] = {p.node_id for p in config.partners}  # live, see _routes
        self._contexts: list[ssl.SSLContext] = []  # server TLS contexts (reload: rotation)
        self._directory_task: asyncio.Task[None] | None = None
        self._hello_task: asyncio.Task[None] | None = None
        self.federation: FederationService | None = None
        self.last_reload: ReloadReport | None = None
        self._link: HttpsPeerLink | None = None
        self._handle: CoreHandle | None = None
        self._lock: DataDirLock | None = None
        self._staff_store: StaffStore | None = None
        self.urls: dict[str, str] = {}
        self.metrics = NodeMetrics(clock)

    @property
    def core(self) -> CoreService:
        if self._handle is None:
            raise RuntimeError("the node is not started")
        return self._handle.core

    def readiness(self) -> dict[str, bool]:
        handle, task = self._handle, self._outbox
        return {
            "storage": handle is not None and handle.storage_ok(),
            "outbox": task is not None and not task.done(),
        }

    async def start(self) -> None:
        """Build the core, bind the three listeners, start the outbox; on any failure
        undo what was done (listeners closed, storage closed) and raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        _log.info("node %s serving %s", self.config.node_id, self.urls)

    async def _start(self) -> None:
        config = self.config
        if self._reuse_port:
            check_reuse_port(config)  # several workers: PostgreSQL only
        # one node per data dir (workers sharing ports share it); restore waits
        self._lock = DataDirLock(config.data_dir, shared=self._reuse_port)
        self.leadership = leadership_for(config)  # once-per-node work runs on the leader
        self._leader_task = asyncio.create_task(
            self.leadership.run(self._outbox_stop), name="leadership"
        )
        self.metrics = NodeMetrics(self._clock)  # fresh figures for each start
        bundle = BundleSource(config.trust_bundle)
        cert, key = config.key_dir / "tls.pem", config.key_dir / "tls.key"
        # what the node loads now: the expiry alerts watch these, not the files, which
        # a renewal replaces before the node has loaded them (a reload, or a restart)
        self.certificates_in_use = read_certificates(config.key_dir)
        for name, certificate in self.certificates_in_use.items():  # another node's keys?
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if [str(n.value) for n in names] != [config.node_id]:
                held = ", ".join(str(n.value) for n in names) or "none"
                raise ValueError(
                    f"{config.key_dir}/{name}.pem is the certificate of node {held}, not of "
                    f"node {config.node_id} ([node] id): the key folder is another node's"
                )
        descriptor_path = config.key_dir / "node.json"
        self._link = HttpsPeerLink(
            {p.node_id: p.federation_url for p in config.partners},
            bundle=bundle,
            cert=cert,
            key=key,
            clock=self._clock,
            connections_per_peer=config.limits.max_connections_per_peer,
            request_timeout=config.limits.request_timeout,
            upload_chunk_timeout=config.limits.request_timeout,
        )
        link = MeteredLink(self._link, self.metrics)
        self._handle = self._factory(config, link, bundle, self._clock)
        core = self._handle.core
        token_key = load_or_create_token_key(config.staff.token_key).public_key()
        self.federation = self._federation_service(bundle)  # partners, directories

        def descriptor() -> bytes:
            return descriptor_path.read_bytes()

        expiry = ExpiryWatch(
            node_id=config.node_id,
            bundle=bundle.current,
            key_dir=config.key_dir,
            in_use=lambda: self.certificates_in_use,
            agreements=lambda: self.config.agreements,  # as reloaded
            directory_keys=self.federation.directory_signers,  # the province's, as held
        )
        checks = {
            "storage": lambda: self.readiness()["storage"],
            "outbox": lambda: self.readiness()["outbox"],
        }
        apps: list[tuple[str, web.Application, Listener, ssl.SSLContext | None]] = [
            (
                "federation",
                federation_app(
                    MeteredCore(core, self.metrics),
                    bundle=bundle,
                    clock=self._clock,
                    limits=self._live_limits,  # as reloaded (see relay.federation.reload)
                    descriptor=descriptor,
                    partners=self._partner_ids,
                ),
                config.federation,
                server_context(cert, key, bundle.current(), require_client_cert=True),
            ),
            (
                "public",
                public_app(
                    descriptor=descriptor,
                    readiness=checks,
                    detail=lambda: {"expiry": expiry.detail(self._clock())},
                ),
                config.public,
                server_context(cert, key, None, require_client_cert=False)
                if config.public.tls
                else None,
            ),
            (
                "staff",
                staff_app(
                    core,
                    node_id=config.node_id,
                    token_key=token_key,
                    clock=self._clock,
                    limits=self._live_limits,  # as reloaded (see relay.federation.reload)
                    signin=self._signin(),
                ),
                config.staff_listener,
                server_context(cert, key, None, require_client_cert=False)
                if config.staff_listener.tls
                else None,
            ),
        ]
        apps[2][1][ALERTS].add_source("expiry", expiry)  # the staff application
        apps[2][1][ALERTS].add_source("agreements", self._agreement_alerts)
        self._add_metrics(apps[2][1], bundle)
        for name, app, listener, context in apps:
            app[LEADERSHIP] = self.leadership
            for extension in self._extensions:
                extension(name, app)
            runner = web.AppRunner(
                app,
                handle_signals=False,
                access_log=logging.getLogger(f"tongban.relay.access.{name}"),
                access_log_class=AccessLog,  # the path only: queries carry secrets
                shutdown_timeout=self._shutdown_timeout,
                max_line_size=config.limits.max_header_bytes,
                max_field_size=config.limits.max_header_bytes,
                # also the deadline for a new connection's first request head:
                # a client that trickles its headers is closed when it fires
                keepalive_timeout=config.limits.request_timeout,
                logger=ProtocolLog(logging.getLogger(f"tongban.relay.http.{name}")),
            )
            await runner.setup()
            self._runners.append(runner)
            site = _TlsSite(
                runner,
                listener.host,
                listener.port,
                ssl_context=context,
                handshake_timeout=config.limits.request_timeout,
                reuse_port=self._reuse_port,
            )
            if context is not None:
                self._contexts.append(context)  # a reload renews its certificate
            await site.start()
            self._sites.append(site)
            scheme = "https" if context is not None else "http"
            host = f"[{listener.host}]" if ":" in listener.host else listener.host
            self.urls[name] = f"{scheme}://{host}:{listener.port}"
        self._outbox = asyncio.create_task(core.run_outbox(self._outbox_stop), name="outbox")
        self._outbox.add_done_callback(_log_outbox_end)
        leadership = self.leadership
        self._expiry = asyncio.create_task(  # its daily warnings: once per node
            while_leading(
                leadership,
                lambda stop: watch_until_stopped(expiry, self._clock, stop),
                self._outbox_stop,
                name="expiry",
            ),
            name="expiry",
        )
        self._directory_task = asyncio.create_task(
            self.federation.run(self._outbox_stop), name="directory"
        )
        self._hello_task = asyncio.create_task(self._greet_partners(), name="hello")

    def _federation_service(self, bundle: BundleSource) -> FederationService:
        """The directory service over this node's agreements and ``[[partners]]``."""
        from relay.federation.partners import PartnerRoute
        from relay.federation.service import FederationService

        config = self.config
        overrides = {
            p.node_id: PartnerRoute(
                p.node_id, p.federation_url, p.descriptor.read_bytes(), "override"
            )
            for p in config.partners
        }
        service = FederationService(
            node_id=config.node_id,
            settings=config.directory_settings,
            bundle=bundle,
            clock=self._clock,
            lifecycles=self._lifecycles,
            overrides=overrides,
            on_routes=self._routes,
        )
        service.start()
        return service

    def _federation_routes(self, listener: str, app: web.Application) -> None:
        """The directory document (public), reload and the alerts of both (staff)."""
        from relay.federation.reload import reload_extension

        assert self.federation is not None
        self.federation.extension(listener, app)
        reload_extension(self.reload)(listener, app)
        if listener == "staff":
            app[ALERTS].add_source("federation", self.federation.alerts)
            app[ALERTS].add_source("reload", self._reload_alerts)

    def _live_limits(self) -> Limits:
        return self.config.limits

    def _lifecycles(self) -> list[Any]:
        switch = self._handle.agreements if self._handle is not None else None
        return [evaluation.lifecycle for _, evaluation in switch.loaded] if switch else []

    def _routes(self, resolution: Resolution) -> None:
        """Apply a partner resolution: peer link URLs, the partner check, the limits
        partners announce (batches to them fit from the start), descriptors."""
        from signing.errors import CertificateRejected, InvalidSignature

        if self._link is not None:
            self._link.set_partners(resolution.urls())
        self._partner_ids.clear()
        self._partner_ids.update(resolution.routes)
        announce = (
            getattr(self._handle.core, "announce_partner_limits", None) if self._handle else None
        )
        if announce is not None:  # batches fit each partner's directory limits from the start
            announce(
                {
                    n: {
                        "max_batch_size": r.limits.max_batch_size,
                        "max_body_bytes": r.limits.max_body_bytes,
                    }
                    for n, r in resolution.routes.items()
                    if r.limits is not None
                }
            )
        directory = self._handle.directory if self._handle is not None else None
        if directory is None:
            return
        now = self._clock()
        for route in resolution.routes.values():
            try:
                directory.add(route.node_json, at=now)
            except (InvalidSignature, CertificateRejected) as exc:
                _log.warning("descriptor of partner %s refused: %s", route.node_id, exc)

    async def reload(self) -> ReloadReport:
        """Re-read configuration, trust bundle, agreements and directories; all or
        nothing (see :mod:`relay.federation.reload`)."""
        from relay.federation.reload import reload_node

        self.last_reload = await reload_node(self)
        return self.last_reload

    def _agreement_alerts(self, now: datetime) -> list[Any]:
        """Agreement versions partners send under that this node has not loaded."""
        from relay.authorizer import unknown_agreement_alerts

        switch = self._handle.agreements if self._handle is not None else None
        return unknown_agreement_alerts(switch.current, now) if switch is not None else []

    def _reload_alerts(self, now: datetime) -> list[Any]:
        from relay.federation.reload import reload_alerts

        return reload_alerts(self.last_reload, now)

    def _add_metrics(self, staff: web.Application, bundle: BundleSource) -> None:
        """``GET /metrics`` on the staff listener and the node's own gauge sources;
        extensions add theirs through ``app[METRICS]`` (see :mod:`relay.metrics`)."""
        add_metrics_routes(staff, self.metrics)
        depth = getattr(self.core, "outbox_depth", None)  # the relay core reports it
        if depth is not None:
            self.metrics.add_gauges("outbox", outbox_gauges(depth))
        self.metrics.add_gauges(
            "expiry",
            expiry_gauges(bundle.current, self.config.key_dir, lambda: self.certificates_in_use),
        )
        helper = getattr(self.core, "helper", None)  # the relay core's crypto helper
        if helper is not None:
            self.metrics.add_gauges("helper", helper_gauges(helper))
        if self.leadership is not None:
            self.metrics.add_gauges("leader", leader_gauges(self.leadership))
        self.metrics.add_gauges("gc", gc_gauges())  # the process's collector pauses

    def _signin(self) -> SignIn:
        """Console sign-in on the staff listener (the staff directory in the data dir)."""
        self._staff_store = StaffStore.for_node(self.config)
        signin = SignIn(self._staff_store, self.config.staff, self._clock)
        if self.config.staff.oidc is not None:
            OidcSignIn(self.config.staff.oidc, signin)
        return signin

    async def _greet_partners(self) -> None:
        """Once at start, reach every partner (:meth:`HttpsPeerLink.hello`): one that
        queued packets for us during our absence sends them now instead of at the end
        of its backoff."""
        if self._link is None:
            return
        answered = await asyncio.gather(*(self._link.hello(p) for p in self._link.partners()))
        _log.info("greeted %d of %d partners", sum(answered), len(answered))

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, stop the outbox, close storage."""
        if self._hello_task is not None:
            self._hello_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hello_task
        runners, self._runners = self._runners, []
        await asyncio.gather(*(r.cleanup() for r in runners), return_exceptions=True)
        self._outbox_stop.set()
        if self._outbox is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._outbox), self._shutdown_timeout)
            except TimeoutError:
                self._outbox.cancel()
            except Exception:  # already logged by _log_outbox_end
                _log.debug("outbox task ended with an error", exc_info=True)
        if self._expiry is not None:
            await asyncio.wait_for(self._expiry, self._shutdown_timeout)
        if self._directory_task is not None:
            await asyncio.wait_for(self._directory_task, self._shutdown_timeout)
        if self._leader_task is not None:  # ends the session: another worker may lead
            await asyncio.wait_for(self._leader_task, self._shutdown_timeout)
        if self._link is not None:
            await self._link.close()
        if self._handle is not None:
            if self._handle.aclose is not None:
                await self._handle.aclose()
            self._handle.close()
        if self._staff_store is not None:
            self._staff_store.close()
        await self._sites_closed()
        if self._lock is not None:
            self._lock.release()
        _log.info("node %s stopped", self.config.node_id)

    async def _sites_closed(self) -> None:
        """Wait (up to :data:`CLOSE_WAIT`) until no connection a listener accepted is
        open: a TLS close waits for the client's close_notify, and a stop should not
        return (nor a test close its event loop) while one is under way. A connection
        still open then is aborted, not left to the garbage collector."""
        sites, self._sites = self._sites, []
        wait = min(self._shutdown_timeout, CLOSE_WAIT)
        aborted = sum(await asyncio.gather(*(site.closed(wait) for site in sites)))
        if aborted:
            _log.warning("aborted %d connections still open %.0f s after the stop", aborted, wait)


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger of aiohttp's connection handler. It reports a request the HTTP parser
    refused (answered 400/431: bad request line, header too large, ...) with
    ``logger.exception``; that is the client's fault, answered correctly, so it is
    logged at INFO without a traceback. Everything else keeps ERROR and the traceback."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kw: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            self.info(f"{msg}: %s", *args, error.message, **kw)
            return
        self.error(msg, *args, exc_info=exc_info, **kw)  # type: ignore[arg-type]


class _TlsSite(web.TCPSite):
    """A TCP site whose TLS handshake must finish within ``handshake_timeout`` seconds:
    a client that connects and sends nothing (or stalls mid-handshake) is closed then,
    not held (asyncio's default is 60 s, aiohttp does not expose it).

    Stopping it closes the handshakes under way at once (aiohttp only knows a
    connection once its handshake is done, so would leave them to the deadline), and
    :meth:`closed` waits for the last accepted connection to be gone, aborting the ones
    still open after a grace period. While it serves, a connection still closing
    ``close_deadline`` seconds after it was first seen closing is aborted too.

    That abort is needed, not only tidy: when a client's EOF arrives while aiohttp has
    paused reading (a request body it has not consumed yet), Python's TLS transport
    marks itself as flushing without arming its shutdown timer, and aiohttp's later
    ``close()`` is then a no-op. Left alone, the socket would stay open, unreferenced,
    until the garbage collector found it (the same flaw is described for uvloop, whose
    TLS code asyncio's is, in MagicStack/uvloop#661)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        reuse_port: bool = False,
        close_deadline: float = CLOSE_DEADLINE,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port)
        self._handshake_timeout = handshake_timeout
        self._accepting: set[asyncio.Task[Any]] = set()
        self._open: set[asyncio.Transport] = set()
        self._stopping = False
        self._all_closed: asyncio.Future[None] | None = None
        self._close_deadline = close_deadline
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._accept(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
        # Python 3.11's wait_closed() returns at once when called after close(); called
        # while the server still listens, it waits for its last connection (as 3.12+
        # always does). The task must have started before any stop: hence the sleep.
        self._all_closed = asyncio.ensure_future(self._server.wait_closed())
        self._sweeper = loop.call_later(self._close_deadline, self._sweep, set())
        await asyncio.sleep(0)

    def _sweep(self, closing_before: set[asyncio.Transport]) -> None:
        """Abort the connections that were closing at the last check and still are; look
        again in ``close_deadline`` seconds. It walks the open connections only."""
        closing = {transport for transport in self._open if transport.is_closing()}
        stuck = closing & closing_before
        for transport in stuck:
            transport.abort()
        if stuck:
            deadline = self._close_deadline
            _log.warning("aborted %d connections closing for over %.0f s", len(stuck), deadline)
        self._sweeper = asyncio.get_running_loop().call_later(
            self._close_deadline, self._sweep, closing - stuck
        )

    def _accept(self, server: web.Server) -> asyncio.BaseProtocol:
        """The protocol for a new connection. asyncio calls this from the task that
        then awaits the TLS handshake: that task is kept until it ends, so that a stop
        can cancel it (asyncio then aborts the half-open connection)."""
        handler = server()
        task = asyncio.current_task()
        if task is not None:
            if self._stopping:
                task.cancel()  # accepted just before the stop: not served
            else:
                self._accepting.add(task)
                task.add_done_callback(self._accepting.discard)
        return _Tracked(handler, self._open)

    async def stop(self) -> None:
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        # asyncio accepts a connection in one turn and makes its transport in the next,
        # in a task that fails (silently, leaving the socket open and unreferenced) when
        # the server was closed in between. So: accept no more, let the tasks of the
        # connections already accepted run (they see the stop and cancel themselves),
        # and only then close the server.
        if isinstance(self._server, asyncio.Server):
            loop = asyncio.get_running_loop()
            for listener in self._server.sockets:
                loop.remove_reader(listener.fileno())
            await asyncio.sleep(0)
        await super().stop()
        for task in list(self._accepting):
            task.cancel()

    async def closed(self, grace: float) -> int:
        """Return once the site is stopped and every connection it accepted is closed.
        Connections still open ``grace`` seconds after the call (a client that never
        answers our TLS close, or the stuck close of the class docstring) are aborted;
        the number aborted is returned."""
        if self._all_closed is None:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.shield(self._all_closed)
                return 0
        stuck = list(self._open)
        for transport in stuck:
            transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):  # an abort closes within a loop turn or two
                await asyncio.shield(self._all_closed)
        return len(stuck)


class _Tracked(asyncio.Protocol):
    """aiohttp's handler of one connection, with the connection's transport kept in
    ``open`` from its start (after the TLS handshake) to its end, so that the site can
    abort it (at a stop, or when its close is stuck). Every other event goes straight
    to the handler."""

    def __init__(self, handler: asyncio.Protocol, open_transports: set[asyncio.Transport]):
        self._handler = handler
        self._open = open_transports
        self._transport: asyncio.Transport | None = None
        self.data_received = handler.data_received  # type: ignore[method-assign]
        self.eof_received = handler.eof_received  # type: ignore[method-assign]
        self.pause_writing = handler.pause_writing  # type: ignore[method-assign]
        self.resume_writing = handler.resume_writing  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream's, as aiohttp's
        self._open.add(self._transport)
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._open.discard(self._transport)
        self._handler.connection_lost(exc)


def _log_outbox_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the outbox task stopped", exc_info=task.exception())
