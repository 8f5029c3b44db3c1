"""The signature types a tongban signed note may carry, and their primitives (pure).

C2SP signed-note (https://c2sp.org/signed-note) names a signature type by the bytes that
enter the key id, ``SHA-256(name || 0x0A || type || public key)[:4]``. tongban uses:

- ``0x01``: Ed25519 over the note text (a log key; public key 32 bytes);
- ``0x04``: ``cosignature/v1`` with Ed25519 (a witness key; 32 bytes);
- ``0xFF || "tongban/sm2-sm3-note"``: SM2 over the note text (a log key; 65 bytes);
- ``0xFF || "tongban/sm2-sm3-cosignature/v1"``: the ``cosignature/v1`` message signed
  with SM2 (a witness key; 65 bytes).

C2SP reserves ``0xFF`` for signature types it assigns no byte to and recommends that a
longer identifier follow it; the two SM2 types are the SM profile's (issue 19). An SM2
public key is the uncompressed point ``0x04 || X || Y``; an SM2 signature is GB/T
32918.2 over SM3 with the GM/T 0009 default signer id ``1234567812345678`` (the one
OpenSSL uses), written as the 64 bytes ``r || s`` — the same bytes as a JWS
``SM2SM3`` signature (docs/protocol.md §2). Ed25519 and SM2 signatures are both 64
bytes, so a cosignature is 72 bytes (timestamp first) in either type.

The log's tree hash follows its log key: an Ed25519 log hashes with SHA-256, an SM2
log with SM3 (:data:`relay.audit.merkle.SM3_TREE`).
"""

from __future__ import annotations

from enum import Enum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay.audit.errors import CheckpointError
from relay.audit.merkle import SHA256_TREE, SM3_TREE, TreeHash
from signing.errors import MalformedInput
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey
from signing.sodium import ed25519_verify

__all__ = [
    "KeyType",
    "NotePrivateKey",
    "NotePublicKey",
    "public_bytes",
    "public_key_from_bytes",
    "sign",
    "verify",
]

NotePrivateKey = Ed25519PrivateKey | Sm2PrivateKey
NotePublicKey = Ed25519PublicKey | Sm2PublicKey

_SM2_POINT = 65  # 0x04 || X || Y


class KeyType(Enum):
    """A signature type, valued by the bytes it puts into key ids and verifier keys."""

    ED25519 = b"\x01"
    COSIGNATURE_V1 = b"\x04"
    SM2_SM3 = b"\xfftongban/sm2-sm3-note"
    SM2_COSIGNATURE_V1 = b"\xfftongban/sm2-sm3-cosignature/v1"

    @property
    def sm2(self) -> bool:
        return self in (KeyType.SM2_SM3, KeyType.SM2_COSIGNATURE_V1)

    @property
    def cosigner(self) -> bool:
        """True for a witness's ``cosignature/v1`` type, False for a log key's type."""
        return self in (KeyType.COSIGNATURE_V1, KeyType.SM2_COSIGNATURE_V1)

    @property
    def tree_hash(self) -> TreeHash:
        """The tree hash of a log signed with this (log key) type."""
        return SM3_TREE if self.sm2 else SHA256_TREE

    def for_key(self, key: NotePublicKey | NotePrivateKey) -> KeyType:
        """This type's role (log key or cosigner) for ``key``'s algorithm."""
        sm2 = isinstance(key, Sm2PublicKey | Sm2PrivateKey)
        if self.cosigner:
            return KeyType.SM2_COSIGNATURE_V1 if sm2 else KeyType.COSIGNATURE_V1
        return KeyType.SM2_SM3 if sm2 else KeyType.ED25519

    @classmethod
    def split(cls, material: bytes) -> tuple[KeyType, bytes]:
        """``type || public key`` (a verifier key's material) into its two parts."""
        for kind in cls:
            size = _SM2_POINT if kind.sm2 else 32
            if material.startswith(kind.value) and len(material) == len(kind.value) + size:
                return kind, material[len(kind.value) :]
        raise CheckpointError("verifier key is not of a known signature type")


def public_bytes(key: NotePublicKey) -> bytes:
    """The public key as it enters key ids: 32 Ed25519 bytes, or ``0x04 || X || Y``."""
    if isinstance(key, Sm2PublicKey):
        return b"\x04" + key.point
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_from_bytes(kind: KeyType, raw: bytes) -> NotePublicKey:
    try:
        if kind.sm2:
            if len(raw) != _SM2_POINT or raw[0] != 0x04:
                raise MalformedInput("an SM2 note key is an uncompressed point")
            return Sm2PublicKey(raw[1:])
        return Ed25519PublicKey.from_public_bytes(raw)
    except (MalformedInput, ValueError) as exc:
        raise CheckpointError(f"verifier key does not hold a valid public key: {exc}") from None


def sign(key: NotePrivateKey, message: bytes) -> bytes:
    """A 64-byte signature: Ed25519, or SM2-with-SM3 as ``r || s``."""
    if isinstance(key, Sm2PrivateKey):
        return key.sign_raw(message)
    return key.sign(message)


def verify(key: NotePublicKey, signature: bytes, message: bytes) -> bool:
    if isinstance(key, Sm2PublicKey):
        return key.verify_raw(signature, message)
    return ed25519_verify(key, signature, message)
