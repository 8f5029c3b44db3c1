"""Delivering the event outbox to the office's webhook targets (docs/integration.md).

Each target (``[[webhooks]]`` in the node configuration) gets its events in outbox
order, one POST per event::

    POST <url>
    Content-Type: application/json
    Tongban-Event-Id: <event id>            the idempotency key
    Tongban-Event-Type: <type>
    Tongban-Signature: <detached compact JWS over the exact body bytes>

The signature is a JWS (RFC 7515) with a detached payload (Appendix F), signed by the
node's seal key: protected header ``alg`` (EdDSA or ES256), ``typ``
``tongban-webhook+jws``, ``kid``, ``x5c`` (the seal certificate chain) and ``iat``. The
target checks it with the node's seal certificate and any JOSE library.

A 2xx answer settles the delivery. An answer that says this event will never be
taken as it is (:data:`PERMANENT_STATUSES`: 400, 409, 410, 413, 415, 422) parks it at
once, so the target's next events are not held behind it. Anything else (another error
status, a refused connection, a timeout: the target as a whole is down or misconfigured)
is retried after ``base_backoff * 2**(attempts-1)`` (capped at ``max_backoff``, with
jitter; longer when a 429 or 503 says so in ``Retry-After``) until ``max_attempts``;
then the delivery is *parked* too. A parked delivery keeps the last error as its
reason, a staff alert stands (``webhook-parked``) and the target's next events follow.
A target failing right now raises ``webhook-failing`` (its CA file that cannot be read
too). Targets are served concurrently, each by its own loop, so a slow or dead target
holds back neither the others nor the relay (the dispatcher only reads and updates its
own tables).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import aiohttp

from relay.alerts import Severity, StaffAlert
from relay.config import Webhook
from relay.db.open import storage_errors
from relay.integration.store import Delivery, IntegrationStore
from signing.jws import sign_compact
from signing.keys import Signer

__all__ = ["PERMANENT_STATUSES", "SIGNATURE_TYP", "WebhookDispatcher", "sign_body"]

PERMANENT_STATUSES = frozenset({400, 409, 410, 413, 415, 422})
"""Answers about the event itself, which sending it again unchanged cannot mend."""

SIGNATURE_TYP = "tongban-webhook+jws"
_log = logging.getLogger("tongban.relay.webhooks")


def sign_body(body: bytes, signer: Signer, *, event_id: str, at: datetime) -> str:
    """The detached JWS carried in ``Tongban-Signature``."""
    return sign_compact(
        body, signer, typ=SIGNATURE_TYP, at=at, detached=True,
        extra_header={"tongban_event": event_id},
    )  # fmt: skip


def backoff(target: Webhook, attempts: int, rng: random.Random) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (full exponential, ±20 %)."""
    base = min(target.max_backoff, target.base_backoff * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * rng.uniform(0.8, 1.2))


async def _pause(stop: asyncio.Event, waker: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less when stopped or woken."""
    stopping = asyncio.ensure_future(stop.wait())
    woken = asyncio.ensure_future(waker.wait())
    await asyncio.wait({stopping, woken}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    woken.cancel()


_RETRY_AFTER_MOST = 7 * 86400
"""A longer ``Retry-After`` is read as this (``max_backoff`` bounds it further)."""


def _retry_after(value: str | None) -> timedelta:
    """A ``Retry-After`` of delay-seconds (an HTTP date counts as none), bounded before
    it is made a timedelta (one of 10**20 seconds cannot be)."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit():
        return timedelta(0)
    if len(text) > 9:  # more than 31 years (and int() refuses over 4,300 digits)
        return timedelta(seconds=_RETRY_AFTER_MOST)
    return timedelta(seconds=min(int(text), _RETRY_AFTER_MOST))


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


class WebhookDispatcher:
    """Runs one delivery loop per target until stopped; :meth:`wake` after new events."""

    def __init__(
        self,
        *,
        store: IntegrationStore,
        targets: Sequence[Webhook],
        signer: Signer,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        poll: float = 1.0,
    ) -> None:
        self._store = store
        self._targets = tuple(targets)
        self._signer = signer
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not a secret
        self._poll = poll
        self._wakers = {t.url: asyncio.Event() for t in self._targets}
        self._failing: dict[str, tuple[datetime, str]] = {}

    def wake(self) -> None:
        for event in self._wakers.values():
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._serve(t, session, stop) for t in self._targets))

    async def _serve(
        self, target: Webhook, session: aiohttp.ClientSession, stop: asyncio.Event
    ) -> None:
        context: ssl.SSLContext | None = None
        waker = self._wakers[target.url]
        while not stop.is_set():
            waker.clear()
            if context is None and target.url.startswith("https:"):
                try:
                    context = self._context(target)
                    self._failing.pop(target.url, None)  # its CA file is readable (again)
                except (OSError, ssl.SSLError, ValueError) as exc:  # this target only
                    _log.error("webhook target %s: CA file %s: %s", target.url, target.ca, exc)
                    self._failing[target.url] = (self._clock(), f"CA file {target.ca}: {exc}")
                    await _pause(stop, waker, max(self._poll, 60.0))
                    continue
            try:
                wait = await self._step(target, session, context)
            except storage_errors() as exc:  # storage: look again after a pause
                _log.error("webhook delivery to %s: storage error: %s", target.url, exc)
                wait = self._poll
            if wait is not None:
                await _pause(stop, waker, wait)

    @staticmethod
    def _context(target: Webhook) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(target.ca) if target.ca else None)

    async def _step(
        self, target: Webhook, session: aiohttp.ClientSession, context: ssl.SSLContext | None
    ) -> float | None:
        """Try the next due delivery; the seconds to wait before looking again, or None
        to look again at once."""
        delivery = await asyncio.to_thread(self._store.next_delivery, target.url)
        if delivery is None:
            return self._poll
        now = self._clock()
        if delivery.next_at > now:
            return min(self._poll, (delivery.next_at - now).total_seconds())
        answer = await self._post(target, session, context, delivery)
        now = self._clock()
        if answer is None:
            await asyncio.to_thread(self._store.delivered, delivery.event_id, target.url, now)
            self._failing.pop(target.url, None)
            return None
        error, permanent, later = answer
        attempts = delivery.attempts + 1
        if permanent:  # the target took it in, and refused this event: the next may go
            self._failing.pop(target.url, None)
        else:
            self._failing[target.url] = (now, error)
        wait = max(backoff(target, attempts, self._rng), min(later, _seconds(target.max_backoff)))
        retry_at = None if permanent or attempts >= target.max_attempts else now + wait
        if retry_at is None:
            _log.warning("webhook %s to %s parked: %s", delivery.event_id, target.url, error)
        await asyncio.to_thread(
            self._store.failed, delivery.event_id, target.url, error, retry_at=retry_at
        )
        return None

    async def _post(
        self,
        target: Webhook,
        session: aiohttp.ClientSession,
        context: ssl.SSLContext | None,
        delivery: Delivery,
    ) -> tuple[str, bool, timedelta] | None:
        """None when the target took the event; else the error, whether it is
        permanent (:data:`PERMANENT_STATUSES`) and how long the target asked to wait."""
        body = delivery.body.encode("utf-8")
        event_type = delivery.event_id.split(":")[1]
        headers = {
            "Content-Type": "application/json",
            "Tongban-Event-Id": delivery.event_id,
            "Tongban-Event-Type": event_type,
            "Tongban-Signature": sign_body(
                body, self._signer, event_id=delivery.event_id, at=self._clock()
            ),
        }
        try:
            async with session.post(
                target.url, data=body, headers=headers, ssl=context if context else False,
                timeout=aiohttp.ClientTimeout(total=target.timeout), allow_redirects=False,
            ) as resp:  # fmt: skip
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                later = _retry_after(resp.headers.get("Retry-After"))
                return f"HTTP {resp.status}", resp.status in PERMANENT_STATUSES, later
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300], False, timedelta(0)

    def alerts(self, now: datetime) -> Iterable[StaffAlert]:
        """The staff alerts of the webhook targets (an alert source)."""
        for row in self._store.delivery_status():
            url = row["target"]
            if row["parked"]:
                yield StaffAlert(
                    id=f"webhooks:parked:{url}", source="webhooks", code="webhook-parked",
                    severity=Severity.CRITICAL, at=now,
                    title_zh="业务系统推送已搁置", title_en="Webhook deliveries parked",
                    detail=(
                        f"{row['parked']} event(s) to {url} were refused by it for good "
                        "(400, 409, 410, 413, 415 or 422) or given up after the retry limit; "
                        "fix the target, then retry them "
                        "(POST /staff/v1/integration/webhooks/retry)."
                    ),
                    subject=url, extra={"parked": row["parked"]},
                )  # fmt: skip
            failing = self._failing.get(url)
            if failing is not None:
                since, error = failing
                yield StaffAlert(
                    id=f"webhooks:failing:{url}", source="webhooks", code="webhook-failing",
                    severity=Severity.WARNING, at=since,
                    title_zh="业务系统推送失败", title_en="Webhook target failing",
                    detail=f"{url} did not take the last event ({error}); retrying with backoff.",
                    subject=url, extra={"pending": row["pending"]},
                )  # fmt: skip
