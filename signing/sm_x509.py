"""SM2-with-SM3 certificates and CRLs (GM/T 0015 profile) for the SM profile.

``cryptography`` parses these certificates and CRLs (names, validity, extensions, the
TBS bytes and the signature) but has no SM2: it can neither sign them nor check their
signatures nor load their keys. This module fills exactly that gap and nothing more:

- :func:`sm2_public_key` reads the SM2 key out of a certificate's SubjectPublicKeyInfo;
- :func:`sm2_signed` / :func:`verify_certificate` / :func:`verify_crl` check an
  ``SM2-with-SM3`` (1.2.156.10197.1.501, no parameters) signature over the TBS bytes
  with the issuer's SM2 key and the default signer id ``1234567812345678``, as OpenSSL
  3 and GmSSL do for certificates;
- :func:`build_certificate` / :func:`build_crl` assemble the DER of an X.509 v3
  certificate / v2 CRL from ``cryptography`` values (names, extensions) and sign it.

The extension values are DER-encoded by ``cryptography`` itself, so the SM profile's
certificates carry exactly the extensions of the default profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509

from signing.errors import MalformedInput
from signing.sm2 import SM2_WITH_SM3_OID, Sm2PrivateKey, Sm2PublicKey, _sequence, _tlv, sm3

__all__ = [
    "build_certificate",
    "build_crl",
    "key_identifier",
    "sm2_public_key",
    "sm2_signed",
    "verify_certificate",
    "verify_crl",
]

_SIG_ALG = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a811ccf55018375")))  # 1.2.156.10197.1.501


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _time(at: datetime) -> bytes:
    at = at.astimezone(UTC)
    if 1950 <= at.year < 2050:  # RFC 5280 4.1.2.5: UTCTime through 2049
        return _tlv(0x17, at.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, at.strftime("%Y%m%d%H%M%SZ").encode())


def _extensions(extensions: Sequence[x509.Extension[x509.ExtensionType]]) -> bytes:
    items = b""
    for ext in extensions:
        critical = _tlv(0x01, b"\xff") if ext.critical else b""
        items += _tlv(
            0x30, _oid(ext.oid.dotted_string) + critical + _tlv(0x04, ext.value.public_bytes())
        )
    return _tlv(0x30, items)


def _sign(tbs: bytes, key: Sm2PrivateKey) -> bytes:
    return _tlv(0x30, tbs + _SIG_ALG + _tlv(0x03, b"\x00" + key.sign(tbs)))


def key_identifier(key: Sm2PublicKey) -> bytes:
    """Subject/authority key identifier: the leftmost 160 bits of SM3 of the public key
    bits (RFC 7093 method with SM3 in place of SHA-256)."""
    return sm3(b"\x04" + key.point)[:20]


def sm2_signed(obj: x509.Certificate | x509.CertificateRevocationList) -> bool:
    """True when the certificate or CRL claims an SM2-with-SM3 signature."""
    return obj.signature_algorithm_oid.dotted_string == SM2_WITH_SM3_OID


def sm2_public_key(cert: x509.Certificate) -> Sm2PublicKey | None:
    """The SM2 public key of ``cert``, or None when its key is not on the SM2 curve."""
    if cert.public_key_algorithm_oid.dotted_string != "1.2.840.10045.2.1":
        return None
    try:
        items = _sequence(cert.tbs_certificate_bytes)
        index = 6 if items[0][0] == 0xA0 else 5  # after [0] version (v3) when present
        tag, spki = items[index]
        return Sm2PublicKey.from_der(_tlv(tag, spki))
    except (MalformedInput, IndexError):
        return None


def _signature_ok(
    obj: x509.Certificate | x509.CertificateRevocationList, tbs: bytes, issuer: x509.Certificate
) -> bool:
    if not sm2_signed(obj):
        return False
    key = sm2_public_key(issuer)
    return key is not None and key.verify(obj.signature, tbs)


def verify_certificate(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``cert`` names ``issuer`` as issuer and carries its SM2-with-SM3 signature."""
    return cert.issuer == issuer.subject and _signature_ok(cert, cert.tbs_certificate_bytes, issuer)


def verify_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """True when ``crl`` carries ``issuer``'s SM2-with-SM3 signature (names not compared)."""
    return _signature_ok(crl, crl.tbs_certlist_bytes, issuer)


def build_certificate(
    *,
    issuer: x509.Name,
    subject: x509.Name,
    public_key: bytes,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    extensions: Sequence[x509.Extension[x509.ExtensionType]],
    issuer_key: Sm2PrivateKey,
) -> x509.Certificate:
    """An X.509 v3 certificate for the SubjectPublicKeyInfo DER ``public_key`` (any key
    type), signed SM2-with-SM3 by ``issuer_key``."""
    if not 0 < serial < 1 << 159:
        raise ValueError("serial must be positive and at most 20 octets")
    tbs = _tlv(
        0x30,
        _tlv(0xA0, _integer(2))
        + _integer(serial)
        + _SIG_ALG
        + issuer.public_bytes()
        + _tlv(0x30, _time(not_before) + _time(not_after))
        + subject.public_bytes()
        + public_key
        + _tlv(0xA3, _extensions(extensions)),
    )
    return x509.load_der_x509_certificate(_sign(tbs, issuer_key))


def build_crl(
    *,
    issuer: x509.Name,
    last_update: datetime,
    next_update: datetime,
    revoked: Sequence[tuple[int, datetime]],
    extensions: Sequence[x509.Extension[x509.ExtensionType]],
    issuer_key: Sm2PrivateKey,
) -> x509.CertificateRevocationList:
    """An X.509 v2 CRL listing ``revoked`` (serial, revocation date), signed
    SM2-with-SM3 by ``issuer_key``."""
    entries = b"".join(_tlv(0x30, _integer(serial) + _time(at)) for serial, at in revoked)
    tbs = _tlv(
        0x30,
        _integer(1)
        + _SIG_ALG
        + issuer.public_bytes()
        + _time(last_update)
        + _time(next_update)
        + (_tlv(0x30, entries) if revoked else b"")
        + _tlv(0xA0, _extensions(extensions)),
    )
    return x509.load_der_x509_crl(_sign(tbs, issuer_key))
