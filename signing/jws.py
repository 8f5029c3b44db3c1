"""Compact JWS (RFC 7515) signed by a node's certificate-bound key.

Signing writes the bytes pyjwt's :class:`jwt.api_jws.PyJWS` would, with its algorithm
objects; the verifying side checks every signature in :func:`verify_raw` (Ed25519 with
``cryptography`` as pyjwt's OKP algorithm does, P-256 and SM2 through pyjwt's algorithm
objects), so the Wycheproof vectors that test ``verify_raw`` exercise the code
:func:`verify_compact` runs. A decoded protected header is remembered by its segment's
text (a pure function of it); nothing that depends on time or revocation is.

Protected header: ``alg`` (``EdDSA``, ``ES256`` or, in the SM profile, ``SM2SM3``:
SM2 over SM3 with the default GM/T 0009 signer id, ``r || s``; dictated by the key), ``typ`` (the
artefact type, compared exactly), ``kid`` = ``b64url(SHA-256(DER of the leaf))``,
``x5c`` (standard base64 DER, leaf first) and ``iat`` (integer signing time), plus any
extra members the caller adds. Before any signature check the verifier refuses: a
header that is not a JSON object or has duplicate members; ``alg`` other than the one
the ``x5c`` leaf key implies (so ``none``, ``HS256`` with the public key as a secret,
``RS256``... are all refused); any ``crit`` (no extension is understood) or ``b64``;
``jku``/``jwk``/``x5u`` (keys are never fetched or taken from the token); a ``typ``
other than expected; a ``kid`` (or ``x5t#S256``) that is not the leaf's digest; an
``iat`` missing or more than :data:`MAX_CLOCK_SKEW` in the future; a chain that fails
:func:`~signing.certificates.validate_path`. Every failure surfaces as the opaque
:class:`~signing.errors.InvalidSignature`; the cause is logged on ``tongban.signing``.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import Algorithm
from jwt.api_jws import PyJWS

from signing import pathcache
from signing.certificates import Identity, Purpose, TrustBundle, validate_path
from signing.encoding import b64url, b64url_decode, loads_shallow
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput
from signing.keys import (
    SM2_ALGORITHM,
    PublicKey,
    Signer,
    algorithm_for,
    certificate_kid,
    certificate_public_key,
)
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey
from signing.sodium import ed25519_sign, ed25519_verify, ed25519_verify_raw

__all__ = [
    "MAX_CLOCK_SKEW",
    "VerifiedJws",
    "sign_compact",
    "verify_compact",
    "verify_raw",
    "verify_with_key",
]

_log = logging.getLogger("tongban.signing")

MAX_CLOCK_SKEW = timedelta(minutes=5)
_ALGORITHMS = ("EdDSA", "ES256", SM2_ALGORITHM)


class _Sm2Sm3(Algorithm):
    """pyjwt algorithm object for ``SM2SM3`` (GmSSL through :mod:`signing.sm2`)."""

    def prepare_key(self, key: Any) -> Any:
        if not isinstance(key, Sm2PrivateKey | Sm2PublicKey):
            raise TypeError("SM2SM3 needs an SM2 key")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        if not isinstance(key, Sm2PrivateKey):
            raise TypeError("SM2SM3 signs with an SM2 private key")
        return key.sign_raw(msg)

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        return isinstance(key, Sm2PublicKey) and key.verify_raw(sig, msg)

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError("keys are never exchanged as JWK")

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError("keys are never taken from a JWK")


_PYJWS = PyJWS(algorithms=["EdDSA", "ES256"])
_PYJWS.register_algorithm(SM2_ALGORITHM, _Sm2Sm3())
_RESERVED = frozenset({"alg", "typ", "kid", "x5c", "iat", "crit", "b64", "jku", "jwk", "x5u"})
_FORBIDDEN = ("crit", "b64", "jku", "jwk", "x5u")
_MAX_X5C = 5


@dataclass(frozen=True)
class VerifiedJws:
    """A JWS whose signature, header and certificate path all checked out."""

    payload: bytes
    header: Mapping[str, object]
    signer: Identity
    signed_at: datetime


def _fail(cause: str) -> InvalidSignature:
    _log.warning("JWS refused: %s", cause)
    return InvalidSignature()


def sign_compact(
    payload: bytes,
    signer: Signer,
    *,
    typ: str,
    at: datetime,
    detached: bool = False,
    extra_header: Mapping[str, object] | None = None,
) -> str:
    """Sign ``payload``; with ``detached`` the payload segment is left empty (RFC 7515
    Appendix F: the signing input still holds ``b64url(payload)``)."""
    if at.tzinfo is None:
        raise ValueError("sign_compact needs a timezone-aware time")
    iat = int(at.timestamp())
    memo = (signer.x5c, typ, iat)  # the chain fixes alg and kid (its leaf's key and digest)
    head = None if extra_header else _HEADS.get(memo)
    if head is None:
        head = _header_segment(signer, typ, iat, extra_header)
        if not extra_header:
            if len(_HEADS) >= _HEADS_KEPT:
                _HEADS.clear()
            _HEADS[memo] = head
    body = b64url(payload)
    signing_input = f"{head}.{body}".encode("ascii")
    secret = signer.ed25519_secret
    if secret is not None:  # libsodium: the same signature, a third faster
        signature = ed25519_sign(secret, signing_input)
    else:  # pyjwt's algorithm object, without PyJWS.encode's checks of header and key
        algorithm = _PYJWS.get_algorithm_by_name(signer.algorithm)
        key: Any = signer.key  # an SM2 key goes to the registered SM2SM3 algorithm
        signature = algorithm.sign(signing_input, algorithm.prepare_key(key))
    return f"{head}.{'' if detached else body}.{b64url(signature)}"


# header segments by (x5c, typ, iat): within a second every packet, receipt and copy a
# node signs has the same header; its JSON and base64 (half the cost of a libsodium
# signature, x5c is most of its bytes) are made once
_HEADS: dict[tuple[tuple[str, ...], str, int], str] = {}
_HEADS_KEPT = 64


def _header_segment(
    signer: Signer, typ: str, iat: int, extra_header: Mapping[str, object] | None
) -> str:
    extra = dict(extra_header or {})
    clash = _RESERVED.intersection(extra)
    if clash:
        raise ValueError(f"extra_header may not set {sorted(clash)}")
    header: dict[str, Any] = {
        **extra,
        "alg": signer.algorithm,
        "typ": typ,
        "kid": signer.kid,
        "x5c": list(signer.x5c),
        "iat": iat,
    }
    # the bytes pyjwt's PyJWS.encode writes: sorted compact header JSON, base64url
    # without padding
    return b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def verify_raw(algorithm: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    """Check a raw JWS signature: Ed25519 with libsodium (:mod:`signing.sodium`),
    P-256 / SM2 ``r||s`` with pyjwt's algorithm object.

    ``algorithm`` must be the one the key dictates. Raises :class:`InvalidSignature`.
    """
    try:
        expected = algorithm_for(key)
    except MalformedInput:
        raise _fail(f"unsupported key type {type(key).__name__}") from None
    if algorithm != expected:
        raise _fail(f"alg {algorithm!r} does not match the {expected} key")
    if isinstance(key, ed25519.Ed25519PublicKey):  # libsodium: twice OpenSSL's speed
        if not ed25519_verify(key, signature, signing_input):
            raise _fail("signature does not verify")
        return
    if not isinstance(key, ec.EllipticCurvePublicKey | Sm2PublicKey):
        raise _fail("a public key is required")
    try:
        ok = _PYJWS.get_algorithm_by_name(algorithm).verify(signing_input, key, signature)
    except (ValueError, TypeError) as exc:
        raise _fail(f"signature check error: {exc}") from None
    if not ok:
        raise _fail("signature does not verify")


_B64URL_VALUE = {c: i for i, c in enumerate(string.ascii_uppercase + string.ascii_lowercase
                                          + string.digits + "-_")}  # fmt: skip
_UNUSED_BITS = {2: 0b1111, 3: 0b11}  # by length mod 4: bits of the last character unused


def _stray_bits(text: str) -> bool:
    """True when ``text`` (already decoded as base64url without padding) is not the
    canonical encoding of its bytes: the unused low bits of its last character are
    not zero. The same answer as re-encoding and comparing, in constant time."""
    unused = _UNUSED_BITS.get(len(text) % 4)
    return unused is not None and _B64URL_VALUE[text[-1]] & unused != 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


class _Parts(NamedTuple):
    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def _split(token: str, detached_payload: bytes | None) -> _Parts:
    if not isinstance(token, str) or not token.isascii():
        raise _fail("token is not an ASCII string")
    pieces = token.split(".")
    if len(pieces) != 3:
        raise _fail(f"compact JWS has {len(pieces)} segments, not 3")
    head, body, sig = pieces
    try:
        header = _header(head)
        if detached_payload is not None:
            if body:
                raise ValueError("payload segment must be empty for a detached payload")
            payload = detached_payload
            body = b64url(detached_payload)
        else:
            payload = b64url_decode(body)
        signature = b64url_decode(sig)
        if _stray_bits(sig) or _stray_bits(body):
            raise ValueError("non-canonical base64url (stray trailing bits)")
    except (MalformedInput, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(f"malformed token: {exc}") from None
    if not isinstance(header, dict):
        raise _fail("protected header is not a JSON object")
    return _Parts(header, payload, f"{head}.{body}".encode("ascii"), signature)


_HEADERS: pathcache.LruCache[dict[str, Any]] = pathcache.LruCache(256)


def _header(head: str) -> Any:
    """The protected header decoded from its segment (raises ``MalformedInput`` or
    ``ValueError``). A function of the segment's text only, so a header parsed once
    is remembered by it: a signer's header is the same for every token it signs
    within one second (same ``typ``, chain and ``iat``). Callers never mutate it."""
    known = _HEADERS.get(head)
    if known is not None:
        return known
    header = loads_shallow(b64url_decode(head).decode("utf-8"), object_pairs_hook=_no_duplicates)
    if _stray_bits(head):
        raise ValueError("non-canonical base64url (stray trailing bits)")
    if isinstance(header, dict):
        _HEADERS.put(head, header)
    return header


def _check_common(header: Mapping[str, Any], key_alg: str) -> None:
    for name in _FORBIDDEN:
        if name in header:
            raise _fail(f"header member {name!r} is not accepted")
    alg = header.get("alg")
    if alg not in _ALGORITHMS:
        raise _fail(f"alg {alg!r} is not accepted")
    if alg != key_alg:
        raise _fail(f"alg {alg!r} does not match the certificate key ({key_alg})")


def verify_with_key(
    token: str, key: PublicKey, *, detached_payload: bytes | None = None
) -> tuple[Mapping[str, Any], bytes]:
    """Structural and signature checks only, with a known key (no ``typ``/``x5c``/path).

    For tests against key-based vectors; protocol code uses :func:`verify_compact`.
    """
    parts = _split(token, detached_payload)
    try:
        key_alg = algorithm_for(key)
    except MalformedInput:
        raise _fail(f"unsupported key type {type(key).__name__}") from None
    _check_common(parts.header, key_alg)
    verify_raw(key_alg, key, parts.signing_input, parts.signature)
    return MappingProxyType(parts.header), parts.payload


def _chain(header: Mapping[str, Any]) -> tuple[x509.Certificate, ...]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= _MAX_X5C:
        raise _fail("x5c missing or not a list of 1 to 5 certificates")
    chain = []
    for item in x5c:
        if not isinstance(item, str):
            raise _fail("x5c entry is not a string")
        try:
            chain.append(pathcache.certificate_from_x5c(item))  # memoized by the text
        except ValueError as exc:
            raise _fail(f"x5c entry does not parse: {exc}") from None
    return tuple(chain)


class _LeafFacts(NamedTuple):
    key: PublicKey
    algorithm: str
    kid: str
    ed25519: bytes | None  # the raw public key, for an Ed25519 leaf (libsodium's input)


_LEAF_FACTS: pathcache.LruCache[_LeafFacts] = pathcache.LruCache(1024)


def _leaf_facts(leaf: x509.Certificate) -> _LeafFacts:
    """The leaf's public key object, its JWS algorithm, its ``kid`` and, for Ed25519, its
    raw bytes: functions of its DER only, so remembered by it (a signer's certificate is
    seen over and over)."""
    der = pathcache.der(leaf)
    known = _LEAF_FACTS.get(der)
    if known is not None:
        return known
    try:
        key = certificate_public_key(leaf)
        algorithm = algorithm_for(key)
    except MalformedInput:
        raise _fail("x5c leaf key is not Ed25519, P-256 or SM2") from None
    raw = key.public_bytes_raw() if isinstance(key, ed25519.Ed25519PublicKey) else None
    facts = _LeafFacts(key, algorithm, certificate_kid(leaf), raw)
    _LEAF_FACTS.put(der, facts)
    return facts


def verify_compact(
    token: str,
    bundle: TrustBundle,
    *,
    at: datetime,
    typ: str,
    purpose: Purpose = Purpose.SEAL,
    node_id: str | None = None,
    detached_payload: bytes | None = None,
) -> VerifiedJws:
    """Verify a compact JWS made by :func:`sign_compact`; raise :class:`InvalidSignature`."""
    parts = _split(token, detached_payload)
    header = parts.header
    chain = _chain(header)
    leaf = chain[0]
    facts = _leaf_facts(leaf)
    key_alg, kid = facts.algorithm, facts.kid
    _check_common(header, key_alg)
    if header.get("typ") != typ:
        raise _fail(f"typ {header.get('typ')!r} is not the expected {typ!r}")
    if header.get("kid") != kid:
        raise _fail("kid is not b64url(SHA-256(x5c leaf))")
    if "x5t#S256" in header and header["x5t#S256"] != kid:
        raise _fail("x5t#S256 is not the digest of the x5c leaf")
    iat = header.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat < 0:
        raise _fail("iat missing or not a non-negative integer")
    try:
        signed_at = datetime.fromtimestamp(iat, UTC)
    except (OverflowError, OSError, ValueError):
        raise _fail("iat out of range") from None
    if signed_at > at + MAX_CLOCK_SKEW:
        raise _fail(f"iat {signed_at.isoformat()} is in the future (now {at.isoformat()})")
    try:
        signer = validate_path(chain, bundle, purpose=purpose, at=at, node_id=node_id)
    except CertificateRejected as exc:
        raise _fail(f"certificate path rejected: {exc.reason}") from None
    if facts.ed25519 is not None:  # the usual case, straight to libsodium
        if not ed25519_verify_raw(facts.ed25519, parts.signature, parts.signing_input):
            raise _fail("signature does not verify")
    else:
        verify_raw(key_alg, facts.key, parts.signing_input, parts.signature)
    frozen = {**header, "x5c": tuple(header["x5c"])}
    return VerifiedJws(
        payload=parts.payload,
        header=MappingProxyType(frozen),
        signer=signer,
        signed_at=signed_at,
    )
