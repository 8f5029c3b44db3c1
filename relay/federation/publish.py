"""Signing and publishing a federation directory (``tongban pki sign-directory``).

The publisher reads each member's ``node.json``, builds the entries, takes the serial
after the one of the file it replaces (1 for a new file), signs with the directory key
and then verifies the result as a node would (:func:`verify_directory`, with the trust
bundle): a directory in which any entry would be left out is not written. The file is
replaced atomically, so a node serving it never reads half a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from relay.durable import write_durably
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode
from signing.errors import InvalidSignature, MalformedInput
from signing.federation_directory import (
    DirectoryEntry,
    EntryLimits,
    FederationDirectory,
    VerifiedDirectory,
    sign_directory,
    verify_directory,
)
from signing.keys import Signer

__all__ = ["PublishError", "previous_serial", "publish_directory", "write_atomically"]


class PublishError(Exception):
    """The directory cannot be signed as asked (names the file or the member)."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PublishError(f"cannot read {what} {path}: {exc.strerror}") from None


def previous_serial(path: Path) -> int:
    """The serial of the directory file at ``path`` (0 when there is none). Read without
    verification: it only orders the next publication."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read the previous directory {path}: {exc}") from None
    try:
        serial = json.loads(b64url_decode(token.split(".")[1]))["serial"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise PublishError(f"{path} is not a directory file; refusing to replace it") from None
    if not isinstance(serial, int):
        raise PublishError(f"{path} is not a directory file; refusing to replace it")
    return serial


def write_atomically(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all, readable by all (a published file)."""
    write_durably(path, data, mode=0o644)


def publish_directory(
    *,
    key_dir: Path,
    trust_bundle: Path,
    federation: str,
    node_files: Sequence[Path],
    out: Path,
    now: datetime,
    valid_for: float,
    max_body_bytes: int = 1024 * 1024,
    max_batch_size: int = 100,
) -> VerifiedDirectory:
    """Sign the directory of ``node_files`` into ``out``; see the module docstring."""
    try:
        signer = Signer.from_pem(
            _read(key_dir / "directory.key", "directory key"),
            _read(key_dir / "directory.pem", "directory certificate"),
        )
        bundle = TrustBundle.from_pem(_read(trust_bundle, "trust bundle"))
        limits = EntryLimits(max_body_bytes, max_batch_size)
        entries = []
        for path in node_files:
            try:
                entries.append(DirectoryEntry.from_node_json(_read(path, "node.json"), limits))
            except MalformedInput as exc:
                raise PublishError(f"{path}: {exc}") from None
        directory = FederationDirectory(
            federation=federation,
            serial=previous_serial(out) + 1,
            issued_at=now,
            expires_at=now + timedelta(seconds=valid_for),
            entries=tuple(entries),
        )
    except MalformedInput as exc:
        raise PublishError(str(exc)) from None
    data = sign_directory(directory, signer, at=now)
    try:
        verified = verify_directory(data, bundle, at=now)
    except InvalidSignature:
        raise PublishError(
            "the signed directory does not verify with the trust bundle "
            "(is the directory key issued under one of its roots?)"
        ) from None
    if verified.refused:
        node, why = sorted(verified.refused.items())[0]
        raise PublishError(f"node {node} would be left out: {why}")
    write_atomically(out, data)
    return verified
