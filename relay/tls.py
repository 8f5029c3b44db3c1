"""TLS for the node: mutual TLS between partner nodes, checked against the trust bundle.

Two layers check a peer, on purpose:

1. OpenSSL, through the :class:`ssl.SSLContext` built here: TLS 1.3 only, a certificate
   is required and must chain to a root of the trust bundle. A client without a
   certificate or from an unknown root never gets an HTTP request through.
2. :func:`signing.certificates.validate_path` at the time of each request (federation
   listener, :func:`mtls_middleware`) or of each new connection (outgoing, in
   :mod:`relay.http.link`): purpose (TLS), validity, the CRLs of the bundle, and the node
   id in the certificate. The bundle is re-read when its file changes, so a new CRL takes
   effect without a restart; new *roots* (OpenSSL holds them) and a renewed certificate
   are added to the running contexts by a reload (:mod:`relay.federation.reload`).

The path checked in layer 2 is the chain the peer sent (leaf, then intermediates, as
``tls.pem`` holds them for a certificate from an outside CA): Python 3.11 has no public
call for it (3.13's ``get_unverified_chain``), so :func:`peer_chain` uses the private
one of the ``_ssl`` module when present and falls back to the leaf alone.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from relay.problem import Problem, ProblemCode
from signing.certificates import Identity, Purpose, TrustBundle, validate_path
from signing.errors import CertificateRejected, MalformedInput

__all__ = [
    "PEER_KEY",
    "BundleSource",
    "client_context",
    "mtls_middleware",
    "peer_chain",
    "peer_identity",
    "server_context",
]

_log = logging.getLogger("tongban.relay.tls")

PEER_KEY = web.RequestKey("peer", Identity)
"""``request[PEER_KEY]`` holds the validated :class:`Identity` of the calling node."""


class BundleSource:
    """The trust bundle file, re-read when its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._bundle: TrustBundle | None = None
        self.current()

    def current(self) -> TrustBundle:
        """The bundle as the file holds it now (raises OSError / MalformedInput)."""
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._bundle is None or stamp != self._stamp:
                self._bundle = TrustBundle.from_pem(self.path.read_bytes())
                self._stamp = stamp
            return self._bundle


def _roots_pem(bundle: TrustBundle) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in bundle.roots)


def _base_context(purpose: ssl.Purpose, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    return context


def server_context(
    cert: Path, key: Path, bundle: TrustBundle | None, *, require_client_cert: bool
) -> ssl.SSLContext:
    """A TLS 1.3 server context with our certificate.

    With ``require_client_cert`` (the federation listener) the client must present a
    certificate chaining to a root of ``bundle``.
    """
    context = _base_context(ssl.Purpose.CLIENT_AUTH, cert, key)
    if require_client_cert:
        if bundle is None:
            raise ValueError("mutual TLS needs a trust bundle")
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=_roots_pem(bundle))
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(
    bundle: TrustBundle, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting the bundle roots, presenting our certificate.

    The server's node id is checked separately (:func:`peer_identity`), per connection.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.load_verify_locations(cadata=_roots_pem(bundle))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def peer_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    bundle: TrustBundle,
    *,
    at: datetime,
    node_id: str | None = None,
) -> Identity:
    """Validate the peer's TLS certificate of a connection at ``at``.

    Raises :class:`CertificateRejected` (``bad-chain`` when there is no certificate).
    """
    ders = peer_chain(ssl_object)
    if not ders:
        raise CertificateRejected("bad-chain", "the peer presented no certificate")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in ders]
    except ValueError as exc:
        raise CertificateRejected("bad-chain", "the peer certificate does not parse") from exc
    return validate_path(chain, bundle, purpose=Purpose.TLS_PEER, at=at, node_id=node_id)


_DER = 2  # _ssl.ENCODING_DER


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> list[bytes]:
    """The DER certificates the peer sent, leaf first (empty when it sent none)."""
    if ssl_object is None:
        return []
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return []
    inner = getattr(ssl_object, "_sslobj", ssl_object)
    sent = getattr(inner, "get_unverified_chain", None)
    chain = sent() if callable(sent) else None
    if not chain:
        return [leaf]
    ders = [c.public_bytes(_DER) for c in chain]
    return ders if ders[0] == leaf else [leaf, *ders]  # a server's list may lack the leaf


def mtls_middleware(bundle: BundleSource, clock: Callable[[], datetime]) -> Middleware:
    """Middleware: validate the client certificate, set ``request["peer"]`` or refuse 403.

    Must sit inside :func:`relay.problem.problem_middleware`. Nothing below it runs for
    a refused peer, so nothing is stored.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        try:
            trust = bundle.current()
        except (OSError, MalformedInput) as exc:
            # fail closed: without the current CRLs no peer can be checked
            _log.error("trust bundle %s cannot be read: %s", bundle.path, exc)
            raise Problem(
                503, ProblemCode.SERVICE_UNAVAILABLE, "the node cannot check peers right now"
            ) from None
        try:
            identity = peer_identity(ssl_object, trust, at=clock())
        except CertificateRejected as exc:
            _log.warning("federation peer refused (%s) on %s", exc.reason, request.path)
            if exc.reason == "revoked":
                raise Problem(
                    403, ProblemCode.PEER_REVOKED, "the client certificate is revoked"
                ) from None
            raise Problem(
                403,
                ProblemCode.PEER_NOT_TRUSTED,
                f"the client certificate is not accepted ({exc.reason})",
            ) from None
        request[PEER_KEY] = identity
        return await handler(request)

    return middleware
