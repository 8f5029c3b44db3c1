"""File writing for the PKI tool: create-only, with the final mode from the start."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_public", "write_private", "write_public"]


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start; refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def replace_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    write_public(tmp, data)
    os.replace(tmp, path)
