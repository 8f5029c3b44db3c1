"""Sealing at rest under one of the node's own HPKE private keys, symmetrically.

What a node keeps for itself only (its copy of the content it sent) need not be
sealed with a KEM to its own public key: whoever could open that holds the private key
anyway. Instead, a key derived from the HPKE private key seals it with AES-256-GCM, at
a tenth of the cost of an ML-KEM or X25519 encapsulation. It is as safe at rest as the
HPKE seal it replaces: opening needs the same private key (kept in the key directory,
not with the data), and a retired HPKE key makes its copies unreadable as before.

Construction (``info`` binds a sealed text to its use, as in :func:`signing.hpke.seal_info`)::

    root = HKDF-SHA256(ikm = private key material, salt = "", info = "tongban/v1 at-rest root")
    key  = HKDF-SHA256(ikm = root, salt = 16 random bytes, info = "tongban/v1 at-rest " || info)
    sealed = salt || AES-256-GCM(key, nonce = 12 zero bytes, plaintext, aad = "")

Every text gets its own key (the random salt), so the fixed nonce is never reused
under one key. ``root`` is derived once per key object. Nothing sealed here ever
leaves the node; the format is not part of the protocol.

**Two ciphers** (:class:`AtRest`): the one above, ``r1``, and for an SM-profile node
(its key is ``sm2-sm4gcm``) ``r2``, the same construction with SM primitives — HKDF-SM3
in place of HKDF-SHA256 and SM4-GCM with a 16-byte key in place of AES-256-GCM (the
root info ends ``" sm"``). :meth:`AtRest.for_key` picks the one a key seals with; the
caller stores the cipher's name beside what it sealed, so what an SM node sealed with
``r1`` before ``r2`` existed still opens.
"""

from __future__ import annotations

import os
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing import pathcache
from signing.errors import DecryptionFailed
from signing.hpke import HpkePrivateKey, HpkeSuite
from signing.sm_seal import sm4_gcm_decrypt, sm4_gcm_encrypt

__all__ = ["AtRest", "open_at_rest", "seal_at_rest"]


class AtRest(StrEnum):
    """The cipher of a text sealed at rest; the value is the name stored beside it."""

    AES256GCM = "r1"  # HKDF-SHA256, AES-256-GCM
    SM4GCM = "r2"  # HKDF-SM3, SM4-GCM (an SM-profile node)

    @classmethod
    def for_key(cls, key: HpkePrivateKey) -> AtRest:
        """The cipher ``key`` seals with: SM4-GCM for an ``sm2-sm4gcm`` key."""
        return cls.SM4GCM if key.suite is HpkeSuite.SM2_SM4GCM else cls.AES256GCM


_SALT_LEN = 16
_TAG_LEN = 16
_NONCE = bytes(12)
_ROOT_INFO = b"tongban/v1 at-rest root"
_KEY_INFO = b"tongban/v1 at-rest "
_ROOTS: pathcache.LruCache[tuple[HpkePrivateKey, AtRest, bytes]] = pathcache.LruCache(16)


def _hash(cipher: AtRest) -> hashes.HashAlgorithm:
    return hashes.SM3() if cipher is AtRest.SM4GCM else hashes.SHA256()


def _root(key: HpkePrivateKey, cipher: AtRest) -> bytes:
    """The root secret of ``key`` for ``cipher``, derived once per key object (checked
    with ``is``) and cipher."""
    slot = (id(key), cipher.value)
    entry = _ROOTS.get(slot)
    if entry is not None and entry[0] is key and entry[1] is cipher:
        return entry[2]
    info = _ROOT_INFO + (b" sm" if cipher is AtRest.SM4GCM else b"")
    root = HKDF(_hash(cipher), 32, salt=None, info=info).derive(key.secret)
    _ROOTS.put(slot, (key, cipher, root))
    return root


def _text_key(key: HpkePrivateKey, cipher: AtRest, salt: bytes, info: bytes) -> bytes:
    size = 16 if cipher is AtRest.SM4GCM else 32
    return HKDF(_hash(cipher), size, salt=salt, info=_KEY_INFO + info).derive(_root(key, cipher))


def seal_at_rest(
    plaintext: bytes, key: HpkePrivateKey, *, info: bytes, cipher: AtRest = AtRest.AES256GCM
) -> bytes:
    """Seal ``plaintext`` for this node alone under ``key``; ``salt || ct``. Store
    ``cipher`` with it (:meth:`AtRest.for_key` gives the one a key should use)."""
    salt = os.urandom(_SALT_LEN)
    derived = _text_key(key, cipher, salt, info)
    if cipher is AtRest.SM4GCM:
        return salt + sm4_gcm_encrypt(derived, _NONCE, b"", plaintext)
    return salt + AESGCM(derived).encrypt(_NONCE, plaintext, None)


def open_at_rest(
    sealed: bytes, key: HpkePrivateKey, *, info: bytes, cipher: AtRest = AtRest.AES256GCM
) -> bytes:
    """Open what :func:`seal_at_rest` sealed with ``key``, the same ``info`` and
    ``cipher``; any failure (other key, info or cipher, altered bytes) is one opaque
    :class:`DecryptionFailed`."""
    if len(sealed) < _SALT_LEN + _TAG_LEN:
        raise DecryptionFailed
    salt, body = sealed[:_SALT_LEN], sealed[_SALT_LEN:]
    derived = _text_key(key, cipher, salt, info)
    if cipher is AtRest.SM4GCM:
        return sm4_gcm_decrypt(derived, _NONCE, b"", body)  # DecryptionFailed itself
    try:
        return AESGCM(derived).decrypt(_NONCE, body, None)
    except InvalidTag:
        raise DecryptionFailed from None
