"""HPKE (RFC 9180) base mode: sealing small secrets to a node's public keys.

Two suites, both HKDF-SHA256 and AES-256-GCM, differing in the KEM:

- ``x25519-sha256-aes256gcm``: DHKEM(X25519, HKDF-SHA256) (KEM id 0x0020);
- ``mlkem768x25519-sha256-aes256gcm``: the hybrid ML-KEM-768 + X25519 KEM of
  ``cryptography`` — X-Wing (draft-connolly-cfrg-xwing-kem), KEM id 0x647A
  ("MLKEM768-X25519" in draft-ietf-hpke-pq) — for confidentiality that survives a
  quantum adversary. Only the private key *storage* differs from X-Wing's 32-byte seed
  (see below); the wire bytes are X-Wing's (pinned by tests/sealing/test_hpke_pq_spec.py).

Wire form of a sealed message (``hpke_seal`` output, what ``Suite.encrypt`` returns):
``enc || ct`` where ``enc`` is the KEM encapsulation (32 bytes for X25519, 1120 bytes
for the hybrid: 1088 ML-KEM-768 ciphertext + 32 X25519 ephemeral public key) and ``ct``
is the AES-256-GCM output of the single-shot context (sequence number 0, empty AAD):
plaintext length + 16-byte tag.

Public key bytes: X25519: the 32-byte public key (RFC 7748). Hybrid: the 1184-byte
ML-KEM-768 encapsulation key followed by the 32-byte X25519 public key (1216 bytes).

``kid``: ``b64url(SHA-256(suite_name_ascii || 0x00 || public_bytes)[:16])`` — 22
characters naming one (suite, public key) pair.

Private key files (PEM, mode 0600 on disk):

- X25519: the standard PKCS#8 ``PRIVATE KEY`` block (OpenSSL reads it);
- hybrid: a ``TONGBAN MLKEM768X25519 PRIVATE KEY`` block holding 96 bytes: the 64-byte
  ML-KEM-768 seed (FIPS 203 ``d || z``) followed by the 32-byte X25519 private key.

``info`` binds a sealed secret to its use: see :func:`seal_info`.

**The SM profile's suite** ``sm2-sm4gcm`` is not HPKE but fills the same role, so it is
a member of :class:`HpkeSuite` and goes wherever an HPKE key goes (descriptors, packets,
sealed files): :func:`hpke_seal` / :func:`hpke_open` dispatch to
:func:`signing.sm_seal.sm2_seal` / :func:`~signing.sm_seal.sm2_open` (SM2 encryption of a
fresh SM4 key, SM4-GCM of the plaintext with ``info`` as associated data). Public key
bytes: the 65-byte uncompressed SM2 point ``0x04 || x || y``; private key file: the SM2
PKCS#8 ``PRIVATE KEY`` PEM of :mod:`signing.sm2` (``enc-sm2.key``); ``secret`` holds
``d || x || y`` (96 bytes), since the public point is not derived here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)

from signing.encoding import b64url, b64url_decode, canonical_json
from signing.errors import DecryptionFailed, MalformedInput
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey
from signing.sm_seal import sm2_open, sm2_seal

__all__ = [
    "HpkePrivateKey",
    "HpkePublicKey",
    "HpkeSuite",
    "generate_hpke_key",
    "hpke_open",
    "hpke_seal",
    "seal_info",
]

_log = logging.getLogger("tongban.signing")

_TAG_LEN = 16
_X25519_LEN = 32
_MLKEM_SEED_LEN = 64
_MLKEM_PUB_LEN = 1184
_HYBRID_PEM_LABEL = "TONGBAN MLKEM768X25519 PRIVATE KEY"
_INFO_PREFIX = b"tongban/v1 "
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9.-]*")


class HpkeSuite(StrEnum):
    """The HPKE suites tongban seals with; the value is the wire name."""

    X25519 = "x25519-sha256-aes256gcm"
    MLKEM768_X25519 = "mlkem768x25519-sha256-aes256gcm"
    SM2_SM4GCM = "sm2-sm4gcm"  # the SM profile (not HPKE; module docstring)


_KEMS = {HpkeSuite.X25519: KEM.X25519, HpkeSuite.MLKEM768_X25519: KEM.MLKEM768_X25519}
_PUBLIC_LEN = {
    HpkeSuite.X25519: _X25519_LEN,
    HpkeSuite.MLKEM768_X25519: _MLKEM_PUB_LEN + 32,
    HpkeSuite.SM2_SM4GCM: 65,
}
_SECRET_LEN = {
    HpkeSuite.X25519: _X25519_LEN,
    HpkeSuite.MLKEM768_X25519: _MLKEM_SEED_LEN + 32,
    HpkeSuite.SM2_SM4GCM: 96,
}


def _suite(suite: HpkeSuite) -> Suite:
    return Suite(_KEMS[suite], KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def enc_length(suite: HpkeSuite) -> int:
    """Length in bytes of the KEM encapsulation that opens every sealed message."""
    return int(_KEMS[suite].enc_length())


def seal_info(purpose: str, context: Mapping[str, str]) -> bytes:
    """The HPKE ``info`` for ``purpose``: ``b"tongban/v1 " || purpose || 0x00 || JCS(context)``.

    ``purpose`` is lowercase ASCII (letters, digits, ``.``, ``-``), e.g. ``"file-key"``;
    ``context`` maps strings to strings and is serialized as canonical JSON, so the
    sender and the recipient derive the same bytes from the same facts.
    """
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError(f"HPKE purpose {purpose!r} is not lowercase ASCII")
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("HPKE info context maps strings to strings")
    return _INFO_PREFIX + purpose.encode("ascii") + b"\x00" + canonical_json(dict(context))


@dataclass(frozen=True)
class HpkePublicKey:
    """A recipient public key of one suite, as published in a node descriptor."""

    suite: HpkeSuite
    public_bytes: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, HpkeSuite):
            raise MalformedInput("unknown HPKE suite")
        if len(self.public_bytes) != _PUBLIC_LEN[self.suite]:
            raise MalformedInput(f"an {self.suite} public key has {_PUBLIC_LEN[self.suite]} bytes")
        self._key()  # refuse bytes that are not a valid key of the suite

    @functools.cached_property
    def kid(self) -> str:
        """``b64url(SHA-256(suite || 0x00 || public_bytes)[:16])`` (22 characters;
        computed once per object: the bytes are immutable)."""
        digest = hashlib.sha256(self.suite.value.encode("ascii") + b"\x00" + self.public_bytes)
        return b64url(digest.digest()[:16])

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "suite": self.suite.value, "pub": b64url(self.public_bytes)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HpkePublicKey:
        """Parse ``{"kid", "suite", "pub"}``; a ``kid`` that does not match is refused."""
        if not isinstance(obj, Mapping) or set(obj) != {"kid", "suite", "pub"}:
            raise MalformedInput('an HPKE key is {"kid", "suite", "pub"}')
        try:
            suite = HpkeSuite(obj["suite"])
        except ValueError:
            raise MalformedInput(f"unknown HPKE suite {obj['suite']!r}") from None
        key = cls(suite, b64url_decode(obj["pub"]))
        if obj["kid"] != key.kid:
            raise MalformedInput("HPKE key kid does not match its public key")
        return key

    def _key(self) -> x25519.X25519PublicKey | MLKEM768X25519PublicKey | Sm2PublicKey:
        return self._key_object

    @functools.cached_property
    def _key_object(self) -> x25519.X25519PublicKey | MLKEM768X25519PublicKey | Sm2PublicKey:
        """The parsed key, built once per object (the bytes are immutable)."""
        if self.suite is HpkeSuite.SM2_SM4GCM:
            if self.public_bytes[:1] != b"\x04":
                raise MalformedInput("an sm2-sm4gcm public key is an uncompressed point")
            return Sm2PublicKey(self.public_bytes[1:])  # refuses a point off the curve
        try:
            if self.suite is HpkeSuite.X25519:
                return x25519.X25519PublicKey.from_public_bytes(self.public_bytes)
            pq = mlkem.MLKEM768PublicKey.from_public_bytes(self.public_bytes[:_MLKEM_PUB_LEN])
            ec = x25519.X25519PublicKey.from_public_bytes(self.public_bytes[_MLKEM_PUB_LEN:])
        except ValueError as exc:
            raise MalformedInput(f"not an {self.suite} public key") from exc
        return MLKEM768X25519PublicKey(pq, ec)


@dataclass(frozen=True)
class HpkePrivateKey:
    """A recipient private key; ``secret`` is the raw key material (see module docs)."""

    suite: HpkeSuite
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, HpkeSuite):
            raise MalformedInput("unknown HPKE suite")
        if len(self.secret) != _SECRET_LEN[self.suite]:
            raise MalformedInput(f"an {self.suite} private key has {_SECRET_LEN[self.suite]} bytes")
        if self.suite is HpkeSuite.SM2_SM4GCM:
            self._sm2()  # refuses a secret that does not match its point

    def public_key(self) -> HpkePublicKey:
        if self.suite is HpkeSuite.SM2_SM4GCM:
            return HpkePublicKey(self.suite, b"\x04" + self.secret[32:])
        if self.suite is HpkeSuite.X25519:
            pub = x25519.X25519PrivateKey.from_private_bytes(self.secret).public_key()
            return HpkePublicKey(self.suite, pub.public_bytes_raw())
        pq, ec = self._parts()
        raw = pq.public_key().public_bytes_raw() + ec.public_key().public_bytes_raw()
        return HpkePublicKey(self.suite, raw)

    def to_pem(self) -> bytes:
        if self.suite is HpkeSuite.SM2_SM4GCM:
            return self._sm2().to_pem()
        if self.suite is HpkeSuite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.secret).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        b64 = base64.b64encode(self.secret).decode("ascii")
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        pem = [f"-----BEGIN {_HYBRID_PEM_LABEL}-----", *lines, f"-----END {_HYBRID_PEM_LABEL}-----"]
        return ("\n".join(pem) + "\n").encode("ascii")

    @classmethod
    def from_pem(cls, data: bytes) -> HpkePrivateKey:
        """Load either file form (the suite follows from the PEM block)."""
        text = data.decode("ascii", errors="replace").strip()
        begin, end = f"-----BEGIN {_HYBRID_PEM_LABEL}-----", f"-----END {_HYBRID_PEM_LABEL}-----"
        if text.startswith(begin):
            if not text.endswith(end):
                raise MalformedInput("truncated HPKE private key PEM")
            try:
                secret = base64.b64decode(
                    "".join(text[len(begin) : -len(end)].split()), validate=True
                )
            except binascii.Error as exc:
                raise MalformedInput("HPKE private key PEM is not base64") from exc
            return cls(HpkeSuite.MLKEM768_X25519, secret)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except UnsupportedAlgorithm:  # OpenSSL cannot load an SM2 PKCS#8 key as EC
            sm2 = Sm2PrivateKey.from_pem(data)
            return cls(HpkeSuite.SM2_SM4GCM, sm2.secret + sm2.public_key.point)
        except (ValueError, TypeError) as exc:
            raise MalformedInput("not an HPKE private key PEM") from exc
        if not isinstance(key, x25519.X25519PrivateKey):
            raise MalformedInput("PKCS#8 HPKE private key is not X25519")
        return cls(HpkeSuite.X25519, key.private_bytes_raw())

    def _sm2(self) -> Sm2PrivateKey:
        return self._sm2_key

    @functools.cached_property
    def _sm2_key(self) -> Sm2PrivateKey:
        return Sm2PrivateKey(self.secret[:32], Sm2PublicKey(self.secret[32:]))

    def _parts(self) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
        pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.secret[:_MLKEM_SEED_LEN])
        return pq, x25519.X25519PrivateKey.from_private_bytes(self.secret[_MLKEM_SEED_LEN:])

    def _key(self) -> x25519.X25519PrivateKey | MLKEM768X25519PrivateKey:
        return self._key_object

    @functools.cached_property
    def _key_object(self) -> x25519.X25519PrivateKey | MLKEM768X25519PrivateKey:
        """The key object, built once per object: expanding the ML-KEM seed into the
        decapsulation key costs more than the decapsulation itself."""
        if self.suite is HpkeSuite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.secret)
        return MLKEM768X25519PrivateKey(*self._parts())


def generate_hpke_key(suite: HpkeSuite) -> HpkePrivateKey:
    """A fresh private key of ``suite`` from the OS random source."""
    if suite is HpkeSuite.SM2_SM4GCM:
        sm2 = Sm2PrivateKey.generate()
        return HpkePrivateKey(suite, sm2.secret + sm2.public_key.point)
    if suite is HpkeSuite.X25519:
        return HpkePrivateKey(suite, x25519.X25519PrivateKey.generate().private_bytes_raw())
    pq = mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
    return HpkePrivateKey(suite, pq + x25519.X25519PrivateKey.generate().private_bytes_raw())


def hpke_seal(plaintext: bytes, recipient: HpkePublicKey, *, info: bytes) -> bytes:
    """Seal ``plaintext`` to ``recipient`` (base mode, single shot); returns ``enc || ct``.

    A recipient key that cannot be used (an X25519 point of small order, which gives
    an all-zero shared secret) raises :class:`MalformedInput`.
    """
    key = recipient._key()
    if isinstance(key, Sm2PublicKey):
        return sm2_seal(key, plaintext, info)
    try:
        return _suite(recipient.suite).encrypt(plaintext, key, info=info)
    except ValueError as exc:
        raise MalformedInput(f"cannot seal to this {recipient.suite} key: {exc}") from exc


def hpke_open(ciphertext: bytes, key: HpkePrivateKey, *, info: bytes) -> bytes:
    """Open ``enc || ct`` with ``key``; any failure is one opaque :class:`DecryptionFailed`."""
    if key.suite is HpkeSuite.SM2_SM4GCM:
        return sm2_open(key._sm2(), ciphertext, info)
    if len(ciphertext) < enc_length(key.suite) + _TAG_LEN:
        _log.info("hpke open failed: ciphertext of %d bytes is too short", len(ciphertext))
        raise DecryptionFailed
    try:
        return _suite(key.suite).decrypt(ciphertext, key._key(), info=info)
    except InvalidTag:
        _log.info("hpke open failed: authentication tag mismatch (wrong key, info or tamper)")
    except ValueError as exc:
        _log.info("hpke open failed: %s", exc)
    raise DecryptionFailed
