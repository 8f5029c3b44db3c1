"""Timestamp requests and answers for checkpoint notes (pure).

The imprint is SHA-256 over the exact bytes stamped (a checkpoint's signed note as
stored). :func:`check_response` accepts an answer only when its status is *granted*, its
signature verifies through a chain to one of the configured TSA roots at the token's
``genTime``, the signer certificate has the critical ``timeStamping`` extended key usage,
and the imprint (and the nonce, when one was sent) matches. Every refusal is one
:class:`TimestampError` whose message says which check failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

__all__ = [
    "Stamp",
    "TimestampError",
    "TsaTrust",
    "TsaUnavailable",
    "build_request",
    "check_response",
]


class TimestampError(Exception):
    """A timestamp answer (or the TSA trust) is not acceptable."""


class TsaUnavailable(TimestampError):
    """The TSA could not be asked (transport, timeout, HTTP error)."""


@dataclass(frozen=True)
class TsaTrust:
    """The certificates a TSA's tokens must chain to: roots, and optional intermediates."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            raise TimestampError("the TSA trust holds no root certificate")

    @classmethod
    def from_pem(cls, data: bytes) -> TsaTrust:
        """Self-signed certificates in ``data`` are roots, the others intermediates."""
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise TimestampError("the TSA trust is not a PEM certificate list") from exc
        roots = tuple(c for c in certs if c.subject == c.issuer)
        return cls(roots, tuple(c for c in certs if c.subject != c.issuer))


@dataclass(frozen=True)
class Stamp:
    """What a verified token says."""

    gen_time: datetime
    serial: int
    tsa: str  # the TSA certificate's subject (RFC 4514)
    response: bytes  # the DER TimeStampResp as the TSA sent it
    tsa_not_after: datetime | None = None  # when the TSA's signing certificate ends


def imprint(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def build_request(data: bytes) -> tuple[bytes, int]:
    """A DER TimeStampReq for ``data`` asking for the TSA certificate; (request, nonce)."""
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .cert_request(cert_request=True)
        .nonce(nonce=True)
        .build()
    )
    nonce = request.nonce
    if nonce is None:  # pragma: no cover - the builder was asked for one
        raise TimestampError("the timestamp request carries no nonce")
    return request.as_bytes(), nonce


def _signer(certs: Sequence[bytes], serial: int, issuer: x509.Name) -> x509.Certificate | None:
    for der in certs:
        cert = x509.load_der_x509_certificate(der)
        if cert.serial_number == serial and cert.issuer == issuer:
            return cert
    return None


def check_response(
    response: bytes, data: bytes, trust: TsaTrust, *, nonce: int | None = None
) -> Stamp:
    """Verify a DER TimeStampResp over ``data`` against ``trust`` (see module doc).

    Whatever is wrong with the answer is a :class:`TimestampError`: it comes from outside
    (a TSA, often over plain HTTP, or a file in a dossier), and the parser raises other
    errors for tokens that decode but are malformed inside."""
    try:
        return _check_response(response, data, trust, nonce)
    except TimestampError:
        raise
    except Exception as exc:
        raise TimestampError(f"the timestamp answer is malformed: {exc}") from exc


def _check_response(response: bytes, data: bytes, trust: TsaTrust, nonce: int | None) -> Stamp:
    try:
        decoded = decode_timestamp_response(response)
    except ValueError as exc:
        raise TimestampError("the timestamp answer is not a DER TimeStampResp") from exc
    builder = VerifierBuilder()
    for root in trust.roots:
        builder = builder.add_root_certificate(root)
    for cert in trust.intermediates:
        builder = builder.add_intermediate_certificate(cert)
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify_message(decoded, data)
    except VerificationError as exc:
        raise TimestampError(f"timestamp token refused: {exc}") from exc
    info = decoded.tst_info
    signer = next(iter(decoded.signed_data.signer_infos))
    gen_time = info.gen_time
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=UTC)
    tsa = _signer(list(decoded.signed_data.certificates), signer.serial_number, signer.issuer)
    return Stamp(
        gen_time=gen_time,
        serial=info.serial_number,
        tsa="" if tsa is None else tsa.subject.rfc4514_string(),
        response=response,
        tsa_not_after=None if tsa is None else tsa.not_valid_after_utc,
    )
