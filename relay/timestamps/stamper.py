"""Getting tokens for our checkpoints, and the alert when the TSA stays down.

:meth:`Stamper.catch_up` sends every checkpoint without a token to the TSA, oldest
first, and keeps each token that verifies; before them every ``survey-report`` and
``licence-event`` leaf without a token of its own (a token over the leaf's bytes, which
name the report's or credential's SHA-256: docs/dossier.md §2); it stops at the first
TSA failure (the rest wait for the next step) and never raises for one, so the
checkpoint task and the exchange go on. :meth:`Stamper.alerts` is the staff alert
source ``timestamps``: one ``tsa-unavailable`` alert while the oldest unstamped
checkpoint is older than ``alert_after`` (it disappears by itself once the tokens are
caught up).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

import aiohttp

from relay.alerts import Severity, StaffAlert
from relay.timestamps.store import TimestampStore
from relay.timestamps.tokens import (
    Stamp,
    TimestampError,
    TsaTrust,
    TsaUnavailable,
    build_request,
    check_response,
)

__all__ = ["HttpTsa", "Stamper", "TsaPost"]

_log = logging.getLogger("tongban.relay.timestamps")

TsaPost = Callable[[bytes], Awaitable[bytes]]
"""Send a DER TimeStampReq, return the DER TimeStampResp (or raise TsaUnavailable)."""


class HttpTsa:
    """RFC 3161 over HTTP (section 3.4): POST application/timestamp-query."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self, request: bytes) -> bytes:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(
                    self.url, data=request, headers={"Content-Type": "application/timestamp-query"}
                ) as answer,
            ):
                if answer.status != 200:
                    raise TsaUnavailable(f"the TSA answered HTTP {answer.status}")
                return await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TsaUnavailable(f"the TSA could not be reached: {exc}") from exc


TSA_SKEW = timedelta(minutes=5)
"""How far a token's genTime may be from the node's clock: a TSA whose clock is off
stamps times that prove nothing, so its tokens are refused (and tried again later)."""


class Stamper:
    def __init__(
        self,
        store: TimestampStore,
        tsa: TsaPost,
        trust: TsaTrust,
        *,
        alert_after: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._tsa = tsa
        self._trust = trust
        self._alert_after = timedelta(seconds=alert_after)
        self._clock = clock
        self.last_error = ""
        self._signer: tuple[str, datetime] | None = None  # the last token's TSA certificate

    async def catch_up(self) -> int:
        """Stamp every unstamped survey-report and licence-event leaf, then every
        unstamped checkpoint, now; the number of checkpoints stamped."""
        for index, leaf in self._store.unstamped_leaves():
            request, nonce = build_request(leaf)
            try:
                response = await self._tsa(request)
                stamp = self._timely(check_response(response, leaf, self._trust, nonce=nonce))
            except TimestampError as exc:
                self.last_error = str(exc)
                _log.warning("timestamps: leaf %d not stamped: %s", index, exc)
                return 0
            self._store.put_leaf(index, stamp.response, stamp.gen_time, self._clock())
            self._note_signer(stamp)
        done = 0
        for size, note, _ in self._store.unstamped():
            request, nonce = build_request(note)
            try:
                response = await self._tsa(request)
                stamp = self._timely(check_response(response, note, self._trust, nonce=nonce))
            except TimestampError as exc:
                self.last_error = str(exc)
                _log.warning("timestamps: checkpoint %d not stamped: %s", size, exc)
                return done
            self._store.put(size, stamp.response, stamp.gen_time, self._clock())
            self._note_signer(stamp)
            done += 1
        self.last_error = ""
        return done

    def _note_signer(self, stamp: Stamp) -> None:
        if stamp.tsa_not_after is not None:
            self._signer = (stamp.tsa, stamp.tsa_not_after)

    def certificate_alerts(self, now: datetime) -> list[StaffAlert]:
        """``tsa-certificate-expiring`` for each certificate of the TSA trust
        (``[timestamps] trust``) and the TSA's signing certificate of the last token that
        ends within :data:`relay.expiry.CERT_WARN`: once it has, no token verifies, and
        nothing gets a proven time until the trust or the TSA is renewed."""
        from relay.expiry import CERT_CRITICAL, CERT_WARN

        watched = [(c.subject.rfc4514_string(), c.not_valid_after_utc)
                   for c in (*self._trust.roots, *self._trust.intermediates)]  # fmt: skip
        if self._signer is not None:
            watched.append(self._signer)
        alerts = []
        for subject, end in watched:
            if end - now > CERT_WARN:
                continue
            verb = "expired at" if end <= now else "expires at"
            alerts.append(
                StaffAlert.of(
                    "timestamps",
                    f"certificate:{subject}",
                    "tsa-certificate-expiring",
                    Severity.CRITICAL if end - now <= CERT_CRITICAL else Severity.WARNING,
                    now,
                    "可信时间戳服务的证书即将过期",
                    "A certificate of the trusted timestamp service runs out soon",
                    f"the TSA certificate {subject} {verb} {end.isoformat()}; tokens it "
                    "signs stop verifying then, and checkpoints get no proven time: get the "
                    "TSA's new certificate into [timestamps] trust (or a renewed TSA) "
                    "before it",
                    subject=subject,
                )
            )
        return alerts

    def _timely(self, stamp: Stamp) -> Stamp:
        """``stamp`` when its genTime is within :data:`TSA_SKEW` of the node's clock."""
        now = self._clock()
        if abs(stamp.gen_time - now) > TSA_SKEW:
            raise TimestampError(
                f"the TSA's time {stamp.gen_time.isoformat()} is off from this node's "
                f"{now.isoformat()} by more than {int(TSA_SKEW.total_seconds() // 60)} minutes"
            )
        return stamp

    def alerts(self, now: datetime) -> Iterable[StaffAlert]:
        certificates = self.certificate_alerts(now)
        waiting = self._store.unstamped()
        if not waiting or now - waiting[0][2] < self._alert_after:
            return certificates
        size, _, since = waiting[0]
        cause = f" (last error: {self.last_error})" if self.last_error else ""
        return [
            StaffAlert(
                id="timestamps:tsa-unavailable",
                source="timestamps",
                code="tsa-unavailable",
                severity=Severity.WARNING,
                at=since,
                title_zh="可信时间戳服务不可用",
                title_en="The trusted timestamp service is unavailable",
                detail=f"{len(waiting)} checkpoints since the one of {size} leaves (signed "
                f"{since.isoformat()}) have no timestamp token{cause}; exchange goes on and "
                "the tokens are fetched once the TSA answers: check [timestamps] url",
                subject=str(size),
            ),
            *certificates,
        ]
