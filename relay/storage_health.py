"""Whether a node's storage can take writes: the readiness check behind ``/readyz``.

``SELECT 1`` answers on a full disk and on a corrupt database alike, so the check is:

- **disk**: the data directory's file system has at least ``min_free_bytes`` free for
  the node (``statvfs`` ``f_bavail``), else ``disk-full``;
- **writes**: a small probe file in the data directory can be written, synced and
  removed, else ``disk-unwritable`` (a file system remounted read-only after an I/O
  error, lost permissions, a vanished directory — free space and reads still look fine
  then); ``disk-full`` when the write itself runs out of space;
- **database**: ``PRAGMA quick_check`` says ``ok``, else ``database-corrupt``
  (``database-unreadable`` if SQLite cannot even run it). It reads the whole file, so
  a passing result is reused for ``recheck_seconds``; a failing one is never cached.

Time comes from the ``monotonic`` argument; the file-system figure from ``free_bytes``
(both replaceable in tests).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from relay.db.pg import PgConnection

__all__ = ["MIN_FREE_BYTES", "StorageHealth", "free_bytes"]

MIN_FREE_BYTES = 64 * 1024 * 1024
_log = logging.getLogger("tongban.relay.storage")


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class StorageHealth:
    """Callable ``faults() -> list[str]``; empty when storage is ready."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection | PgConnection],
        data_dir: Path,
        *,
        min_free_bytes: int = MIN_FREE_BYTES,
        recheck_seconds: float = 300.0,
        free: Callable[[Path], int] = free_bytes,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._data_dir = data_dir
        self._min_free = min_free_bytes
        self._recheck = recheck_seconds
        self._free = free
        self._monotonic = monotonic
        self._checked_ok_at: float | None = None
        self._last: list[str] = []

    def faults(self) -> list[str]:
        found: list[str] = []
        try:
            if self._free(self._data_dir) < self._min_free:
                found.append("disk-full")
        except OSError:
            found.append("disk-unreadable")
        probe = self._write_probe()
        if probe is not None and probe not in found:
            found.append(probe)
        now = self._monotonic()
        if self._checked_ok_at is None or now - self._checked_ok_at >= self._recheck:
            verdict = self._quick_check()
            if verdict is None:
                self._checked_ok_at = now
            else:
                self._checked_ok_at = None
                found.append(verdict)
        if found != self._last:  # log changes, not every probe
            if found:
                _log.warning("storage not ready: %s", ", ".join(found))
            else:
                _log.info("storage ready again")
            self._last = found
        return found

    def _write_probe(self) -> str | None:
        path = self._data_dir / ".ready-probe"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 512)
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
        except OSError as exc:
            return "disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "disk-unwritable"
        return None

    def _quick_check(self) -> str | None:
        conn = self._connection()
        if isinstance(conn, PgConnection):  # the server checks its own pages
            try:
                conn.execute("SELECT 1").fetchall()
            except psycopg.Error:
                return "database-unreadable"
            return None
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        except sqlite3.DatabaseError:
            return "database-unreadable"
        return None if rows == [("ok",)] else "database-corrupt"
