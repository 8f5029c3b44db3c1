"""The running node's federation directory service: hold, serve, fetch, resolve, alert.

:class:`FederationService` keeps the node's :class:`DirectorySet` (its province's file
from ``[directory] own``, then every copy fetched, cached on disk), serves them with the
bundle's CRLs at ``GET /.well-known/tongban/directory`` on the public listener, fetches
the same document from the configured ``sources`` and from partners' public URLs (three
a round, in turn) every ``refresh`` seconds, and resolves the node's partners (again
whenever a new copy arrives or, at a round, an agreement has begun or ended)
(:func:`relay.federation.partners.resolve_partners`), handing each new resolution to
``on_routes`` (the node updates its peer link, its partner check and its descriptor
directory). Fresher CRLs found on the way are written into the trust bundle file
(:func:`relay.federation.crls.fresher_bundle`), which every peer check re-reads.

Anchored on X-Road's global configuration: refreshed every 60 s, and the copy a node
holds counts as current for ``validity`` (10 min) after the last successful fetch. While
sources are down the node keeps working on what it holds; the staff alerts say so:

- ``directory-unreachable`` (warning): no source answered for longer than ``validity``;
- ``directory-expired`` (critical): a held directory is past its ``expires_at`` (the
  cache ran out; its entries are still used, each descriptor still path-validated);
- ``partner-unresolved`` (warning): a party of a live agreement no directory lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from agreements.lifecycle import Lifecycle
from relay.alerts import Severity, StaffAlert
from relay.config import DirectorySettings
from relay.federation.crls import fresher_bundle
from relay.federation.directories import (
    DirectoryCache,
    DirectorySet,
    Dropped,
    Offer,
    lapsed_copy,
    merge,
)
from relay.federation.partners import (
    PartnerRoute,
    Resolution,
    agreement_partners,
    resolve_partners,
)
from relay.federation.publish import write_atomically
from relay.http.body import read_at_most
from relay.tls import BundleSource
from signing.certificates import TrustBundle
from signing.errors import InvalidSignature
from signing.federation_directory import VerifiedDirectory, verify_directory

__all__ = [
    "DIRECTORY_PATH",
    "DirectoryError",
    "DirectorySettings",
    "FederationService",
]

_log = logging.getLogger("tongban.relay.federation")

DIRECTORY_PATH = "/.well-known/tongban/directory"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
PARTNERS_PER_ROUND = 3
SOURCE = "federation"


class DirectoryError(Exception):
    """The node's own directory file cannot be used (names the file and why)."""


class DirectoryLapsed(DirectoryError):
    """The province's own directory file verified when it was signed, and no longer
    does: the node keeps running, with the ``directory-dropped`` alert, until the
    province signs a new one (a start or reload refused for it would stop the office)."""

    def __init__(self, message: str, copy: VerifiedDirectory) -> None:
        super().__init__(message)
        self.copy = copy


def load_own(path: Path, bundle: TrustBundle, *, at: datetime) -> VerifiedDirectory:
    """Read and verify the province's directory file; raises :class:`DirectoryError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        verified = verify_directory(data, bundle, at=at)
    except InvalidSignature:
        lapsed = lapsed_copy(data, bundle)
        if lapsed is not None:
            raise DirectoryLapsed(
                f"{path}: valid when it was signed, not now (its directory key expired, "
                "or a CRL is stale)",
                lapsed,
            ) from None
        raise DirectoryError(
            f"{path}: not a valid federation directory for this trust bundle"
        ) from None
    if verified.refused:
        node, why = sorted(verified.refused.items())[0]
        _log.warning("directory %s: node %s left out: %s", path, node, why)
    return verified


class FederationService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        node_id: str,
        settings: DirectorySettings,
        bundle: BundleSource,
        clock: Callable[[], datetime],
        lifecycles: Callable[[], Iterable[Lifecycle]],
        overrides: Mapping[str, PartnerRoute],
        on_routes: Callable[[Resolution], None],
    ) -> None:
        self.node_id = node_id
        self.settings = settings
        self._bundle = bundle
        self._clock = clock
        self._lifecycles = lifecycles
        self._overrides = dict(overrides)
        self._on_routes = on_routes
        self._cache = DirectoryCache(settings.cache)
        self.directories = DirectorySet()
        self.resolution = Resolution()
        self.started_at = clock()
        self.last_success: datetime | None = None
        self.failures: dict[str, str] = {}
        self.dropped: dict[str, Dropped] = {}  # copies that no longer verify (prepare)
        self.bundle_unwritable: str | None = None  # why fresher CRLs could not be kept
        self._closing: asyncio.Task[None] | None = None  # a replaced fetch session
        self._session: aiohttp.ClientSession | None = None
        self._round = 0
        self._wanted: frozenset[str] = frozenset()

    # --- state ---------------------------------------------------------------------

    def prepare(
        self, settings: DirectorySettings, bundle: TrustBundle, *, at: datetime
    ) -> DirectorySet:
        """The set the node would hold with ``settings`` (cache + own file), checked but
        not installed; raises :class:`DirectoryError` (used at start and on reload)."""
        held = DirectoryCache(settings.cache).load(bundle, at=at)
        dropped = dict(held.dropped)
        for verified in self.directories:  # fetched since start, still valid?
            try:
                held, _ = merge(held, verify_directory(verified.token, bundle, at=at))
            except InvalidSignature:
                why = "the copy fetched earlier no longer verifies"
                dropped[verified.root_id] = Dropped(verified.directory.federation, why)
        if settings.own is not None:
            try:
                held, _ = merge(held, load_own(settings.own, bundle, at=at))
            except DirectoryLapsed as exc:  # once valid: an alert, not a refusal
                dropped[exc.copy.root_id] = Dropped(exc.copy.directory.federation, str(exc))
        for root_id in held.by_root:  # a valid copy of the same root came in the end
            dropped.pop(root_id, None)
        return DirectorySet(held.by_root, dropped)

    def install(
        self,
        settings: DirectorySettings,
        directories: DirectorySet,
        overrides: Mapping[str, PartnerRoute],
    ) -> None:
        """Take a prepared state (nothing here can fail half-way) and re-resolve."""
        self.settings = settings
        self._cache = DirectoryCache(settings.cache)
        self._overrides = dict(overrides)
        self.directories = directories
        self.dropped = dict(directories.dropped)
        if self._session is not None and not self._session.closed:  # roots may have changed
            session, self._session = self._session, None
            with contextlib.suppress(RuntimeError):  # no loop running (a start before it)
                self._closing = asyncio.get_running_loop().create_task(session.close())
        for verified in directories:
            self._save(verified)
        self.resolve()

    def start(self) -> None:
        """Load at start; raises :class:`DirectoryError` for a bad own file."""
        now = self._clock()
        self.install(
            self.settings,
            self.prepare(self.settings, self._bundle.current(), at=now),
            self._overrides,
        )

    def _save(self, verified: VerifiedDirectory) -> None:
        try:
            self._cache.save(verified)
        except OSError as exc:
            _log.error("cannot cache directory %s: %s", verified.directory.federation, exc)

    def resolve(self) -> Resolution:
        """Resolve the partners now and hand the result to ``on_routes``."""
        self._wanted = self._wanted_now()
        self.resolution = resolve_partners(self._wanted, self.directories, self._overrides)
        self._on_routes(self.resolution)
        return self.resolution

    def _wanted_now(self) -> frozenset[str]:
        return agreement_partners(self.node_id, self._lifecycles(), at=self._clock())

    def offer(self, token: str, *, at: datetime) -> Offer | None:
        """A copy fetched from somewhere; None when it does not verify. A copy identical
        to one held is not verified again (every partner serves the same few files)."""
        if any(v.token == token for v in self.directories):
            return Offer.SAME
        try:
            verified = verify_directory(token, self._bundle.current(), at=at)
        except InvalidSignature:
            return None
        self.directories, outcome = merge(self.directories, verified)
        if outcome is Offer.NEWER:
            self.dropped.pop(verified.root_id, None)  # a valid copy again
            _log.info(
                "directory %s serial %d taken (%d nodes)",
                verified.directory.federation,
                verified.directory.serial,
                len(verified.entries),
            )
            self._save(verified)
        return outcome

    def directory_signers(self) -> dict[str, x509.Certificate]:
        """Federation name -> directory-signing certificate of the directories that list
        this node (its own province's): when that certificate runs out, the province can
        no longer publish a directory its members accept."""
        return {
            v.directory.federation: v.signer
            for v in self.directories
            if v.signer is not None and self.node_id in v.entries
        }

    def document(self) -> dict[str, list[str]]:
        """What ``GET /.well-known/tongban/directory`` answers."""
        bundle = self._bundle.current()
        return {
            "directories": [v.token for v in self.directories],
            "crls": [c.public_bytes(Encoding.PEM).decode("ascii") for c in bundle.crls],
        }

    # --- fetching --------------------------------------------------------------------

    def targets(self) -> list[str]:
        """Where to fetch from this round: every source, and :data:`PARTNERS_PER_ROUND`
        partners' public URLs in turn (so the load stays flat as the federation grows)."""
        urls = [s.rstrip("/") for s in self.settings.sources]
        partners = sorted(
            {r.public_url for r in self.resolution.routes.values() if r.public_url} - set(urls)
        )
        if partners:
            start = self._round % len(partners)
            turn = (partners[start:] + partners[:start])[:PARTNERS_PER_ROUND]
            urls += turn
        return urls

    def _client_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        roots = self._bundle.current().roots
        context.load_verify_locations(
            cadata="".join(r.public_bytes(Encoding.PEM).decode() for r in roots)
        )
        return context

    async def _fetch(self, session: aiohttp.ClientSession, base: str) -> dict[str, object]:
        async with session.get(base + DIRECTORY_PATH) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = await read_at_most(response.content, MAX_DOCUMENT_BYTES)
        if body is None:
            raise ValueError("answer too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not all(
            isinstance(document.get(k), list) for k in ("directories", "crls")
        ):  # protocol.md §1.7: any other reply is ignored (it is no answer)
            raise ValueError("answer is not a directory document")
        return document

    async def refresh(self) -> int:
        """One round over :meth:`targets`; returns how many answered."""
        targets = self.targets()
        self._round += PARTNERS_PER_ROUND
        if targets and (self._session is None or self._session.closed):
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(ssl=self._client_ssl()),
            )
        session = self._session
        answers = (
            await asyncio.gather(
                *(self._fetch(session, t) for t in targets), return_exceptions=True
            )
            if session is not None
            else []
        )
        now = self._clock()
        crls: list[x509.CertificateRevocationList] = []
        before = self.directories
        answered = 0
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                self.failures[target] = f"{type(answer).__name__}: {answer}"
                continue
            answered += 1
            self.failures.pop(target, None)
            for token in _strings(answer.get("directories")):
                self.offer(token, at=now)
            for pem in _strings(answer.get("crls")):
                with contextlib.suppress(ValueError):
                    crls.append(x509.load_pem_x509_crl(pem.encode("ascii")))
        if answered:
            self.last_success = now
        self._take_crls(crls, now)
        # new copies, or an agreement that began or ended since: resolve again
        if self.directories is not before or self._wanted_now() != self._wanted:
            self.resolve()
        return answered

    def _take_crls(self, crls: list[x509.CertificateRevocationList], now: datetime) -> None:
        held = self._bundle.current()
        crls = list(
            {c.fingerprint(hashes.SHA256()): c for c in crls if c not in held.crls}.values()
        )
        if not crls:
            return
        fresher = fresher_bundle(held, crls, at=now)
        if fresher is None:
            return
        try:
            write_atomically(self._bundle.path, fresher.to_pem())
        except OSError as exc:
            self.bundle_unwritable = str(exc)
            _log.error("fresher CRL not installed: %s", exc)
            return
        self.bundle_unwritable = None
        _log.info("fresher CRLs written into %s", self._bundle.path)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``settings.refresh`` seconds until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    await self.refresh()
                except Exception:  # a round that fails must not end the schedule
                    _log.exception("directory refresh failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.refresh)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the fetching session (:meth:`run` does it when it ends)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- staff alerts ----------------------------------------------------------------

    def alerts(self, now: datetime) -> list[StaffAlert]:
        out = []
        validity = timedelta(seconds=self.settings.validity)
        since = self.last_success or self.started_at
        if self.targets() and now - since > validity:
            failing = "; ".join(f"{u}: {e}" for u, e in sorted(self.failures.items()))
            out.append(
                _alert(
                    "unreachable",
                    "directory-unreachable",
                    Severity.WARNING,
                    now,
                    "联邦目录无法更新",
                    "The federation directory cannot be refreshed",
                    f"no directory source answered since {since.isoformat()}; the node "
                    f"works on its cached copy ({failing or 'no answer'})",
                    "",
                )
            )
        for key, lost in sorted(self.dropped.items()):
            what, why = f"the directory of {lost.federation}", lost.why
            out.append(
                _alert(
                    f"dropped:{key}",
                    "directory-dropped",
                    Severity.CRITICAL,
                    now,
                    "联邦目录已失效被弃用，其中的节点无法连通",
                    "A federation directory no longer verifies and was dropped",
                    f"{what} no longer verifies ({why}): its directory key expired or was "
                    "revoked, or the CRL that covers it is stale. The nodes it lists cannot "
                    "be reached until the province signs a new directory with a valid key "
                    "(tongban pki directory-key, tongban pki sign-directory)",
                    lost.federation,
                )
            )
        if self.bundle_unwritable is not None:
            out.append(
                _alert(
                    "bundle-unwritable",
                    "trust-bundle-unwritable",
                    Severity.CRITICAL,
                    now,
                    "无法将新的吊销列表写入信任包",
                    "Fresher CRLs cannot be written into the trust bundle",
                    f"the node fetched fresher CRLs but cannot write {self._bundle.path} "
                    f"({self.bundle_unwritable}): make the file writable by the node's user; "
                    "until then the CRLs in it run out as if nobody had renewed them",
                    str(self._bundle.path),
                )
            )
        for verified in self.directories:
            d = verified.directory
            # a seventh of its validity ahead (a day for a weekly directory), 1 h to 7 days
            life = (d.expires_at - d.issued_at) / 7
            ahead = min(max(timedelta(hours=1), life), timedelta(days=7))
            if now < d.expires_at <= now + ahead:
                out.append(
                    _alert(
                        f"expiring:{verified.root_id}",
                        "directory-expiring",
                        Severity.WARNING,
                        now,
                        "联邦目录即将过期",
                        "A federation directory runs out soon",
                        f"the directory of {d.federation} (serial {d.serial}) expires at "
                        f"{d.expires_at.isoformat()}; the province must sign a new one before "
                        "then (tongban pki sign-directory)",
                        d.federation,
                    )
                )
            if d.expires_at <= now:
                out.append(
                    _alert(
                        f"expired:{verified.root_id}",
                        "directory-expired",
                        Severity.CRITICAL,
                        now,
                        "联邦目录已过期",
                        "A federation directory has run out",
                        f"the directory of {d.federation} (serial {d.serial}) expired at "
                        f"{d.expires_at.isoformat()} and no newer copy arrived; the province "
                        "must publish a new one (tongban pki sign-directory)",
                        d.federation,
                    )
                )
        for node_id in sorted(self.resolution.unresolved):
            out.append(
                _partner_alert(
                    f"unresolved:{node_id}",
                    "partner-unresolved",
                    Severity.WARNING,
                    now,
                    "协议伙伴不在联邦目录中",
                    "An agreement partner is in no directory",
                    f"node {node_id} is a party of a live agreement but no directory the "
                    "node holds lists it, so nothing can be sent to it",
                    node_id,
                )
            )
        return out

    # --- HTTP ------------------------------------------------------------------------

    def extension(self, listener: str, app: web.Application) -> None:
        """Add ``GET /.well-known/tongban/directory`` to the public application."""
        if listener != "public":
            return

        async def handler(request: web.Request) -> web.Response:
            return web.json_response(self.document(), headers={"Cache-Control": "no-cache"})

        app.router.add_get(DIRECTORY_PATH, handler)


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


_alert = partial(StaffAlert.of, SOURCE)  # (key, code, severity, now, zh, en, detail, subject)


def _partner_alert(
    key: str, code: str, severity: Severity, now: datetime, zh: str, en: str, detail: str, node: str
) -> StaffAlert:
    """An alert about partner ``node`` (its subject; the console shows its office)."""
    return StaffAlert.of(SOURCE, key, code, severity, now, zh, en, detail, node, {"peer": node})
