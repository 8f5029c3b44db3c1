"""Reload: a running node takes new files without a restart, all or nothing.

Triggered by ``SIGHUP`` (``tongban serve``) and ``POST /staff/v1/reload`` (staff role
``administrator``). The pipeline first *prepares* everything from the files, in this
order, stopping at the first step that fails; nothing is installed then and the node
keeps its old state, the report names the step and why, and a staff alert
(``reload-failed``) stands until a reload succeeds:

1. ``config`` — ``node.toml`` parses; node id, key and data folders, trust bundle path
   and listeners are unchanged (those need a restart);
2. ``trust-bundle`` — the bundle file parses (new CRLs, new roots);
3. ``tls`` — ``tls.pem``/``tls.key`` load together and the certificate is valid for this
   node under the new bundle (a rotated certificate);
4. ``agreements`` — every agreement file reads and evaluates under the new bundle;
5. ``partners`` — every ``[[partners]]`` descriptor verifies under the new bundle;
6. ``directories`` — the own directory file and the cache verify under the new bundle.

Then it *installs*: the agreements (their events appended to the audit log, as at
start), the TLS certificate and new roots on every listener and on the peer link (new
connections use them; open ones are not cut, so a rotation has no downtime), the
directories and the partner overrides, and the partners are resolved again.

Limits and outbox settings (:data:`LIVE_LIMITS`, ``[outbox]``) take effect at once:
``[limits] max_batch_size`` and ``max_attachment_bytes`` are read by the listeners on
every request, and the outbox takes the new ``batch_size`` and backoff from its next
pass (backoffs already scheduled stand). :data:`RESTART_LIMITS` are reported under
``restart_needed`` (as ``limits.<key>``) and keep their running value until a restart:

- ``max_body_bytes``: each listener's application fixes the largest body it reads
  when it is built (aiohttp ``client_max_size``), and the largest packet the node
  creates derives from it, so that it fits a one-packet batch;
- ``max_header_bytes``: the HTTP parser of every connection is built with it;
- ``request_timeout``: it is the keep-alive and TLS handshake deadline of the
  listeners and the peer link's request timeout, all set when they start;
- ``max_connections_per_peer``: the peer link's connection pool and the listener's
  per-partner counters are sized with it.

Changed ``[staff]``, ``[audit]`` and ``[helper]`` settings are reported under
``restart_needed`` too.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509

from agreements.errors import AgreementError
from relay.alerts import Severity, StaffAlert
from relay.authorizer import AgreementAuthorizer, AgreementLoadError, load_authorizer
from relay.config import ConfigError, NodeConfig, load_config
from relay.federation.directories import DirectorySet
from relay.federation.partners import PartnerRoute
from relay.federation.service import DirectoryError
from relay.node import outbox_policy
from relay.problem import Problem, ProblemCode
from relay.staff_auth import StaffRole, require_role
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.descriptor import verify_descriptor
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput

if TYPE_CHECKING:
    from relay.node import Node

__all__ = [
    "LIVE_LIMITS",
    "RESTART_LIMITS",
    "ReloadReport",
    "ReloadStep",
    "reload_alerts",
    "reload_extension",
    "reload_node",
]

_log = logging.getLogger("tongban.relay.reload")

RELOAD_PATH = "/staff/v1/reload"

LIVE_LIMITS = ("max_batch_size", "max_attachment_bytes")
"""``[limits]`` keys a reload changes on the running node."""
RESTART_LIMITS = (
    "max_body_bytes",
    "max_header_bytes",
    "request_timeout",
    "max_connections_per_peer",
)
"""``[limits]`` keys that keep their running value until a restart (see above)."""


class ReloadStep(StrEnum):
    CONFIG = "config"
    TRUST_BUNDLE = "trust-bundle"
    TLS = "tls"
    AGREEMENTS = "agreements"
    PARTNERS = "partners"
    DIRECTORIES = "directories"


class _Refused(Exception):
    def __init__(self, step: ReloadStep, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


@dataclass(frozen=True)
class ReloadReport:
    """What a reload did: everything (``ok``) or nothing (``step`` and ``reason``)."""

    at: datetime
    ok: bool
    step: ReloadStep | None = None
    reason: str = ""
    agreements: int = 0
    partners: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at.isoformat(), "ok": self.ok}
        if self.ok:
            out |= {
                "agreements": self.agreements,
                "partners": list(self.partners),
                "restart_needed": list(self.restart_needed),
            }
        else:
            out |= {"step": self.step.value if self.step else None, "reason": self.reason}
        return out


@dataclass(frozen=True)
class _Prepared:
    config: NodeConfig
    bundle: TrustBundle
    authorizer: AgreementAuthorizer
    overrides: dict[str, PartnerRoute]
    directories: DirectorySet
    restart_needed: tuple[str, ...]


_FIXED = ("node_id", "key_dir", "data_dir", "trust_bundle", "federation", "public")


def _prepare(node: Node, now: datetime) -> _Prepared:
    old = node.config
    try:
        config = load_config(old.source)
    except ConfigError as exc:
        raise _Refused(ReloadStep.CONFIG, str(exc)) from None
    fixed = [*_FIXED, "staff_listener"]
    changed = [name for name in fixed if getattr(config, name) != getattr(old, name)]
    if changed:
        raise _Refused(
            ReloadStep.CONFIG,
            f"{old.source}: {', '.join(changed)} changed; that needs a restart",
        )
    restart = tuple(
        f"limits.{name}"
        for name in RESTART_LIMITS
        if getattr(config.limits, name) != getattr(old.limits, name)
    ) + tuple(
        name for name in ("staff", "audit", "helper") if getattr(config, name) != getattr(old, name)
    )
    # what runs keeps its restart-only limits; node.config is the configuration in force
    config = replace(
        config,
        limits=replace(
            config.limits, **{name: getattr(old.limits, name) for name in RESTART_LIMITS}
        ),
        helper=old.helper,  # the helper started with the node
    )
    try:
        outbox_policy(config)
    except ValueError as exc:
        raise _Refused(ReloadStep.CONFIG, f"{old.source}: [outbox]: {exc}") from None
    try:
        bundle = TrustBundle.from_pem(config.trust_bundle.read_bytes())
    except OSError as exc:
        raise _Refused(
            ReloadStep.TRUST_BUNDLE, f"{config.trust_bundle}: cannot read: {exc.strerror}"
        ) from None
    except MalformedInput as exc:
        raise _Refused(ReloadStep.TRUST_BUNDLE, f"{config.trust_bundle}: {exc}") from None
    cert, key = config.key_dir / "tls.pem", config.key_dir / "tls.key"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
        chain = x509.load_pem_x509_certificates(cert.read_bytes())
        validate_path(chain, bundle, purpose=Purpose.TLS_PEER, at=now, node_id=config.node_id)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise _Refused(ReloadStep.TLS, f"{cert}: does not load with {key.name}: {exc}") from None
    except CertificateRejected as exc:
        raise _Refused(ReloadStep.TLS, f"{cert}: not accepted ({exc.reason}): {exc}") from None
    try:
        authorizer = load_authorizer(config.agreements, bundle, at=now)
    except (AgreementLoadError, AgreementError) as exc:
        raise _Refused(ReloadStep.AGREEMENTS, str(exc)) from None
    overrides = {}
    for partner in config.partners:
        try:
            data = partner.descriptor.read_bytes()
            verify_descriptor(data, bundle, at=now)
        except OSError as exc:
            raise _Refused(
                ReloadStep.PARTNERS, f"{partner.descriptor}: cannot read: {exc.strerror}"
            ) from None
        except (InvalidSignature, CertificateRejected):
            raise _Refused(
                ReloadStep.PARTNERS,
                f"{partner.descriptor}: the descriptor of {partner.node_id} does not verify",
            ) from None
        overrides[partner.node_id] = PartnerRoute(
            partner.node_id, partner.federation_url, data, "override"
        )
    assert node.federation is not None
    try:
        directories = node.federation.prepare(config.directory_settings, bundle, at=now)
    except DirectoryError as exc:
        raise _Refused(ReloadStep.DIRECTORIES, str(exc)) from None
    return _Prepared(config, bundle, authorizer, overrides, directories, restart)


def _install(node: Node, prepared: _Prepared, now: datetime) -> None:
    config = prepared.config
    handle = node._handle
    if handle is not None and handle.agreements is not None:
        handle.agreements.install(prepared.authorizer, prepared.bundle, now)
    running = getattr(handle.core, "outbox_policy", None) if handle is not None else None
    if handle is not None and running is not None and config.outbox != node.config.outbox:
        fresh = outbox_policy(config)
        handle.core.set_outbox_policy(  # type: ignore[attr-defined]
            replace(
                running,
                base_delay=fresh.base_delay,
                max_delay=fresh.max_delay,
                batch_size=fresh.batch_size,
            )
        )
    cert, key = config.key_dir / "tls.pem", config.key_dir / "tls.key"
    roots = _roots_file(prepared.bundle)
    in_use = x509.load_pem_x509_certificate(cert.read_bytes())
    for context in node._contexts:
        context.load_cert_chain(cert, key)
        if context.verify_mode == ssl.CERT_REQUIRED:
            context.load_verify_locations(cafile=roots)
    Path(roots).unlink(missing_ok=True)
    if node._link is not None:
        node._link.add_trust(prepared.bundle, cert, key)
    node.certificates_in_use = {**node.certificates_in_use, "tls": in_use}  # the seal: a restart
    assert node.federation is not None
    node.config = config
    node.federation.install(config.directory_settings, prepared.directories, prepared.overrides)


def _roots_file(bundle: TrustBundle) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as fh:
        fh.write(b"".join(r.public_bytes(Encoding.PEM) for r in bundle.roots))
        return fh.name


async def reload_node(node: Node) -> ReloadReport:
    """Run the pipeline on a started node (one synchronous step: no request sees half)."""
    now = node._clock()
    try:
        prepared = _prepare(node, now)
    except _Refused as exc:
        _log.error("reload refused at %s: %s; the old state stays", exc.step.value, exc.reason)
        return ReloadReport(at=now, ok=False, step=exc.step, reason=exc.reason)
    try:
        _install(node, prepared, now)
    except Exception as exc:  # the audit log refused the agreement events, say
        _log.exception("reload could not be installed")
        return ReloadReport(
            at=now, ok=False, step=ReloadStep.AGREEMENTS, reason=f"{type(exc).__name__}: {exc}"
        )
    assert node.federation is not None
    report = ReloadReport(
        at=now,
        ok=True,
        agreements=len(prepared.authorizer.loaded),
        partners=tuple(sorted(node.federation.resolution.routes)),
        restart_needed=prepared.restart_needed,
    )
    _log.info(
        "reloaded: %d agreement file(s), partners %s%s",
        report.agreements,
        ", ".join(report.partners) or "none",
        f"; restart needed for {', '.join(report.restart_needed)}" if report.restart_needed else "",
    )
    return report


def reload_alerts(report: ReloadReport | None, now: datetime) -> list[StaffAlert]:
    """The ``reload-failed`` alert while the last reload was refused."""
    if report is None or report.ok:
        return []
    step = report.step.value if report.step else "?"
    return [
        StaffAlert(
            id="reload:failed",
            source="reload",
            code="reload-failed",
            severity=Severity.WARNING,
            at=report.at,
            title_zh="重新加载被拒绝，仍使用原配置",
            title_en="A reload was refused; the node keeps its previous state",
            detail=f"step {step}: {report.reason}",
            subject=step,
        )
    ]


def reload_extension(reload: Any) -> Any:
    """``POST /staff/v1/reload`` on the staff application (role ``administrator``)."""

    def extension(listener: str, app: web.Application) -> None:
        if listener != "staff":
            return

        async def handler(request: web.Request) -> web.Response:
            require_role(request, StaffRole.ADMINISTRATOR)
            report: ReloadReport = await reload()
            if not report.ok:
                raise Problem(
                    422,
                    ProblemCode.RELOAD_REFUSED,
                    f"reload refused at step {report.step}: {report.reason}",
                    extra=report.to_json(),
                )
            return web.json_response(report.to_json())

        app.router.add_post(RELOAD_PATH, handler)

    return extension
