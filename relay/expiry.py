"""Staff alerts for what runs out: CRLs, the node's own certificates, its province's
directory-signing certificate, its agreements.

A CRL in the trust bundle warns 7 days before its nextUpdate and is critical once stale
(peers are then refused); the node's TLS and seal certificates, and the certificate of
the directory key that signs its own province's federation directory, warn 30 days
before they expire and are critical within 7; an agreement the node is party to warns 30 days before
it ends. :func:`expiry_alerts` is the pure core (data and the instant in, alerts out);
:class:`ExpiryWatch` reads the CRLs and agreements anew on every call (so a renewed one
clears its alert by itself), watches the certificates the node *uses* (a renewed file
clears nothing until the node has loaded it: ``certificate-not-loaded`` says to reload
or restart meanwhile), and logs each standing alert as a WARNING once a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from cryptography import x509

from agreements.model import Agreement
from agreements.signed import SignedAgreement
from relay.alerts import Severity, StaffAlert
from signing.certificates import TrustBundle

__all__ = [
    "AGREEMENT_WARN",
    "CERT_CRITICAL",
    "CERT_WARN",
    "CRL_WARN",
    "ExpiryWatch",
    "expiry_alerts",
    "expiry_detail",
    "read_certificates",
    "watch_until_stopped",
]

_log = logging.getLogger("tongban.relay.expiry")

CRL_WARN = timedelta(days=7)
CERT_WARN = timedelta(days=30)
CERT_CRITICAL = timedelta(days=7)
AGREEMENT_WARN = timedelta(days=30)
SOURCE = "expiry"


_alert = partial(StaffAlert.of, SOURCE)  # (key, code, severity, now, zh, en, detail, subject)


def expiry_alerts(
    now: datetime,
    *,
    crls: Iterable[x509.CertificateRevocationList],
    certificates: Mapping[str, x509.Certificate],
    agreements: Iterable[Agreement],
    node_id: str,
    directory_keys: Mapping[str, x509.Certificate] | None = None,
    on_disk: Mapping[str, x509.Certificate] | None = None,
) -> list[StaffAlert]:
    """The alerts standing at ``now`` for everything given that runs out;
    ``directory_keys`` maps a federation name to its directory-signing certificate.
    ``certificates`` are those the node uses; ``on_disk`` those in its key folder: one
    that differs (renewed, not loaded yet) is an alert of its own until it is loaded."""
    out: list[StaffAlert] = []
    for name, cert in sorted((on_disk or {}).items()):
        used = certificates.get(name)
        if used is None or used == cert:
            continue
        how = "reload the node (tongban reload)" if name == "tls" else "restart the node"
        out.append(
            _alert(
                f"certificate-not-loaded:{name}",
                "certificate-not-loaded",
                Severity.WARNING
                if used.not_valid_after_utc - now > CERT_CRITICAL
                else Severity.CRITICAL,
                now,
                "新证书已放入密钥目录，但节点仍在使用旧证书",
                "A new certificate is in the key folder, but the node still uses the old one",
                f"{name}.pem in the key folder (valid until "
                f"{cert.not_valid_after_utc.isoformat()}) is not the certificate the node "
                f"uses (valid until {used.not_valid_after_utc.isoformat()}): {how} so that "
                "it takes the new one before the old one runs out",
                name,
            )
        )
    for crl in crls:
        issuer = crl.issuer.rfc4514_string()
        end = crl.next_update_utc
        if end is None:
            continue
        if end <= now:
            out.append(
                _alert(
                    f"crl:{issuer}",
                    "crl-stale",
                    Severity.CRITICAL,
                    now,
                    "吊销列表已过期",
                    "A CRL is stale",
                    f"the CRL of {issuer} was due for renewal at {end.isoformat()}; "
                    "peers it covers are refused until a fresh CRL is installed "
                    "(tongban pki crl on the federation root)",
                    issuer,
                )
            )
        elif end - now <= CRL_WARN:
            out.append(
                _alert(
                    f"crl:{issuer}",
                    "crl-expiring",
                    Severity.WARNING,
                    now,
                    "吊销列表即将过期",
                    "A CRL runs out soon",
                    f"the CRL of {issuer} must be renewed before {end.isoformat()} "
                    "(tongban pki crl on the federation root)",
                    issuer,
                )
            )
    for name, cert in sorted(certificates.items()):
        end = cert.not_valid_after_utc
        if end - now > CERT_WARN:
            continue
        severity = Severity.CRITICAL if end - now <= CERT_CRITICAL else Severity.WARNING
        verb = "expired at" if end <= now else "expires at"
        out.append(
            _alert(
                f"certificate:{name}",
                "certificate-expiring",
                severity,
                now,
                "本节点证书即将过期",
                "This node's certificate runs out soon",
                f"the node's {name} certificate {verb} {end.isoformat()}; "
                "have the federation issue a new one"
                + (
                    ". Licences sealed with it stop verifying when it ends (protocol.md "
                    "§9.3, shell model): issue them again under the new seal"
                    if name == "seal"
                    else ""
                ),
                name,
            )
        )
    for federation, cert in sorted((directory_keys or {}).items()):
        end = cert.not_valid_after_utc
        if end - now > CERT_WARN:
            continue
        severity = Severity.CRITICAL if end - now <= CERT_CRITICAL else Severity.WARNING
        verb = "expired at" if end <= now else "expires at"
        out.append(
            _alert(
                f"directory-key:{federation}",
                "directory-key-expiring",
                severity,
                now,
                "联邦目录签名证书即将过期",
                "The federation directory's signing certificate runs out soon",
                f"the directory-signing certificate of {federation} {verb} "
                f"{end.isoformat()}; directories it signs are refused afterwards, so the "
                "province must issue a new directory key (tongban pki directory-key) and "
                "sign the directory with it",
                federation,
            )
        )
    for agreement in agreements:
        end = agreement.valid_until
        if node_id not in agreement.party_ids or end <= now or end - now > AGREEMENT_WARN:
            continue
        ref = f"{agreement.id} v{agreement.version}"
        out.append(
            _alert(
                f"agreement:{agreement.id}:{agreement.version}",
                "agreement-ending",
                Severity.WARNING,
                now,
                "协议即将到期",
                "An agreement ends soon",
                f"agreement {ref} ends at {end.isoformat()}; cases under it cannot "
                "be opened afterwards unless a new version is signed",
                ref,
            )
        )
    return out


def _state(end: datetime, now: datetime, warn: timedelta) -> str:
    return "expired" if end <= now else "expiring" if end - now <= warn else "ok"


def expiry_detail(
    now: datetime,
    *,
    crls: Iterable[x509.CertificateRevocationList],
    certificates: Mapping[str, x509.Certificate],
) -> dict[str, list[dict[str, object]]]:
    """What runs out when, for ``/readyz``: each CRL's nextUpdate and each of the node's
    certificates' notAfter, with the days left and ``ok``/``expiring``/``expired``
    (``expiring`` from the same thresholds as the alerts)."""
    out: dict[str, list[dict[str, object]]] = {"crls": [], "certificates": []}
    for crl in crls:
        end = crl.next_update_utc
        if end is not None:
            out["crls"].append(
                {
                    "issuer": crl.issuer.rfc4514_string(),
                    "next_update": end.isoformat(),
                    "days_left": round((end - now).total_seconds() / 86400, 2),
                    "state": _state(end, now, CRL_WARN),
                }
            )
    for name, cert in sorted(certificates.items()):
        end = cert.not_valid_after_utc
        out["certificates"].append(
            {
                "name": name,
                "not_after": end.isoformat(),
                "days_left": round((end - now).total_seconds() / 86400, 2),
                "state": _state(end, now, CERT_WARN),
            }
        )
    return out


class ExpiryWatch:
    """The alert source of a running node (``app[ALERTS].add_source("expiry", watch)``)."""

    def __init__(
        self,
        *,
        node_id: str,
        bundle: Callable[[], TrustBundle],
        key_dir: Path,
        agreements: Iterable[Path] | Callable[[], Iterable[Path]],
        directory_keys: Callable[[], Mapping[str, x509.Certificate]] | None = None,
        in_use: Callable[[], Mapping[str, x509.Certificate]] | None = None,
    ) -> None:
        """``directory_keys`` gives the directory-signing certificates to watch
        (federation name -> certificate), asked on every check; ``in_use`` the node's
        certificates as it loaded them (None: those in ``key_dir``)."""
        self._node_id = node_id
        self._in_use = in_use
        self._bundle = bundle
        self._key_dir = key_dir
        # a callable is asked on every check: the files the node holds after a reload
        self._agreement_files = agreements if callable(agreements) else tuple(agreements)
        self._logged: dict[str, date] = {}
        self._directory_keys = directory_keys

    def _certificates(self) -> dict[str, x509.Certificate]:
        """The certificates the node uses."""
        return dict(self._in_use()) if self._in_use else read_certificates(self._key_dir)

    def detail(self, now: datetime) -> dict[str, list[dict[str, object]]]:
        """:func:`expiry_detail` of the certificates in use and the CRLs as they are now."""
        return expiry_detail(now, crls=self._bundle().crls, certificates=self._certificates())

    def __call__(self, now: datetime) -> list[StaffAlert]:
        certificates = self._certificates()
        try:
            on_disk = read_certificates(self._key_dir) if self._in_use else None
        except (OSError, ValueError):  # being replaced, or unreadable: the next look
            on_disk = None
        agreements = [
            SignedAgreement.from_bytes(p.read_bytes()).agreement for p in self._agreements
        ]
        alerts = expiry_alerts(
            now,
            crls=self._bundle().crls,
            certificates=certificates,
            agreements=agreements,
            node_id=self._node_id,
            directory_keys=self._directory_keys() if self._directory_keys else None,
            on_disk=on_disk,
        )
        for alert in alerts:
            if self._logged.get(alert.id) != now.date():
                self._logged[alert.id] = now.date()
                _log.warning("%s (%s): %s", alert.code, alert.severity.value, alert.detail)
        return alerts

    @property
    def _agreements(self) -> tuple[Path, ...]:
        files = self._agreement_files
        return tuple(files() if callable(files) else files)


def read_certificates(key_dir: Path) -> dict[str, x509.Certificate]:
    """The node's TLS and seal certificates as they are in its key folder now."""
    return {
        name: x509.load_pem_x509_certificate((key_dir / f"{name}.pem").read_bytes())
        for name in ("tls", "seal")
    }


async def watch_until_stopped(
    watch: Callable[[datetime], object],
    clock: Callable[[], datetime],
    stop: asyncio.Event,
    interval: float = 3600.0,
) -> None:
    """Run ``watch`` at start and then every ``interval`` seconds until ``stop`` is set, so
    its daily WARNINGs reach the log even when nobody reads the alert board."""
    while not stop.is_set():
        try:
            watch(clock())
        except Exception:  # a broken file must not stop the node; the board reports it too
            _log.exception("the expiry check failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
