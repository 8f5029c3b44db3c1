"""The node configuration file (TOML) as frozen dataclasses.

:func:`load_config` reads ``node.toml``; :func:`parse_config` is the pure part (a parsed
TOML mapping in, a :class:`NodeConfig` out). Every setting is documented in
``docs/configuration.md``. Relative paths are resolved against the folder of the
configuration file, so a node directory can be moved as a whole. Any error — a missing
key, a wrong type, an out-of-range value, an unknown key (usually a typo) — raises
:class:`ConfigError` naming the file and the dotted key::

    node.toml: listeners.federation.port: must be an integer 1-65535
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay.db.settings import DatabaseSettings, DatabaseUrlError, check_url
from signing.certificates import is_node_id

__all__ = [
    "AuditSettings",
    "ConfigError",
    "DirectorySettings",
    "Limits",
    "Listener",
    "NodeConfig",
    "OutboxSettings",
    "Partner",
    "StaffSettings",
    "SurveySettings",
    "TimestampSettings",
    "load_config",
    "parse_config",
    "parse_duration",
]

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """A configuration file that cannot be used; names the file and the dotted key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Listener:
    """One listening socket; ``tls`` is always true for federation (mutual TLS)."""

    host: str
    port: int
    tls: bool


@dataclass(frozen=True)
class Partner:
    """A partner node: its signed descriptor file and federation base URL."""

    node_id: str
    descriptor: Path
    federation_url: str


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1024 * 1024
    max_batch_size: int = 100
    max_header_bytes: int = 8190
    request_timeout: float = 30.0
    max_connections_per_peer: int = 8
    max_attachment_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class OutboxSettings:
    batch_size: int = 100
    base_backoff: float = 1.0
    max_backoff: float = 300.0
    lease: float = 120.0  # PostgreSQL: how long a worker's claim on a case lasts unrenewed


@dataclass(frozen=True)
class HelperSettings:
    """Whether the node runs its packet crypto in a helper process (relay.core.helper)."""

    enabled: bool = True
    seal_inline_up_to: int = 0  # creations in progress the node seals itself (0: none)


def _default_helper() -> bool:
    """A helper process pays off with a second core to run on."""
    return (os.cpu_count() or 1) > 1


@dataclass(frozen=True)
class AuditSettings:
    """How often the node signs a checkpoint (if its log grew) and witnesses partners."""

    checkpoint_interval: float = 600.0
    witness_interval: float = 600.0


@dataclass(frozen=True)
class TimestampSettings:
    """The RFC 3161 time-stamping authority that stamps our checkpoints (optional)."""

    url: str
    trust: Path  # PEM: the TSA's root certificate(s) and any intermediates
    alert_after: float = 3600.0
    timeout: float = 30.0


@dataclass(frozen=True)
class OidcSettings:
    """Console sign-in through an OpenID Connect provider (``[staff.oidc]``)."""

    issuer: str
    client_id: str
    client_secret: str
    role_claim: str = "roles"
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # claim value -> roles
    scopes: str = "openid profile"
    name_claim: str = "preferred_username"
    redirect_uri: str | None = None  # default: https://<staff host>/login/oidc/callback
    ca_file: Path | None = None  # extra CA certificates for an https issuer


@dataclass(frozen=True)
class StaffSettings:
    token_key: Path
    token_ttl: float = 8 * 3600.0
    # console sessions (relay.signin)
    session_idle_timeout: float = 30 * 60.0
    session_lifetime: float = 12 * 3600.0
    lockout_threshold: int = 5
    lockout_duration: float = 15 * 60.0
    signin_address_limit: int = 20
    signin_address_window: float = 15 * 60.0
    oidc: OidcSettings | None = None


@dataclass(frozen=True)
class Webhook:
    """A target of the node's outbound events (``[[webhooks]]``, relay.integration)."""

    url: str
    events: frozenset[str]  # the event types delivered to it (all when not configured)
    ca: Path | None = None  # CA bundle for an https target (system CAs when None)
    max_attempts: int = 12
    base_backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 10.0


@dataclass(frozen=True)
class DirectorySettings:
    """``[directory]``: the federation directory (see relay.federation.service)."""

    cache: Path
    own: Path | None = None
    sources: tuple[str, ...] = ()
    refresh: float = 60.0
    validity: float = 600.0


@dataclass(frozen=True)
class SurveySettings:
    """``[survey]``: ICE servers for remote surveys. ``turn_urls`` (``turn:``/``turns:``
    URLs) get time-limited credentials per participant (TURN REST scheme) from the shared
    secret in ``turn_secret_file``, valid for ``turn_ttl``; ``stun_urls`` need none."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret_file: Path | None = None
    turn_ttl: float = 6 * 3600.0


@dataclass(frozen=True)
class NodeConfig:
    source: Path
    node_id: str
    key_dir: Path
    data_dir: Path
    trust_bundle: Path
    federation: Listener
    public: Listener
    staff_listener: Listener
    partners: tuple[Partner, ...]
    agreements: tuple[Path, ...]
    limits: Limits
    outbox: OutboxSettings
    staff: StaffSettings
    audit: AuditSettings = AuditSettings()
    webhooks: tuple[Webhook, ...] = ()
    timestamps: TimestampSettings | None = None
    directory: DirectorySettings | None = None  # None: built by hand, not from a file

    @property
    def directory_settings(self) -> DirectorySettings:
        return self.directory or DirectorySettings(cache=self.data_dir / "directories")

    survey: SurveySettings = SurveySettings()
    database: DatabaseSettings = DatabaseSettings()  # noqa: RUF009 - frozen, immutable
    helper: HelperSettings = HelperSettings(enabled=False)  # built by hand: no helper

    def partner(self, node_id: str) -> Partner | None:
        for partner in self.partners:
            if partner.node_id == node_id:
                return partner
        return None


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"8h"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("must be a positive duration")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError('must be a duration such as 30 or "30s", "8h"')
    total, pos = 0.0, 0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or total <= 0:
        raise ValueError(f'must be a duration such as "30s" or "8h", not {value!r}')
    return total


class _Reader:
    """Typed access to one TOML table, reporting errors with the dotted key."""

    def __init__(self, source: str, base: Path, table: Mapping[str, Any], prefix: str) -> None:
        self.source, self.base, self.table, self.prefix = source, base, table, prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), message)

    def raw(self, name: str, default: object = ...) -> object:
        self.seen.add(name)
        if name in self.table:
            return self.table[name]
        if default is ...:
            raise self.error(name, "is required")
        return default

    def sub(self, name: str, *, required: bool = True) -> _Reader:
        value = self.raw(name, ... if required else {})
        if not isinstance(value, Mapping):
            raise self.error(name, "must be a table")
        return _Reader(self.source, self.base, value, self.key(name))

    def string(self, name: str, default: object = ...) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str) or not value:
            raise self.error(name, "must be a non-empty string")
        return value

    def boolean(self, name: str, default: object = ...) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def integer(self, name: str, low: int, high: int, default: object = ...) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(name, f"must be an integer {low}-{high}")
        return value

    def duration(self, name: str, default: object = ...) -> float:
        try:
            return parse_duration(self.raw(name, default))
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def path(self, name: str, default: object = ...) -> Path:
        value = self.raw(name, default)
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            raise self.error(name, "must be a path (non-empty string)")
        return (self.base / value).resolve()

    def node_id(self, name: str) -> str:
        value = self.string(name)
        if not is_node_id(value):
            raise self.error(name, 'must be a 6-digit division code such as "420106"')
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown setting")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listener(listeners: _Reader, name: str, *, tls_default: bool, plain_ok: bool) -> Listener:
    table = listeners.sub(name)
    host = table.string("host", "127.0.0.1")
    port = table.integer("port", 1, 65535)
    tls = table.boolean("tls", tls_default)
    if not tls and not plain_ok:
        raise table.error("tls", "must be true: this listener is only offered over TLS")
    table.done()
    return Listener(host=host, port=port, tls=tls)


_ACCOUNT_ROLES = ("clerk", "approver", "inspector", "licence_officer", "administrator")


def _oidc(staff_t: _Reader) -> OidcSettings | None:
    if "oidc" not in staff_t.table:
        staff_t.seen.add("oidc")
        return None
    t = staff_t.sub("oidc")
    issuer = t.string("issuer")
    parsed = urlsplit(issuer)
    if parsed.scheme != "https" and not (
        parsed.scheme == "http" and _is_loopback(parsed.hostname or "")
    ):
        raise t.error("issuer", "must be an https URL (http only for a loopback address)")
    roles_t = t.sub("roles")
    mapped: dict[str, tuple[str, ...]] = {}
    for value, granted in roles_t.table.items():
        names = [granted] if isinstance(granted, str) else granted
        if not isinstance(names, list) or not names or not all(n in _ACCOUNT_ROLES for n in names):
            raise roles_t.error(value, f"must name roles among {', '.join(_ACCOUNT_ROLES)}")
        mapped[str(value)] = tuple(names)
        roles_t.seen.add(value)
    if not mapped:
        raise t.error("roles", "must map at least one claim value to a role")
    redirect = t.raw("redirect_uri", None)
    if redirect is not None and (
        not isinstance(redirect, str) or not redirect.startswith("https://")
    ):
        raise t.error("redirect_uri", "must be an https URL ending in /login/oidc/callback")
    settings = OidcSettings(
        issuer=issuer.rstrip("/"),
        client_id=t.string("client_id"),
        client_secret=t.string("client_secret"),
        role_claim=t.string("role_claim", "roles"),
        roles=mapped,
        scopes=t.string("scopes", "openid profile"),
        name_claim=t.string("name_claim", "preferred_username"),
        redirect_uri=redirect,
        ca_file=t.path("ca_file") if "ca_file" in t.table else None,
    )
    if "openid" not in settings.scopes.split():
        raise t.error("scopes", "must include openid")
    t.done()
    return settings


def _partners(root: _Reader) -> tuple[Partner, ...]:
    value = root.raw("partners", [])
    if not isinstance(value, list):
        raise root.error("partners", "must be an array of tables ([[partners]])")
    partners: list[Partner] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise root.error(f"partners[{index}]", "must be a table")
        table = _Reader(root.source, root.base, item, f"partners[{index}]")
        url = table.string("federation_url")
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise table.error("federation_url", "must be an https:// URL")
        partner = Partner(table.node_id("id"), table.path("descriptor"), url.rstrip("/"))
        table.done()
        if any(p.node_id == partner.node_id for p in partners):
            raise table.error("id", f"partner {partner.node_id} is listed twice")
        partners.append(partner)
    return tuple(partners)


def _agreements(root: _Reader) -> tuple[Path, ...]:
    table = root.sub("agreements", required=False)
    files = table.raw("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise table.error("files", "must be an array of paths")
    paths = [(root.base / f).resolve() for f in files]
    if "folder" in table.table:  # every *.json in it, read anew at each start and reload
        folder = table.path("folder")
        if not folder.is_dir():
            raise table.error("folder", f"{folder} is not a folder")
        paths += [p for p in sorted(folder.glob("*.json")) if p not in paths]
    table.done()
    return tuple(paths)


def _directory(root: _Reader, data_dir: Path) -> DirectorySettings:
    table = root.sub("directory", required=False)
    own = table.path("own") if "own" in table.table else None
    sources = table.raw("sources", [])
    if not isinstance(sources, list) or not all(isinstance(u, str) for u in sources):
        raise table.error("sources", "must be an array of URLs")
    for url in sources:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise table.error("sources", f"{url!r} is not an http(s):// URL")
    settings = DirectorySettings(
        cache=table.path("cache", data_dir / "directories"),
        own=own,
        sources=tuple(u.rstrip("/") for u in sources),
        refresh=table.duration("refresh", 60.0),
        validity=table.duration("validity", 600.0),
    )
    table.done()
    return settings


def _webhooks(root: _Reader) -> tuple[Webhook, ...]:
    from relay.integration.events import EventType

    value = root.raw("webhooks", [])
    if not isinstance(value, list):
        raise root.error("webhooks", "must be an array of tables ([[webhooks]])")
    hooks: list[Webhook] = []
    known = {t.value for t in EventType}
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise root.error(f"webhooks[{index}]", "must be a table")
        table = _Reader(root.source, root.base, item, f"webhooks[{index}]")
        url = table.string("url")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise table.error("url", "must be an https:// (or loopback http://) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise table.error("url", "may be http:// only for a loopback address")
        events = table.raw("events", sorted(known))
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise table.error("events", "must be an array of event types")
        unknown = sorted(set(events) - known)
        if unknown or not events:
            raise table.error("events", f"unknown event type {unknown[:1]}; one of {sorted(known)}")
        hook = Webhook(
            url=url,
            events=frozenset(events),
            ca=table.path("ca") if "ca" in item else None,
            max_attempts=table.integer("max_attempts", 1, 1000, 12),
            base_backoff=table.duration("base_backoff", 1.0),
            max_backoff=table.duration("max_backoff", 600.0),
            timeout=table.duration("timeout", 10.0),
        )
        table.done()
        if hook.max_backoff < hook.base_backoff:
            raise table.error("max_backoff", "must not be smaller than base_backoff")
        if any(h.url == hook.url for h in hooks):
            raise table.error("url", "is listed twice")
        hooks.append(hook)
    return tuple(hooks)


def parse_config(data: Mapping[str, Any], *, source: Path) -> NodeConfig:
    """Build a :class:`NodeConfig` from a parsed TOML document read from ``source``."""
    root = _Reader(str(source), source.parent.resolve(), data, "")
    node = root.sub("node")
    node_id = node.node_id("id")
    key_dir = node.path("key_dir")
    data_dir = node.path("data_dir")
    trust_bundle = node.path("trust_bundle")
    node.done()

    listeners = root.sub("listeners")
    federation = _listener(listeners, "federation", tls_default=True, plain_ok=False)
    public = _listener(listeners, "public", tls_default=False, plain_ok=True)
    staff_listener = _listener(listeners, "staff", tls_default=True, plain_ok=True)
    if not staff_listener.tls and not _is_loopback(staff_listener.host):
        raise ConfigError(
            str(source),
            "listeners.staff.tls",
            "may be false only when listeners.staff.host is a loopback address",
        )
    listeners.done()

    limits_t = root.sub("limits", required=False)
    d = Limits()
    limits = Limits(
        max_body_bytes=limits_t.integer("max_body_bytes", 1024, 2**31, d.max_body_bytes),
        max_batch_size=limits_t.integer("max_batch_size", 1, 10_000, d.max_batch_size),
        max_header_bytes=limits_t.integer("max_header_bytes", 1024, 65536, d.max_header_bytes),
        request_timeout=limits_t.duration("request_timeout", d.request_timeout),
        max_connections_per_peer=limits_t.integer(
            "max_connections_per_peer", 1, 1024, d.max_connections_per_peer
        ),
        max_attachment_bytes=limits_t.integer(
            "max_attachment_bytes", 1, 2**50, d.max_attachment_bytes
        ),
    )
    limits_t.done()

    outbox_t = root.sub("outbox", required=False)
    o = OutboxSettings()
    outbox = OutboxSettings(
        batch_size=outbox_t.integer("batch_size", 1, 10_000, o.batch_size),
        base_backoff=outbox_t.duration("base_backoff", o.base_backoff),
        max_backoff=outbox_t.duration("max_backoff", o.max_backoff),
    )
    if outbox.max_backoff < outbox.base_backoff:
        raise outbox_t.error("max_backoff", "must not be smaller than outbox.base_backoff")
    lease = outbox_t.duration("lease", o.lease)
    if lease <= limits.request_timeout:
        raise outbox_t.error("lease", "must be longer than limits.request_timeout (one send)")
    outbox = replace(outbox, lease=lease)
    outbox_t.done()

    helper_t = root.sub("helper", required=False)
    helper = HelperSettings(
        enabled=helper_t.boolean("enabled", _default_helper()),
        seal_inline_up_to=helper_t.integer(
            "seal_inline_up_to", 0, 10_000, HelperSettings.seal_inline_up_to
        ),
    )
    helper_t.done()

    staff_t = root.sub("staff", required=False)
    staff = StaffSettings(
        token_key=staff_t.path("token_key", data_dir / "staff-token.key"),
        token_ttl=staff_t.duration("token_ttl", 8 * 3600.0),
        session_idle_timeout=staff_t.duration("session_idle_timeout", 30 * 60.0),
        session_lifetime=staff_t.duration("session_lifetime", 12 * 3600.0),
        lockout_threshold=staff_t.integer("lockout_threshold", 1, 1000, 5),
        lockout_duration=staff_t.duration("lockout_duration", 15 * 60.0),
        signin_address_limit=staff_t.integer("signin_address_limit", 1, 100_000, 20),
        signin_address_window=staff_t.duration("signin_address_window", 15 * 60.0),
        oidc=_oidc(staff_t),
    )
    staff_t.done()

    audit_t = root.sub("audit", required=False)
    audit = AuditSettings(
        checkpoint_interval=audit_t.duration("checkpoint_interval", 600.0),
        witness_interval=audit_t.duration("witness_interval", 600.0),
    )
    audit_t.done()

    timestamps_t = root.sub("timestamps", required=False)
    timestamps = None
    if timestamps_t.table:
        url = timestamps_t.string("url")
        if not url.startswith(("http://", "https://")):
            raise timestamps_t.error("url", "must be an http:// or https:// URL")
        timestamps = TimestampSettings(
            url=url,
            trust=timestamps_t.path("trust"),
            alert_after=timestamps_t.duration("alert_after", 3600.0),
            timeout=timestamps_t.duration("timeout", 30.0),
        )
    timestamps_t.done()
    survey = _survey(root.sub("survey", required=False))
    database = _database(root.sub("database", required=False))

    partners = _partners(root)
    if any(p.node_id == node_id for p in partners):
        raise ConfigError(str(source), "partners", f"lists this node ({node_id}) itself")
    agreements = _agreements(root)
    webhooks = _webhooks(root)
    directory = _directory(root, data_dir)
    root.done()
    return NodeConfig(
        source=source.resolve(),
        node_id=node_id,
        key_dir=key_dir,
        data_dir=data_dir,
        trust_bundle=trust_bundle,
        federation=federation,
        public=public,
        staff_listener=staff_listener,
        partners=partners,
        agreements=agreements,
        limits=limits,
        outbox=outbox,
        staff=staff,
        audit=audit,
        webhooks=webhooks,
        timestamps=timestamps,
        directory=directory,
        survey=survey,
        database=database,
        helper=helper,
    )


def _database(table: _Reader) -> DatabaseSettings:
    url = table.raw("url", None)
    if url is not None:
        if not isinstance(url, str):
            raise table.error("url", "must be a postgresql:// URL")
        try:
            check_url(url)
        except DatabaseUrlError as exc:
            raise table.error("url", str(exc)) from None
    blob_dir = None if table.raw("blob_dir", None) is None else table.path("blob_dir")
    table.done()
    return DatabaseSettings(url=url, blob_dir=blob_dir)


def _urls(table: _Reader, name: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
    value = table.raw(name, [])
    if not isinstance(value, list) or not all(
        isinstance(u, str) and u.startswith(schemes) for u in value
    ):
        raise table.error(name, f"must be a list of {'/'.join(schemes)} URLs")
    return tuple(value)


def _survey(table: _Reader) -> SurveySettings:
    turn_urls = _urls(table, "turn_urls", ("turn:", "turns:"))
    secret = table.raw("turn_secret_file", None)
    if turn_urls and secret is None:
        raise table.error("turn_secret_file", "is required when turn_urls is set")
    settings = SurveySettings(
        stun_urls=_urls(table, "stun_urls", ("stun:", "stuns:")),
        turn_urls=turn_urls,
        turn_secret_file=None if secret is None else table.path("turn_secret_file"),
        turn_ttl=table.duration("turn_ttl", 6 * 3600.0),
    )
    if not 60 <= settings.turn_ttl <= 7 * 86400:
        raise table.error("turn_ttl", "must be between 1 minute and 7 days")
    table.done()
    return settings


def load_config(path: str | Path) -> NodeConfig:
    """Read and check the TOML configuration file at ``path``."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(source), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(source), "", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(source), "", f"not valid TOML: {exc}") from None
    return parse_config(data, source=source)
