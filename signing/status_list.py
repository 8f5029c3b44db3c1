"""W3C Bitstring Status List v1.0: revocation and suspension of e-licences.

An issuing office keeps one bitstring per status purpose (``revocation``,
``suspension``). Each licence names a position in each list; bit 1 means "revoked"
(resp. "suspended"). The list is published as a status list credential: a ``vc+jwt``
signed with the same office seal that signs the licences, so a verifier holding only the
trust bundle can check it offline.

Encoding (the spec's "Bitstring Generation Algorithm"):

- the bitstring is at least 131,072 bits (16 KiB) long and a whole number of bytes;
- index 0 is the left-most bit of the first byte (``byte[i // 8] >> (7 - i % 8) & 1``);
- ``encodedList`` = ``"u"`` (multibase base64url) + base64url without padding of the
  GZIP (RFC 1952) compression of the bitstring. Compression here is deterministic
  (mtime 0, level 9) so the same list always encodes to the same text; decoders accept
  any valid GZIP member.

Revocation is permanent (spec §"statusPurpose"): a revocation bit, once set, is never
cleared; :func:`reinstate` exists only for suspension.

Errors: malformed input raises :class:`~signing.errors.MalformedInput`; a list credential
that cannot be relied on raises :class:`StatusListRejected` with a stable ``reason``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from signing._claims import (
    as_object,
    check_url,
    from_numeric,
    issuer_urn,
    json_object,
    node_from_urn,
    numeric,
    unverified_claims,
    x5c_chain,
)
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.encoding import b64url, b64url_decode, canonical_json
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput, SigningError

if TYPE_CHECKING:
    from signing.keys import Signer

__all__ = [
    "MIN_BITS",
    "StatusList",
    "StatusListCredential",
    "StatusListRejected",
    "StatusPurpose",
    "parse_status_list",
    "reinstate",
    "revoke",
    "sign_status_list",
    "suspend",
    "verify_status_list",
]

MIN_BITS = 131_072
"""Minimum bitstring length in bits (16 KiB), as the spec requires for herd privacy."""

_MAX_BYTES = 16 * 1024 * 1024  # refuse decompressing beyond 16 MiB (128 Mi entries)
VC_TYP = "vc+jwt"


class StatusPurpose(StrEnum):
    """What a set bit means."""

    REVOCATION = "revocation"
    SUSPENSION = "suspension"


class StatusListRejected(SigningError):
    """A status list credential cannot be relied on; ``reason`` is a stable code.

    Reasons: ``malformed``, ``signature``, ``chain``, ``issuer-mismatch``,
    ``url-mismatch``, ``purpose-mismatch``, ``not-yet-valid``, ``expired``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StatusList:
    """An immutable bitstring for one purpose; updates return a new list."""

    purpose: StatusPurpose
    bits: bytes

    def __post_init__(self) -> None:
        if len(self.bits) * 8 < MIN_BITS:
            raise MalformedInput(f"a status list holds at least {MIN_BITS} bits")
        if len(self.bits) > _MAX_BYTES:  # what no verifier decompresses (§9.2)
            raise MalformedInput(f"a status list holds at most {_MAX_BYTES * 8} bits")

    @classmethod
    def empty(cls, purpose: StatusPurpose, size_bits: int = MIN_BITS) -> StatusList:
        """All-zero list of ``size_bits`` bits (a multiple of 8, at least 131,072)."""
        if size_bits % 8:
            raise MalformedInput("a status list is a whole number of bytes")
        return cls(purpose=purpose, bits=bytes(size_bits // 8))

    @property
    def size(self) -> int:
        """Number of entries (bits)."""
        return len(self.bits) * 8

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.size:
            raise MalformedInput(f"status index {index!r} outside 0..{self.size - 1}")

    def get(self, index: int) -> bool:
        """The bit at ``index`` (index 0 = most significant bit of byte 0)."""
        self._check_index(index)
        return bool(self.bits[index // 8] >> (7 - index % 8) & 1)

    def with_bit(self, index: int, value: bool) -> StatusList:
        """A copy with bit ``index`` set to ``value``."""
        self._check_index(index)
        data = bytearray(self.bits)
        mask = 1 << (7 - index % 8)
        if value:
            data[index // 8] |= mask
        else:
            data[index // 8] &= ~mask & 0xFF
        return StatusList(purpose=self.purpose, bits=bytes(data))

    def set_indices(self) -> tuple[int, ...]:
        """Indices whose bit is 1, ascending."""
        return tuple(
            i * 8 + b
            for i, byte in enumerate(self.bits)
            if byte
            for b in range(8)
            if byte >> (7 - b) & 1
        )

    def encode(self) -> str:
        """The ``encodedList`` text: ``u`` + base64url(GZIP(bits))."""
        return "u" + b64url(gzip.compress(self.bits, compresslevel=9, mtime=0))

    @classmethod
    def decode(cls, purpose: StatusPurpose, encoded: str) -> StatusList:
        """Parse ``encodedList``; refuses a missing ``u``, bad GZIP and short lists."""
        if not isinstance(encoded, str) or not encoded.startswith("u"):
            raise MalformedInput("encodedList must start with the multibase prefix 'u'")
        compressed = b64url_decode(encoded[1:])
        inflater = zlib.decompressobj(wbits=31)  # GZIP container only
        try:
            bits = inflater.decompress(compressed, _MAX_BYTES)
        except zlib.error as exc:
            raise MalformedInput("encodedList is not GZIP data") from exc
        if inflater.unconsumed_tail:
            raise MalformedInput("status list larger than 16 MiB")
        if not inflater.eof or inflater.unused_data:
            raise MalformedInput("encodedList is not exactly one GZIP member")
        return cls(purpose=purpose, bits=bits)


def _update(lst: StatusList, purpose: StatusPurpose, index: int, value: bool) -> StatusList:
    if lst.purpose is not purpose:
        raise MalformedInput(f"this is a {lst.purpose} list, not a {purpose} list")
    return lst.with_bit(index, value)


def revoke(lst: StatusList, index: int) -> StatusList:
    """Set the revocation bit ``index`` (permanent)."""
    return _update(lst, StatusPurpose.REVOCATION, index, True)


def suspend(lst: StatusList, index: int) -> StatusList:
    """Set the suspension bit ``index``."""
    return _update(lst, StatusPurpose.SUSPENSION, index, True)


def reinstate(lst: StatusList, index: int) -> StatusList:
    """Clear the suspension bit ``index``. Revocation cannot be undone."""
    return _update(lst, StatusPurpose.SUSPENSION, index, False)


@dataclass(frozen=True)
class StatusListCredential:
    """A status list as its issuer publishes it (``url`` is where it is served)."""

    issuer_node: str
    url: str
    status_list: StatusList
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime

    def __post_init__(self) -> None:
        issuer_urn(self.issuer_node)
        check_url(self.url)
        for t in (self.issued_at, self.valid_from, self.valid_until):
            if t.tzinfo is None:
                raise MalformedInput("status list times must be timezone-aware")
        if self.valid_until <= self.valid_from:
            raise MalformedInput("status list validUntil must be after validFrom")

    @property
    def purpose(self) -> StatusPurpose:
        return self.status_list.purpose

    def to_claims(self) -> dict[str, Any]:
        """The JWT claims set (see docs/protocol.md §9)."""
        return {
            "iss": issuer_urn(self.issuer_node),
            "jti": self.url,
            "iat": numeric(self.issued_at),
            "nbf": numeric(self.valid_from),
            "exp": numeric(self.valid_until),
            "vc": {
                "type": ["VerifiableCredential", "BitstringStatusListCredential"],
                "credentialSubject": {
                    "id": self.url + "#list",
                    "type": "BitstringStatusList",
                    "statusPurpose": str(self.purpose),
                    "encodedList": self.status_list.encode(),
                },
            },
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> StatusListCredential:
        vc = as_object(claims.get("vc"), "vc")
        if vc.get("type") != ["VerifiableCredential", "BitstringStatusListCredential"]:
            raise MalformedInput("vc.type is not a BitstringStatusListCredential")
        subject = as_object(vc.get("credentialSubject"), "vc.credentialSubject")
        url = claims.get("jti")
        if not isinstance(url, str) or subject.get("id") != url + "#list":
            raise MalformedInput("credentialSubject.id must be the list URL + '#list'")
        if subject.get("type") != "BitstringStatusList":
            raise MalformedInput("credentialSubject.type must be BitstringStatusList")
        try:
            purpose = StatusPurpose(str(subject.get("statusPurpose")))
        except ValueError:
            raise MalformedInput("statusPurpose must be revocation or suspension") from None
        encoded = subject.get("encodedList")
        if not isinstance(encoded, str):
            raise MalformedInput("encodedList missing")
        return cls(
            issuer_node=node_from_urn(claims.get("iss")),
            url=url,
            status_list=StatusList.decode(purpose, encoded),
            issued_at=from_numeric(claims.get("iat"), "iat"),
            valid_from=from_numeric(claims.get("nbf"), "nbf"),
            valid_until=from_numeric(claims.get("exp"), "exp"),
        )


def sign_status_list(credential: StatusListCredential, signer: Signer, *, at: datetime) -> str:
    """The list credential as a compact ``vc+jwt`` sealed by ``signer``."""
    from signing.jws import sign_compact

    token: str = sign_compact(canonical_json(credential.to_claims()), signer, typ=VC_TYP, at=at)
    return token


def parse_status_list(token: str) -> StatusListCredential:
    """Decode a list credential WITHOUT verifying it (to edit one's own list, or index
    files by URL before verification)."""
    return StatusListCredential.from_claims(unverified_claims(token))


def verify_status_list(
    token: str,
    bundle: TrustBundle,
    *,
    at: datetime,
    issuer_node: str,
    url: str,
    purpose: StatusPurpose,
) -> StatusListCredential:
    """Verify a list credential for use by a licence of ``issuer_node``.

    Checks the seal signature and certificate path at ``at`` (the signer must be
    ``issuer_node``), that ``iss`` is ``issuer_node``, that the list is the one at
    ``url`` with purpose ``purpose``, and that ``at`` lies in [nbf, exp].
    Raises :class:`StatusListRejected`.
    """
    from signing.jws import verify_compact

    try:
        validate_path(x5c_chain(token), bundle, purpose=Purpose.SEAL, at=at)
    except MalformedInput as exc:
        raise StatusListRejected("malformed", f"status list: {exc}") from None
    except CertificateRejected as exc:
        raise StatusListRejected("chain", f"status list seal {exc.reason}: {exc}") from None
    try:
        verified = verify_compact(token, bundle, at=at, typ=VC_TYP, purpose=Purpose.SEAL)
    except (InvalidSignature, MalformedInput):
        raise StatusListRejected("signature", "status list signature does not verify") from None
    try:
        credential = StatusListCredential.from_claims(json_object(verified.payload))
    except MalformedInput as exc:
        raise StatusListRejected("malformed", f"status list: {exc}") from None
    if credential.issuer_node != issuer_node or verified.signer.node_id != issuer_node:
        raise StatusListRejected(
            "issuer-mismatch",
            f"status list issued by {credential.issuer_node} (sealed by "
            f"{verified.signer.node_id}), licence issued by {issuer_node}",
        )
    if credential.url != url:
        raise StatusListRejected("url-mismatch", f"status list is {credential.url}, not {url}")
    if credential.purpose is not purpose:
        raise StatusListRejected(
            "purpose-mismatch", f"status list is for {credential.purpose}, not {purpose}"
        )
    if at < credential.valid_from:
        raise StatusListRejected("not-yet-valid", "status list is not valid yet")
    if at >= credential.valid_until:
        raise StatusListRejected("expired", "status list has expired; fetch a fresh one")
    return credential
