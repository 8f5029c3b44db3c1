"""Prometheus metrics of one node, served as ``GET /metrics`` on the staff listener.

Each node has its own :class:`prometheus_client.CollectorRegistry` (never the global
one), so several nodes in one process (tests, the demo) keep their figures apart.

Two kinds of figures:

- **counters and the latency histogram** are incremented where a result is already
  known, at the node's edges, never by a query: the receipts a partner gets from
  ``receive_batch`` (:class:`MeteredCore`), the receipts and failures the outbox gets
  from the peer link, and the attachment bytes that cross it (:class:`MeteredLink`).
  Receipts are this node's own or already verified by the core; the wrappers only read
  their payloads (status, reason, the packet's ``created`` time).
- **gauges** are computed when Prometheus scrapes, by *gauge sources* registered like
  the staff alerts' sources: ``app[METRICS].add_gauges(name, fn)``, ``fn(now)`` returns
  metric families. Each source reads what its part already keeps, from an index (the
  outbox depth is a grouped count over ``outbox_open``), or caches a costlier figure
  (the SLA colours, recomputed at most once a minute). A failing source is counted in
  ``tongban_metrics_source_errors_total`` and logged; it never hides the others.

Times are in seconds, the Prometheus base unit (``promtool`` refuses a ``_days``
metric): the days left of a CRL or certificate are ``remaining_seconds / 86400``,
negative once past. Metric names and labels (``partner`` is a node id; ``reason`` a
receipt's reason code, ``none`` for accepted packets, or for a delivery failure the
partner's problem code, ``http-<status>`` or ``unavailable``)::

    tongban_packets_received_total{partner,status,reason}   receipts we gave
    tongban_packets_sent_total{partner,status,reason}       receipts we got
    tongban_delivery_failures_total{partner,reason}          batches with no receipts
    tongban_delivery_latency_seconds{partner}                created → accepted receipt
    tongban_attachment_bytes_total{direction,partner}        sealed blob bytes moved
    tongban_outbox_packets{partner}                          queued or in flight
    tongban_outbox_oldest_age_seconds{partner}               age of the oldest of them
    tongban_cases{colour}                                    SLA clock colour of cases
    tongban_survey_sessions{state}                           surveys held, by state
    tongban_crl_remaining_seconds{issuer}                    to the CRL's nextUpdate
    tongban_certificate_remaining_seconds{certificate}       to notAfter (tls, seal)
    tongban_audit_log_leaves                                 size of the audit log
    tongban_audit_last_cosignature_age_seconds               since a partner last cosigned
    tongban_webhook_deliveries{target,state}                 webhook deliveries (pending,
                                                             delivered, parked) per target
    tongban_crypto_helper_running                            1 while the helper process runs
    tongban_crypto_helper_starts_total                       helper processes started
    tongban_crypto_helper_requests_total{kind,outcome}       examine/seal requests: done by
                                                             the helper, or by the node
                                                             itself (``fallback``)
    tongban_crypto_helper_presigned_total{outcome}           new packets the helper signed
                                                             ahead: ``kept``, or
                                                             ``signed_again`` by the node
    tongban_gc_pause_seconds{generation}                     the process's collector
                                                             pauses (relay.gcpause)
    tongban_gc_frozen_objects                                objects frozen once started

``/metrics`` needs a staff bearer token of any role (a ``reader`` token for the
scraper, ``tongban staff token --role reader``): the figures name partners and volumes,
which are the office's business, and the staff listener already checks tokens.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from relay.core.errors import PeerRefused
from relay.core.ports import OpenAt, PeerLink
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode

__all__ = [
    "METRICS",
    "BucketCounts",
    "GaugeSource",
    "MeteredCore",
    "MeteredLink",
    "NodeMetrics",
    "add_metrics_routes",
    "cached",
    "expiry_gauges",
    "gauge",
    "helper_gauges",
    "metrics_handler",
    "outbox_gauges",
    "survey_gauges",
]

_log = logging.getLogger("tongban.relay.metrics")

GaugeSource = Callable[[datetime], Iterable[Metric]]
"""``fn(now)`` → metric families standing at ``now`` (computed at scrape time)."""

LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)


def _payload(token: str) -> Mapping[str, Any]:
    """The unverified payload of a compact JWS this node made or already verified."""
    try:
        obj = json.loads(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError, TypeError):
        return {}
    return obj if isinstance(obj, dict) else {}


_CREATED = b'"created":'
_HEAD_CHARS = 512
"""base64url characters of a packet's payload decoded first to find ``created``: its
canonical JSON sorts the keys, so ``created`` comes after ``action``, ``agreement``,
``attachments`` and ``case`` — within 384 bytes unless the packet lists attachments —
and never after the sealed content that makes up most of the payload."""


def _created(packet: str) -> int | None:
    """The ``created`` member (whole seconds since the epoch) of a packet this node
    made, read from the head of its payload when it is there (a few microseconds
    instead of decoding the whole sealed content), else from the whole payload."""
    _, _, rest = packet.partition(".")
    payload = rest.partition(".")[0]
    head = payload[: _HEAD_CHARS - _HEAD_CHARS % 4] if len(payload) > _HEAD_CHARS else ""
    if head:
        try:
            text = b64url_decode(head)
        except (ValueError, TypeError):
            text = b""
        at = text.find(_CREATED)
        # canonical JSON: no spaces; a quote inside a string is escaped, so the member
        # name can only be the member; the number ends at the comma before "expires"
        end = text.find(b",", at) if at >= 0 else -1
        if end > at >= 0:
            digits = text[at + len(_CREATED) : end]
            if digits.isdigit():
                return int(digits)
    created = _payload(packet).get("created")
    return created if isinstance(created, int) else None


def _outcome(receipt: str) -> tuple[str, str]:
    """(status, reason) of a receipt, the labels it is counted under."""
    facts = _payload(receipt)
    return str(facts.get("status", "unknown")), str(facts.get("reason") or "none")


class NodeMetrics:
    """The registry of one node, its counters, and its gauge sources."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "tongban_packets_received",
            "Packets partners sent us, by the receipt we gave",
            ["partner", "status", "reason"],
            registry=r,
        )
        self.sent = Counter(
            "tongban_packets_sent",
            "Packets we sent, by the receipt the partner gave",
            ["partner", "status", "reason"],
            registry=r,
        )
        self.failures = Counter(
            "tongban_delivery_failures",
            "Batches a partner did not answer with receipts, by the problem code of its "
            "refusal (unavailable: unreachable or no usable answer)",
            ["partner", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "tongban_delivery_latency_seconds",
            "From a packet's creation to its accepted receipt",
            ["partner"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attachment_bytes = Counter(
            "tongban_attachment_bytes",
            "Sealed attachment bytes moved between nodes",
            ["direction", "partner"],
            registry=r,
        )
        self._sources: list[tuple[str, GaugeSource]] = []
        r.register(_Sources(self))  # before the error counter: a scrape shows its own errors
        self.source_errors = Counter(
            "tongban_metrics_source_errors",
            "Gauge sources that failed during a scrape",
            ["source"],
            registry=r,
        )

    def add_gauges(self, name: str, source: GaugeSource) -> None:
        if any(n == name for n, _ in self._sources):
            raise ValueError(f"a gauge source named {name!r} is registered already")
        self._sources.append((name, source))

    def gauges(self) -> list[Metric]:
        now = self._clock()
        out: list[Metric] = []
        for name, source in self._sources:
            try:
                out.extend(source(now))
            except Exception:  # a broken source must not hide the other figures
                _log.exception("metrics source %s failed", name)
                self.source_errors.labels(name).inc()
        return out

    # -- counting at the edges ---------------------------------------------------------

    def count_receipts(self, counter: Counter, partner: str, receipts: Sequence[str]) -> None:
        self._count(counter, partner, [_outcome(r) for r in receipts])

    @staticmethod
    def _count(counter: Counter, partner: str, outcomes: Sequence[tuple[str, str]]) -> None:
        """One increment per (status, reason) of a batch, not one per packet."""
        for (status, reason), n in collections.Counter(outcomes).items():
            counter.labels(partner, status, reason).inc(n)

    def observe_delivered(
        self, partner: str, packets: Sequence[str], receipts: Sequence[str], at: datetime
    ) -> None:
        outcomes = [_outcome(r) for r in receipts]  # each receipt decoded once
        self._count(self.sent, partner, outcomes)
        latency = self.latency.labels(partner)
        for packet, (status, _) in zip(packets, outcomes, strict=False):
            if status != "accepted":
                continue
            created = _created(packet)  # whole seconds since the epoch
            if created is None:
                continue
            started = datetime.fromtimestamp(created, UTC)
            latency.observe(max((at - started).total_seconds(), 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Sources(Collector):
    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.gauges()

    def describe(self) -> Iterable[Metric]:
        return ()  # the families are only known at scrape time


class MeteredLink:
    """A :class:`PeerLink` that counts what crosses it (delivery outcomes, latency,
    attachment bytes); it adds no semantics of its own."""

    def __init__(self, inner: PeerLink, metrics: NodeMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        try:
            receipts = await self._inner.deliver(peer, packets)
        except PeerRefused as exc:
            reason = exc.code or f"http-{exc.status}"
            self._metrics.failures.labels(peer, reason).inc()
            raise
        except Exception:
            self._metrics.failures.labels(peer, "unavailable").inc()
            raise
        self._metrics.observe_delivered(peer, packets, receipts, self._metrics._clock())
        return receipts

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        sent = 0

        async def counted(offset: int) -> Any:
            nonlocal sent
            async for chunk in open_at(offset):
                sent += len(chunk)
                yield chunk

        try:
            await self._inner.upload_attachment(peer, digest, size, counted)
        finally:
            self._metrics.attachment_bytes.labels("out", peer).inc(sent)


class MeteredCore:
    """The core as the federation listener sees it, counting receipts given and blob
    bytes received; every other attribute is the core's own."""

    def __init__(self, core: Any, metrics: NodeMetrics) -> None:
        self._core = core
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        receipts: list[str] = await self._core.receive_batch(peer_id, packets)
        self._metrics.count_receipts(self._metrics.received, peer_id, receipts)
        return receipts

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: Any
    ) -> int:
        moved = 0

        async def counted() -> Any:
            nonlocal moved
            async for chunk in chunks:
                moved += len(chunk)
                yield chunk

        try:
            result: int = await self._core.write_blob(peer_id, digest, size, offset, counted())
        finally:
            self._metrics.attachment_bytes.labels("in", peer_id).inc(moved)
        return result


# -- gauge sources -------------------------------------------------------------------


def outbox_gauges(depth: Callable[[], Mapping[str, tuple[int, datetime]]]) -> GaugeSource:
    """``depth()`` → partner → (open packets, creation of the oldest open one)."""

    def source(now: datetime) -> list[Metric]:
        count = GaugeMetricFamily(
            "tongban_outbox_packets", "Packets queued or in flight", labels=["partner"]
        )
        age = GaugeMetricFamily(
            "tongban_outbox_oldest_age_seconds",
            "Age of the oldest packet queued or in flight",
            labels=["partner"],
        )
        for partner, (n, oldest) in sorted(depth().items()):
            count.add_metric([partner], n)
            age.add_metric([partner], max((now - oldest).total_seconds(), 0.0))
        return [count, age]

    return source


def expiry_gauges(
    bundle: Callable[[], TrustBundle],
    key_dir: Path,
    in_use: Callable[[], Mapping[str, x509.Certificate]] | None = None,
) -> GaugeSource:
    """Seconds left to each CRL's nextUpdate and to the node's certificates' notAfter
    (negative once past), read anew on every scrape like :class:`relay.expiry.ExpiryWatch`:
    the certificates the node uses (``in_use``), else those in ``key_dir``."""

    def source(now: datetime) -> list[Metric]:
        crl = GaugeMetricFamily(
            "tongban_crl_remaining_seconds",
            "Seconds until the CRL's nextUpdate (negative: stale)",
            labels=["issuer"],
        )
        for item in bundle().crls:
            if item.next_update_utc is not None:
                left = (item.next_update_utc - now).total_seconds()
                crl.add_metric([item.issuer.rfc4514_string()], left)
        cert = GaugeMetricFamily(
            "tongban_certificate_remaining_seconds",
            "Seconds until this node's certificate expires (negative: expired)",
            labels=["certificate"],
        )
        used = in_use() if in_use is not None else {}
        for name in ("tls", "seal"):
            loaded = used.get(name) or x509.load_pem_x509_certificate(
                (key_dir / f"{name}.pem").read_bytes()
            )
            cert.add_metric([name], (loaded.not_valid_after_utc - now).total_seconds())
        return [crl, cert]

    return source


def helper_gauges(helper: Any) -> GaugeSource:
    """The crypto helper's state (:class:`relay.core.helper.CryptoHelper`): whether it
    runs, how often it was started, and what it did or left to the node. A node whose
    requests go ``fallback`` works, only slower: the helper cannot start or keeps
    ending (its log says why)."""

    def source(now: datetime) -> list[Metric]:
        running = GaugeMetricFamily(
            "tongban_crypto_helper_running",
            "1 while the crypto helper process runs",
            value=1.0 if helper.running else 0.0,
        )
        starts = CounterMetricFamily(
            "tongban_crypto_helper_starts", "Crypto helper processes started", value=helper.starts
        )
        requests = CounterMetricFamily(
            "tongban_crypto_helper_requests",
            "Examine and seal requests, done by the helper or by the node itself (fallback)",
            labels=["kind", "outcome"],
        )
        for kind in sorted(helper.answered):
            requests.add_metric([kind, "helper"], helper.answered[kind])
            requests.add_metric([kind, "fallback"], helper.fallbacks[kind])
        presigned = CounterMetricFamily(
            "tongban_crypto_helper_presigned",
            "New packets the helper signed ahead of their commit: kept, or signed again",
            labels=["outcome"],
        )
        for outcome in sorted(helper.presigned):
            presigned.add_metric([outcome], helper.presigned[outcome])
        return [running, starts, requests, presigned]

    return source


class BucketCounts:
    """Observations counted in fixed buckets, with their sum: one series of a histogram
    that a gauge source builds at scrape time (``HistogramMetricFamily.add_metric``).
    Recorded from any thread (a garbage collection, the event loop) while a scrape
    reads."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def record(self, value: float) -> None:
        bucket = next((i for i, b in enumerate(self._bounds) if value <= b), len(self._bounds))
        with self._lock:
            self._counts[bucket] += 1
            self._sum += value

    def series(self) -> tuple[list[tuple[str, float]], float]:
        """The cumulative ``(le, count)`` buckets, ``+Inf`` last, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip(self._bounds, counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), float(cumulative)))
        buckets.append(("+Inf", float(cumulative + counts[-1])))
        return buckets, total


def gauge(name: str, doc: str, value: Callable[[datetime], float | None]) -> GaugeSource:
    """A source of one unlabelled gauge (absent while ``value`` is None)."""

    def source(now: datetime) -> list[Metric]:
        figure = value(now)
        return [] if figure is None else [GaugeMetricFamily(name, doc, value=figure)]

    return source


def cached(source: GaugeSource, every: timedelta) -> GaugeSource:
    """``source`` recomputed at most once per ``every`` (for figures that read a table)."""
    last: list[tuple[datetime, list[Metric]]] = []

    def wrapped(now: datetime) -> list[Metric]:
        if not last or now - last[0][0] >= every or now < last[0][0]:
            last[:] = [(now, list(source(now)))]
        return last[0][1]

    return wrapped


def survey_gauges(
    counts: Callable[[], Mapping[str, int]],
) -> Callable[[str, web.Application], None]:
    """A ``Node`` extension reporting the node's surveys by state (``counts()`` gives how
    many surveys the node holds in each state: scheduled, live, interrupted, completed...)."""

    def source(now: datetime) -> list[Metric]:
        family = GaugeMetricFamily(
            "tongban_survey_sessions", "Surveys held by this node, by state", labels=["state"]
        )
        for state, n in sorted(counts().items()):
            family.add_metric([state], n)
        return [family]

    def extension(listener: str, app: web.Application) -> None:
        if listener == "staff" and METRICS in app:
            app[METRICS].add_gauges("surveys", source)

    return extension


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


METRICS = web.AppKey("metrics", NodeMetrics)
"""Where the staff application keeps its node's metrics (``app[METRICS]``)."""


def add_metrics_routes(app: web.Application, metrics: NodeMetrics) -> None:
    """``GET /metrics`` on the staff application (behind its bearer-token check)."""
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics_handler)
