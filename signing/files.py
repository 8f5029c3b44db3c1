"""Detached file signatures: hash-then-sign, in constant memory.

A file of any size is signed by signing a small manifest::

    {"media_type": "application/pdf", "name": "licence.pdf", "sha256": "<64 hex>", "size": 123}

(canonical JSON) as the payload of a compact JWS with ``typ`` ``tongban-file-sig+jws``
and the signer's seal certificate in ``x5c``. Verification checks the JWS first, then
reads the file once in 1 MiB blocks and compares size and SHA-256. Any failure is the
opaque :class:`~signing.errors.InvalidSignature`, the cause logged on ``tongban.signing``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from signing.certificates import Identity, Purpose, TrustBundle
from signing.encoding import canonical_json, loads_shallow
from signing.errors import InvalidSignature
from signing.jws import sign_compact as _sign_compact
from signing.jws import verify_compact
from signing.keys import Signer

__all__ = [
    "FILE_SIG_TYP",
    "FileManifest",
    "VerifiedFile",
    "file_digest",
    "sign_file",
    "verify_file",
]

_log = logging.getLogger("tongban.signing")

FILE_SIG_TYP = "tongban-file-sig+jws"
_BLOCK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"name", "media_type", "size", "sha256"})


@dataclass(frozen=True)
class FileManifest:
    """What a file signature commits to."""

    name: str
    media_type: str
    size: int
    sha256_hex: str

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ValueError("size must be a non-negative integer")
        if not isinstance(self.sha256_hex, str) or not _HEX64.fullmatch(self.sha256_hex):
            raise ValueError("sha256_hex must be 64 lowercase hex digits")
        if not isinstance(self.name, str) or not isinstance(self.media_type, str):
            raise ValueError("name and media_type must be strings")
        if not self.media_type or "/" not in self.media_type:
            raise ValueError("media_type must be a media type such as application/pdf")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "sha256": self.sha256_hex,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> FileManifest:
        """Parse a manifest; the bytes must be exactly its canonical JSON."""
        obj = loads_shallow(data.decode("utf-8"))
        if not isinstance(obj, dict) or set(obj) != _KEYS:
            raise ValueError(f"manifest members must be exactly {sorted(_KEYS)}")
        manifest = cls(
            name=obj["name"],
            media_type=obj["media_type"],
            size=obj["size"],
            sha256_hex=obj["sha256"],
        )
        if manifest.to_bytes() != data:
            raise ValueError("manifest is not in canonical JSON form")
        return manifest


@dataclass(frozen=True)
class VerifiedFile:
    """A file whose content matches a valid signature."""

    manifest: FileManifest
    signer: Identity
    signed_at: datetime


def file_digest(stream: BinaryIO) -> tuple[int, str]:
    """``(size, sha256 hex)`` of the rest of ``stream``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    while block := stream.read(_BLOCK):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def sign_file(stream: BinaryIO, *, name: str, media_type: str, signer: Signer, at: datetime) -> str:
    """Sign the content of ``stream`` (read to its end); returns the compact JWS."""
    size, sha = file_digest(stream)
    manifest = FileManifest(name=name, media_type=media_type, size=size, sha256_hex=sha)
    return _sign_compact(manifest.to_bytes(), signer, typ=FILE_SIG_TYP, at=at)


def verify_file(
    stream: BinaryIO,
    token: str,
    bundle: TrustBundle,
    *,
    at: datetime,
    node_id: str | None = None,
) -> VerifiedFile:
    """Check ``token`` and that ``stream``'s content is what it signs."""
    verified = verify_compact(
        token, bundle, at=at, typ=FILE_SIG_TYP, purpose=Purpose.SEAL, node_id=node_id
    )
    try:
        manifest = FileManifest.from_bytes(verified.payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        _log.warning("file signature refused: bad manifest: %s", exc)
        raise InvalidSignature() from None
    size, sha = file_digest(stream)
    if size != manifest.size:
        _log.warning("file signature refused: size %d, signed size %d", size, manifest.size)
        raise InvalidSignature()
    if not hmac.compare_digest(sha, manifest.sha256_hex):
        _log.warning("file signature refused: content digest differs from the signed one")
        raise InvalidSignature()
    return VerifiedFile(manifest=manifest, signer=verified.signer, signed_at=verified.signed_at)
