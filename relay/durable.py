"""Files put in place whole or not at all, and kept across a crash."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_durably"]


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
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
