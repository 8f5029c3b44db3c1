"""What the demo's process tests share: finding processes by their command line."""

from __future__ import annotations

from pathlib import Path


def processes_naming(text: str) -> list[int]:
    """The pids of the processes whose command line holds ``text`` (a node's holds its
    ``--config`` path, a PostgreSQL server its data folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text.encode() in cmdline:
            found.append(int(proc.name))
    return found
