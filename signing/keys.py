"""Signing keys bound to their certificate chain.

A :class:`Signer` is a private key plus the certificate chain (leaf first) whose leaf
holds the matching public key. The JWS algorithm is a property of the key, never a
choice: Ed25519 signs ``EdDSA``, ECDSA P-256 signs ``ES256``, SM2 (the SM profile,
:mod:`signing.sm2`) signs ``SM2SM3``; any other key is refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signing import pathcache, sodium
from signing.encoding import b64url
from signing.errors import MalformedInput
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey
from signing.sm_x509 import sm2_public_key

__all__ = [
    "SM2_ALGORITHM",
    "PublicKey",
    "Signer",
    "algorithm_for",
    "certificate_kid",
    "certificate_public_key",
    "load_pem_chain",
]

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | Sm2PrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | Sm2PublicKey
#: The JWS ``alg`` of the SM profile: SM2 over SM3 with the GM/T 0009 default signer id
#: ``1234567812345678``, signature ``r || s`` (64 bytes). JOSE registers none.
SM2_ALGORITHM = "SM2SM3"

_CERT_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL
)


def algorithm_for(key: object) -> str:
    """The one JWS algorithm a key may use: ``EdDSA``, ``ES256`` or ``SM2SM3``."""
    if isinstance(key, Sm2PrivateKey | Sm2PublicKey):
        return SM2_ALGORITHM
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return "ES256"
    raise MalformedInput(f"unsupported signing key type {type(key).__name__}")


def certificate_kid(cert: x509.Certificate) -> str:
    """``b64url(SHA-256(DER(cert)))`` — the JWS ``kid`` (equal to ``x5t#S256``)."""
    return b64url(hashlib.sha256(pathcache.der(cert)).digest())  # DER memoized per object


def certificate_public_key(cert: x509.Certificate) -> PublicKey:
    """The leaf key of ``cert`` if it is one a signer may hold (else MalformedInput)."""
    sm2 = sm2_public_key(cert)
    if sm2 is not None:
        return sm2
    try:
        key = cert.public_key()
    except UnsupportedAlgorithm:
        raise MalformedInput("unsupported certificate key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise MalformedInput(f"unsupported signing key type {type(key).__name__}")
    return key


def load_pem_chain(data: bytes) -> tuple[x509.Certificate, ...]:
    """Parse concatenated PEM certificates, keeping their order."""
    blocks = _CERT_BLOCK.findall(data)
    if not blocks:
        raise MalformedInput("no PEM certificate found")
    try:
        return tuple(x509.load_pem_x509_certificate(b) for b in blocks)
    except ValueError as exc:
        raise MalformedInput("unparsable PEM certificate") from exc


def _spki(key: PublicKey) -> bytes:
    if isinstance(key, Sm2PublicKey):
        return key.to_der()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Signer:
    """A private key and its certificate chain (leaf first)."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise MalformedInput("a signer needs its certificate chain")
        algorithm_for(self.key)
        own = self.key.public_key
        own_key = own if isinstance(own, Sm2PublicKey) else own()
        if _spki(certificate_public_key(self.chain[0])) != _spki(own_key):
            raise MalformedInput("the private key does not match the leaf certificate")

    @functools.cached_property
    def kid(self) -> str:
        return certificate_kid(self.chain[0])

    @functools.cached_property
    def algorithm(self) -> str:
        return algorithm_for(self.key)

    @functools.cached_property
    def x5c(self) -> tuple[str, ...]:
        """The chain as a JWS ``x5c`` header holds it: standard base64 DER, leaf first."""
        return tuple(base64.b64encode(pathcache.der(c)).decode("ascii") for c in self.chain)

    @functools.cached_property
    def ed25519_secret(self) -> bytes | None:
        """An Ed25519 key as libsodium signs with it (:mod:`signing.sodium`), else None."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return sodium.ed25519_secret(self.key)
        return None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def to_pem(self) -> tuple[bytes, bytes]:
        """(PKCS#8 PEM private key, PEM chain): what :meth:`from_pem` loads."""
        if isinstance(self.key, Sm2PrivateKey):
            key_pem = self.key.to_pem()
        else:
            key_pem = self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        return key_pem, chain

    @classmethod
    def from_pem(cls, key_pem: bytes, chain_pem: bytes) -> Signer:
        """Load a PKCS#8 PEM private key and a PEM chain (leaf first)."""
        key: object
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except UnsupportedAlgorithm:
            key = Sm2PrivateKey.from_pem(key_pem)  # the SM profile (MalformedInput if not)
        except (ValueError, TypeError) as exc:
            raise MalformedInput("unparsable PEM private key") from exc
        if not isinstance(
            key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | Sm2PrivateKey
        ):
            raise MalformedInput(f"unsupported signing key type {type(key).__name__}")
        return cls(key=key, chain=load_pem_chain(chain_pem))
