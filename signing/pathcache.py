"""Bounded memo of the pure, time-independent parts of certificate path validation.

:func:`~signing.certificates.validate_path` runs for every signed artefact a node
receives, and most of its cost is the same few signature checks over and over: "this
certificate was signed by that issuer", "this CRL was signed by that issuer". Those
answers depend only on the bytes involved, so they are remembered here, keyed by the
exact DER encodings (never by names, serials or object identity):

- ``issued_by``: ``(child DER, issuer DER)`` for which
  ``child.verify_directly_issued_by(issuer)`` succeeded (for an SM2-with-SM3 signature
  of the SM profile, :func:`signing.sm_x509.verify_certificate`);
- ``crl``: ``(CRL DER, issuer DER)`` for which the CRL signature verified;
- ``x5c``: a JWS ``x5c`` entry (the exact base64 text) that decoded canonically and
  parsed, with its parsed certificate;
- ``der``: the DER encoding of a certificate object (by object identity);
- ``path``: a whole validation's result (the identity) keyed by the chain's DER, the
  bundle's fingerprint (its roots and CRLs: a new CRL is a new key), the purpose and the
  node id asked for, *with its validity window*: the latest ``notBefore`` and the
  earliest ``notAfter`` of the path and ``nextUpdate`` of the CRLs consulted. A hit
  counts only for a time inside that window; outside it the full check runs (and
  says why it fails).

Only successes are remembered, so a hit means "these very bytes verified before" and a
miss falls back to the full check. A forged issuer with the same name as a trusted one
has different DER, hence never hits. Everything that depends on the time or on the
bundle's current CRL (validity at ``at``, CRL ``nextUpdate``, the revocation lookup,
purpose and node binding) is not cached and runs on every call. A trust bundle rebuilt
with a new CRL has a new CRL DER: its signature is checked afresh.

The caches are process-wide, thread-safe (the relay verifies packets off the event
loop) and least-recently-used with a fixed capacity; :func:`clear` empties them (the
benchmark uses it to measure the uncached rate) and :func:`stats` reports hits/misses.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from signing import sm_x509

__all__ = [
    "LruCache",
    "certificate_from_x5c",
    "clear",
    "crl_signed_by",
    "der",
    "issued_by_signature",
    "path_result",
    "remember_path",
    "stats",
]

_V = TypeVar("_V")


class LruCache(Generic[_V]):
    """A thread-safe least-recently-used map with at most ``maxsize`` entries (writers
    take a lock; readers do not need one)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, _V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> _V | None:
        # Without the lock: every verify asks several of these, and each step here is one
        # call into the C OrderedDict, atomic under the GIL. A put in another thread may
        # evict the key between the two steps; the value found is still right. The
        # counters are outside the lock too: two threads may lose a count (statistics).
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs more than the lookup itself
            self._data.move_to_end(key)
        except KeyError:  # evicted meanwhile
            pass
        self.hits += 1
        return value

    def put(self, key: Hashable, value: _V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


_ISSUED_BY: LruCache[bool] = LruCache(4096)
_CRL: LruCache[bool] = LruCache(64)
_X5C: LruCache[x509.Certificate] = LruCache(2048)
_DER: LruCache[tuple[object, bytes]] = LruCache(2048)
_PATH: LruCache[tuple[Any, datetime, datetime]] = LruCache(1024)
_CACHES: dict[str, LruCache[Any]] = {
    "issued_by": _ISSUED_BY,
    "crl": _CRL,
    "x5c": _X5C,
    "der": _DER,
    "path": _PATH,
}


def path_result(key: Hashable, at: datetime) -> Any | None:
    """The remembered result of validating ``key`` if ``at`` is inside its window."""
    entry = _PATH.get(key)
    if entry is None:
        return None
    result, valid_from, valid_until = entry
    return result if valid_from <= at <= valid_until else None


def remember_path(key: Hashable, result: Any, valid_from: datetime, valid_until: datetime) -> None:
    """Remember a successful validation of ``key`` for times in [valid_from, valid_until]."""
    _PATH.put(key, (result, valid_from, valid_until))


def der(obj: x509.Certificate) -> bytes:
    """The DER encoding of a certificate (the cache key material).

    Encoding costs more than a dictionary lookup, so it is remembered per object: the
    entry holds the (immutable) object itself, so its ``id`` cannot be reused by another
    object while the entry exists, and a hit is checked with ``is``.
    """
    entry = _DER.get(id(obj))
    if entry is not None and entry[0] is obj:
        return entry[1]
    encoded = obj.public_bytes(Encoding.DER)
    _DER.put(id(obj), (obj, encoded))
    return encoded


def issued_by_signature(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``child`` is directly issued by ``issuer`` (name and signature checked by
    :meth:`cryptography.x509.Certificate.verify_directly_issued_by`), memoized."""
    key = (der(child), der(issuer))
    if _ISSUED_BY.get(key):
        return True
    if sm_x509.sm2_signed(child):  # SM profile: cryptography has no SM2
        if not sm_x509.verify_certificate(child, issuer):
            return False
    else:
        try:
            child.verify_directly_issued_by(issuer)
        except (_CryptoInvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
            return False
    _ISSUED_BY.put(key, True)
    return True


def crl_signed_by(
    crl: x509.CertificateRevocationList, crl_der: bytes, issuer: x509.Certificate
) -> bool:
    """True if ``crl`` (whose DER is ``crl_der``) is signed by ``issuer``'s key, memoized.

    Name matching and freshness are the caller's business (they are not cached)."""
    key = (crl_der, der(issuer))
    if _CRL.get(key):
        return True
    if sm_x509.sm2_signed(crl):  # SM profile: cryptography has no SM2
        valid = sm_x509.verify_crl(crl, issuer)
    else:
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (UnsupportedAlgorithm, ValueError, TypeError):
            return False
    if valid:
        _CRL.put(key, True)
    return valid


def certificate_from_x5c(item: str) -> x509.Certificate:
    """Parse one ``x5c`` entry: canonical standard base64 of a DER certificate.

    Raises :class:`ValueError` when it is not; successful parses are memoized by text.
    """
    cached = _X5C.get(item)
    if cached is not None:
        return cached
    try:
        raw = base64.b64decode(item, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(raw).decode() != item:
        raise ValueError("non-canonical base64")
    cert = x509.load_der_x509_certificate(raw)
    _X5C.put(item, cert)
    return cert


def clear() -> None:
    """Forget everything (and reset the counters)."""
    for cache in _CACHES.values():
        cache.clear()


def stats() -> dict[str, dict[str, int]]:
    """Per cache: ``size``, ``hits``, ``misses``."""
    return {
        name: {"size": len(cache), "hits": cache.hits, "misses": cache.misses}
        for name, cache in _CACHES.items()
    }
