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
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing import pathcache
from signing.errors import DecryptionFailed
from signing.hpke import HpkePrivateKey

__all__ = ["open_at_rest", "seal_at_rest"]

_SALT_LEN = 16
_TAG_LEN = 16
_NONCE = bytes(12)
_ROOT_INFO = b"tongban/v1 at-rest root"
_KEY_INFO = b"tongban/v1 at-rest "
_ROOTS: pathcache.LruCache[tuple[HpkePrivateKey, bytes]] = pathcache.LruCache(16)


def _root(key: HpkePrivateKey) -> bytes:
    """The root secret of ``key``, derived once per key object (checked with ``is``)."""
    entry = _ROOTS.get(id(key))
    if entry is not None and entry[0] is key:
        return entry[1]
    root = HKDF(hashes.SHA256(), 32, salt=None, info=_ROOT_INFO).derive(key.secret)
    _ROOTS.put(id(key), (key, root))
    return root


def _aead(key: HpkePrivateKey, salt: bytes, info: bytes) -> AESGCM:
    derived = HKDF(hashes.SHA256(), 32, salt=salt, info=_KEY_INFO + info).derive(_root(key))
    return AESGCM(derived)


def seal_at_rest(plaintext: bytes, key: HpkePrivateKey, *, info: bytes) -> bytes:
    """Seal ``plaintext`` for this node alone under ``key``; ``salt || ct``."""
    salt = os.urandom(_SALT_LEN)
    return salt + _aead(key, salt, info).encrypt(_NONCE, plaintext, None)


def open_at_rest(sealed: bytes, key: HpkePrivateKey, *, info: bytes) -> bytes:
    """Open what :func:`seal_at_rest` sealed with ``key`` and the same ``info``; any
    failure (other key, other info, altered bytes) is one opaque
    :class:`DecryptionFailed`."""
    if len(sealed) < _SALT_LEN + _TAG_LEN:
        raise DecryptionFailed
    try:
        return _aead(key, sealed[:_SALT_LEN], info).decrypt(_NONCE, sealed[_SALT_LEN:], None)
    except InvalidTag:
        raise DecryptionFailed from None
