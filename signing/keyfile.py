"""Node-local key files (staff-token key, survey join-link key; :func:`create_whole`
for the survey media key too).

A key file is PKCS#8 PEM, created with mode 0600 (parents 0700) when missing, whole or
not at all (several workers of a node may create it at once); an existing file
readable by group or others is refused, so a key that leaked through permissions is
not silently used.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signing.errors import SigningError

__all__ = ["KeyFileError", "create_whole", "load_or_create_ed25519_key"]


class KeyFileError(SigningError):
    """A key file that cannot be read, is exposed, or holds no Ed25519 private key."""


def _create(path: Path) -> Ed25519PrivateKey | None:
    """Write a fresh key to ``path``; None when another process created it first."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key if create_whole(path, pem) else None


def create_whole(path: Path, data: bytes) -> bool:
    """Create ``path`` (mode 0600, parents 0700) holding ``data``, unless it exists;
    whether this call created it.

    The data is written and synced under a name of its own, then linked to ``path`` (an
    atomic step that never replaces a file): a process starting at the same moment
    sees either no file or a whole one, and a crash leaves no empty key file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    try:  # mkstemp makes the file 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # created concurrently: the caller reads that one
        _sync_directory(path.parent)
        return True
    finally:
        os.unlink(tmp)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_ed25519_key(path: Path, what: str) -> Ed25519PrivateKey:
    """Load the Ed25519 key at ``path`` (``what`` names it in errors), creating it if missing."""
    if not path.exists():
        created = _create(path)
        if created is not None:
            return created
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{what} {path} is readable by others; chmod 600 it")
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{what} {path} is not a PEM private key") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{what} {path} is not an Ed25519 key")
    return loaded
