"""The demo's work folder, recreated fresh on every run.

A folder is only ever deleted when it holds :data:`MARKER`, the file the demo writes
into every folder it creates, so pointing ``--dir`` at the wrong place (a home
directory, a repository) is refused instead of wiping it. The marker names the process
that made it: a folder whose demo is still running (its nodes serve from it) is refused
too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from relay.demo.errors import NotADemoFolder

__all__ = ["MARKER", "prepare_workdir"]

MARKER = ".tongban-demo"
_MARKER_TEXT = (
    "This folder was created by `tongban demo` and is recreated on each run.\npid {pid}\n"
)


def _owner(marker: Path) -> int | None:
    """The pid written in the marker, if any."""
    for line in marker.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "pid" and value.strip().isdigit():
            return int(value)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_workdir(path: Path) -> Path:
    """Return ``path`` as an empty demo folder holding the marker.

    A missing folder is created; an empty one is used; one holding the marker is
    deleted and recreated unless the demo that made it still runs; anything else
    raises :class:`NotADemoFolder`.
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise NotADemoFolder(f"{path} is not a folder; choose another --dir")
    marker = path / MARKER
    if path.exists():
        if marker.is_file():
            owner = _owner(marker)
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise NotADemoFolder(
                    f"{path} is in use by a running `tongban demo` (pid {owner}); stop it "
                    "with Ctrl-C or choose another --dir"
                )
            shutil.rmtree(path)
        elif any(path.iterdir()):
            raise NotADemoFolder(
                f"{path} exists and was not created by `tongban demo` (no {MARKER} file); "
                "refusing to delete it — choose another --dir or remove it yourself"
            )
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(_MARKER_TEXT.format(pid=os.getpid()), encoding="utf-8")
    return path.resolve()
