"""Files put in place whole or not at all, and kept across a crash."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["rename_durably", "sync_folder", "write_durably"]


def write_durably(
    path: Path, data: bytes, *, mode: int | None = None, tmp: Path | None = None
) -> None:
    """Put ``data`` at ``path`` whole or not at all: written and synced under a temporary
    name beside it (``tmp``; by default ``.<name>.<pid>.tmp``, so that two processes
    writing one file never share it), given ``mode`` when one is named, renamed over
    ``path``, and the folder synced so that the rename survives a crash. A failure
    leaves ``path`` as it was and removes the temporary file."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make the names in ``folder`` (a rename, a new file) survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_durably(source: Path, target: Path) -> None:
    """Put the file ``source`` at ``target`` with its bytes and its new name on disk
    (synced, renamed, the folder synced): what names it later never names a file a
    crash left empty or absent."""
    with source.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    sync_folder(target.parent)
