"""Applicant access to one case: access codes, signed tracking links, a lookup throttle.

- **Access code** — handed to the applicant once at hand-in: 10 characters from a
  32-letter alphabet without look-alikes (50 bits), printed ``XXXXX-XXXXX``. The node
  stores only ``scrypt(code, salt)`` with a fresh 16-byte salt per case
  (N = 2^14, r = 8, p = 1; :func:`hash_access_code`); comparing is constant-time.
- **Tracking link** — a compact JWS (typ ``tongban-track+jwt``) signed by the node's
  seal: ``{"iss": node, "case": id, "iat": t, "exp": t'}``; verified against the trust
  bundle and the node's own id, refused after ``exp``.
- **Throttle** — token buckets (time passed in, no clock inside): one per client address
  charged on every lookup, one per case number charged on every *failed* lookup, so
  guessing codes for one case is slow from any number of addresses and any one address
  is slow at trying many cases. Buckets are bounded in number (oldest evicted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.cases.errors import TrackingDenied
from signing.certificates import TrustBundle
from signing.encoding import canonical_json
from signing.errors import SigningError
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "CODE_ALPHABET",
    "TRACK_TYP",
    "LookupThrottle",
    "TokenBucketLimiter",
    "check_access_code",
    "code_key",
    "hash_access_code",
    "new_access_code",
    "normalize_code",
    "sign_tracking_link",
    "verify_tracking_link",
]

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 10
TRACK_TYP = "tongban-track+jwt"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DKLEN = 2**14, 8, 1, 32


def new_access_code(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh access code ``XXXXX-XXXXX`` (50 random bits from ``randbytes``)."""
    value = int.from_bytes(randbytes(8), "big") >> 14  # 50 bits
    chars = []
    for _ in range(CODE_LENGTH):
        value, index = divmod(value, 32)
        chars.append(CODE_ALPHABET[index])
    text = "".join(chars)
    return f"{text[:5]}-{text[5:]}"


def normalize_code(text: str) -> str:
    """Upper case, without spaces and dashes (look-alikes are not in the alphabet)."""
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_access_code(code: str, salt: bytes) -> str:
    """``scrypt$N$r$p$<salt b64>$<hash b64>`` of the normalized code."""
    digest = hashlib.scrypt(
        normalize_code(code).encode("ascii", "replace"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        dklen=_DKLEN,
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_access_code(code: str, stored: str) -> bool:
    """Whether ``code`` matches a hash made by :func:`hash_access_code` (constant time)."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        normalized = normalize_code(code)
        if len(normalized) > 64:
            return False
        candidate = hashlib.scrypt(
            normalized.encode("ascii", "replace"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, digest)


def code_key(access_hash: str) -> str:
    """What a tracking link names of the access code it was given for (a digest of the
    code's stored hash): a new code makes the links of the old one refused."""
    return hashlib.sha256(access_hash.encode()).hexdigest()[:16]


def sign_tracking_link(
    case_id: str,
    signer: Signer,
    *,
    node_id: str,
    at: datetime,
    ttl: timedelta,
    key: str | None = None,
) -> str:
    """A signed tracking token for ``case_id`` valid for ``ttl`` from ``at``; ``key``:
    :func:`code_key` of the access code it stands for."""
    issued = int(at.timestamp())
    claims: dict[str, object] = {
        "iss": node_id,
        "case": case_id,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
    }
    if key is not None:
        claims["key"] = key
    return sign_compact(canonical_json(claims), signer, typ=TRACK_TYP, at=at)


def verify_tracking_link(
    token: str, bundle: TrustBundle, *, node_id: str, at: datetime
) -> tuple[str, str | None]:
    """The case id a tracking token grants and the code key it names (None: a link made
    before links named one); raises :class:`TrackingDenied` (``bad-link`` or
    ``expired-link``)."""
    if len(token) > 16384:
        raise TrackingDenied("tracking link too long", code="bad-link")
    try:
        verified = verify_compact(token, bundle, at=at, typ=TRACK_TYP, node_id=node_id)
        claims = json.loads(verified.payload)
        case_id, exp, iss = claims["case"], claims["exp"], claims["iss"]
        key = claims.get("key")
        if not isinstance(case_id, str) or not isinstance(exp, int) or iss != node_id:
            raise TypeError
        if key is not None and not isinstance(key, str):
            raise TypeError
    except (SigningError, ValueError, KeyError, TypeError):
        raise TrackingDenied("the tracking link is not valid", code="bad-link") from None
    if at.timestamp() >= exp:
        raise TrackingDenied("the tracking link has expired", code="expired-link")
    return case_id, key


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Token buckets per key: ``capacity`` tokens, refilled at ``rate`` per second.

    ``now`` is seconds on any monotonic scale, passed in by the caller. At most
    ``max_keys`` buckets are kept; the least recently used one is dropped first (a
    dropped bucket comes back full, which costs an attacker one refill's worth).
    """

    def __init__(self, *, capacity: float, rate: float, max_keys: int = 100_000) -> None:
        if capacity < 1 or rate <= 0 or max_keys < 1:
            raise ValueError("capacity >= 1, rate > 0 and max_keys >= 1 required")
        self.capacity, self.rate, self.max_keys = capacity, rate, max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        return bucket

    def wait(self, key: str, now: float) -> float:
        """Seconds until one token is available for ``key`` (0 when available now)."""
        bucket = self._bucket(key, now)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def take(self, key: str, now: float) -> float:
        """Take one token: 0 on success, else the seconds to wait (nothing taken)."""
        delay = self.wait(key, now)
        if delay == 0.0:
            self._buckets[key].tokens -= 1
        return delay


class LookupThrottle:
    """The two throttles of tracking lookups (per client address, per case number)."""

    def __init__(
        self,
        *,
        per_client: TokenBucketLimiter | None = None,
        per_case: TokenBucketLimiter | None = None,
    ) -> None:
        self.per_client = per_client or TokenBucketLimiter(capacity=10, rate=1 / 6)
        self.per_case = per_case or TokenBucketLimiter(capacity=5, rate=1 / 60)

    def admit(self, client: str, case_id: str, now: float) -> float:
        """Charge the client's bucket; refuse (seconds to wait) if either is empty."""
        case_wait = self.per_case.wait(case_id, now)
        client_wait = self.per_client.take(client, now)
        return max(case_wait, client_wait)

    def failed(self, case_id: str, now: float) -> None:
        """Record a failed lookup (wrong code) against the case number."""
        self.per_case.take(case_id, now)
