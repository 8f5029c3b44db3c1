"""The demo's work folder, recreated fresh on every run.

A folder is only ever deleted when it holds :data:`MARKER`, the file the demo writes
into every folder it creates, so pointing ``--dir`` at the wrong place (a home
directory, a repository) is refused instead of wiping it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from relay.demo.errors import NotADemoFolder

__all__ = ["MARKER", "prepare_workdir"]

MARKER = ".tongban-demo"
_MARKER_TEXT = "This folder was created by `tongban demo` and is recreated on each run.\n"


def prepare_workdir(path: Path) -> Path:
    """Return ``path`` as an empty demo folder holding the marker.

    A missing folder is created; an empty one is used; one holding the marker is
    deleted and recreated; anything else raises :class:`NotADemoFolder`.
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise NotADemoFolder(f"{path} is not a folder; choose another --dir")
    if path.exists():
        if (path / MARKER).is_file():
            shutil.rmtree(path)
        elif any(path.iterdir()):
            raise NotADemoFolder(
                f"{path} exists and was not created by `tongban demo` (no {MARKER} file); "
                "refusing to delete it — choose another --dir or remove it yourself"
            )
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    return path.resolve()
