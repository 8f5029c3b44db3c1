"""SM2 keys and signatures, SM3 hashing: the primitives of the SM profile.

The national-cryptography (SM) profile signs with SM2 (GB/T 32918.2) over SM3
(GB/T 32905), with the signer id ``1234567812345678`` of GM/T 0009 (the default OpenSSL
and GmSSL use too), so ``Z_A`` enters every signature. The arithmetic is GmSSL 3's,
through the ``gmssl_pyx`` binding; SM3 is OpenSSL's, through ``cryptography``. Nothing
here computes on the curve in Python.

Keys travel in the standard encodings OpenSSL reads and writes: a public key as a
SubjectPublicKeyInfo (``id-ecPublicKey`` with the ``sm2`` curve 1.2.156.10197.1.301), a
private key as PKCS#8 around an RFC 5915 ``ECPrivateKey`` that carries its public key.
A signature is either DER ``SEQUENCE { r, s }`` (X.509, OpenSSL) or the fixed 64 bytes
``r || s`` (JWS, like ES256). Every malformed input raises
:class:`~signing.errors.MalformedInput`; a signature that does not verify is ``False``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

import gmssl_pyx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from signing.errors import MalformedInput

__all__ = [
    "DEFAULT_SIGNER_ID",
    "SM2_CURVE_OID",
    "SM2_WITH_SM3_OID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "der_to_raw",
    "raw_to_der",
    "sm3",
]

DEFAULT_SIGNER_ID = b"1234567812345678"
SM2_CURVE_OID = "1.2.156.10197.1.301"
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"

_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# AlgorithmIdentifier { id-ecPublicKey, sm2 } as DER, the same in SPKI and PKCS#8.
_ALG_ID = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


def sm3(data: bytes) -> bytes:
    """The SM3 digest (32 bytes) of ``data``."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


# --- a minimal DER reader/writer for the few fixed structures above ---------------------


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + value


def _read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, position after it)."""
    if pos + 2 > len(data):
        raise MalformedInput("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise MalformedInput("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise MalformedInput("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise MalformedInput("truncated DER")
    return tag, data[pos:end], end


def _sequence(data: bytes) -> list[tuple[int, bytes]]:
    """The elements of the single DER SEQUENCE that ``data`` must be."""
    tag, body, end = _read(data)
    if tag != 0x30 or end != len(data):
        raise MalformedInput("expected exactly one DER SEQUENCE")
    items, pos = [], 0
    while pos < len(body):
        t, v, pos = _read(body, pos)
        items.append((t, v))
    return items


def _pem_body(data: bytes, label: str) -> bytes:
    match = _PEM.search(data)
    if match is None or match.group(1).decode() != label:
        raise MalformedInput(f"no PEM {label} block found")
    try:
        return base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError as exc:
        raise MalformedInput(f"unparsable PEM {label}") from exc


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    text = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
    return text.encode("ascii")


def raw_to_der(signature: bytes) -> bytes:
    """``r || s`` (64 bytes) to DER ``SEQUENCE { r, s }``."""
    if len(signature) != 64:
        raise MalformedInput("an SM2 r||s signature is 64 bytes")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return encode_dss_signature(r, s)


def der_to_raw(signature: bytes) -> bytes:
    """DER ``SEQUENCE { r, s }`` to ``r || s`` (64 bytes); refuses r, s outside [1, n-1]."""
    try:
        r, s = decode_dss_signature(signature)
    except ValueError as exc:
        raise MalformedInput("unparsable DER SM2 signature") from exc
    if not (0 < r < _N and 0 < s < _N) or encode_dss_signature(r, s) != signature:
        raise MalformedInput("SM2 signature values out of range or not canonical DER")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key: the point ``x || y`` (64 bytes), checked to be on the curve."""

    point: bytes

    def __post_init__(self) -> None:
        try:
            normalized = gmssl_pyx.normalize_sm2_public_key(self.point)
        except gmssl_pyx.InvalidValueError:
            raise MalformedInput("not an SM2 public key (point off the curve)") from None
        object.__setattr__(self, "point", normalized)

    @classmethod
    def from_der(cls, spki: bytes) -> Sm2PublicKey:
        """Load a SubjectPublicKeyInfo with the SM2 curve."""
        items = _sequence(spki)
        if len(items) != 2 or items[0] != (0x30, _ALG_ID[2:]) or items[1][0] != 0x03:
            raise MalformedInput("not an SM2 SubjectPublicKeyInfo")
        bits = items[1][1]
        if len(bits) != 66 or bits[:2] != b"\x00\x04":
            raise MalformedInput("SM2 public key is not an uncompressed point")
        return cls(bits[2:])

    @classmethod
    def from_pem(cls, data: bytes) -> Sm2PublicKey:
        return cls.from_der(_pem_body(data, "PUBLIC KEY"))

    def to_der(self) -> bytes:
        return _tlv(0x30, _ALG_ID + _tlv(0x03, b"\x00\x04" + self.point))

    def to_pem(self) -> bytes:
        return _pem("PUBLIC KEY", self.to_der())

    def verify(
        self, signature: bytes, message: bytes, *, signer_id: bytes = DEFAULT_SIGNER_ID
    ) -> bool:
        """Check a DER SM2-with-SM3 signature of ``message`` under ``signer_id``."""
        try:
            der_to_raw(signature)  # refuse non-canonical or out-of-range encodings
            return bool(gmssl_pyx.sm2_verify(self.point, message, signature, signer_id))
        except (MalformedInput, gmssl_pyx.GmsslInnerError):
            return False

    def verify_raw(
        self, signature: bytes, message: bytes, *, signer_id: bytes = DEFAULT_SIGNER_ID
    ) -> bool:
        """Check an ``r || s`` (64-byte) SM2-with-SM3 signature of ``message``."""
        try:
            der = raw_to_der(signature)
        except MalformedInput:
            return False
        return self.verify(der, message, signer_id=signer_id)


@dataclass(frozen=True)
class Sm2PrivateKey:
    """An SM2 private key (32-byte secret) together with its public key."""

    secret: bytes = field(repr=False)
    public_key: Sm2PublicKey

    def __post_init__(self) -> None:
        d = int.from_bytes(self.secret, "big")
        if len(self.secret) != 32 or not 0 < d < _N - 1:
            raise MalformedInput("an SM2 private key is a 32-byte integer in [1, n-2]")
        probe = b"tongban SM2 key pair check"
        if not self.public_key.verify(self.sign(probe), probe):
            raise MalformedInput("the SM2 private key does not match its public key")

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        public, secret = gmssl_pyx.sm2_key_generate()
        return cls(secret, Sm2PublicKey(public))

    @classmethod
    def from_der(cls, pkcs8: bytes) -> Sm2PrivateKey:
        """Load PKCS#8 holding an ``ECPrivateKey`` on the SM2 curve with its public key."""
        items = _sequence(pkcs8)
        if (
            len(items) != 3
            or items[0] != (0x02, b"\x00")
            or items[1] != (0x30, _ALG_ID[2:])
            or items[2][0] != 0x04
        ):
            raise MalformedInput("not an SM2 PKCS#8 private key")
        inner = _sequence(items[2][1])
        if len(inner) < 2 or inner[0] != (0x02, b"\x01") or inner[1][0] != 0x04:
            raise MalformedInput("not an RFC 5915 ECPrivateKey")
        secret, public = inner[1][1], None
        for tag, value in inner[2:]:
            if tag == 0xA0 and value != _ALG_ID[11:]:
                raise MalformedInput("ECPrivateKey names a curve other than SM2")
            if tag == 0xA1:
                t, bits, end = _read(value)
                if t != 0x03 or end != len(value) or len(bits) != 66 or bits[:2] != b"\x00\x04":
                    raise MalformedInput("ECPrivateKey public key is not an uncompressed point")
                public = Sm2PublicKey(bits[2:])
        if public is None:
            raise MalformedInput("the SM2 private key does not carry its public key")
        return cls(secret, public)

    @classmethod
    def from_pem(cls, data: bytes) -> Sm2PrivateKey:
        return cls.from_der(_pem_body(data, "PRIVATE KEY"))

    def to_der(self) -> bytes:
        ec_key = _tlv(
            0x30,
            _tlv(0x02, b"\x01")
            + _tlv(0x04, self.secret)
            + _tlv(0xA1, _tlv(0x03, b"\x00\x04" + self.public_key.point)),
        )
        return _tlv(0x30, _tlv(0x02, b"\x00") + _ALG_ID + _tlv(0x04, ec_key))

    def to_pem(self) -> bytes:
        return _pem("PRIVATE KEY", self.to_der())

    def sign(self, message: bytes, *, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
        """A DER SM2-with-SM3 signature of ``message`` (``Z_A`` over ``signer_id``)."""
        return bytes(gmssl_pyx.sm2_sign(self.secret, self.public_key.point, message, signer_id))

    def sign_raw(self, message: bytes, *, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
        """The same signature as ``r || s`` (64 bytes), the JWS form."""
        return der_to_raw(self.sign(message, signer_id=signer_id))
