"""Whether a node's storage can take writes: the readiness check behind ``/readyz``.

``SELECT 1`` answers on a full disk and on a corrupt database alike, so the check is:

- **disk**: the data directory's file system has at least ``min_free_bytes`` free for
  the node (``statvfs`` ``f_bavail``), else ``disk-full``;
- **writes**: a small probe file in the data directory can be written, synced and
  removed, else ``disk-unwritable`` (a file system remounted read-only after an I/O
  error, lost permissions, a vanished directory — free space and reads still look fine
  then); ``disk-full`` when the write itself runs out of space;
- **database**: ``PRAGMA quick_check`` says ``ok``, else ``database-corrupt``
  (``database-unreadable`` if SQLite cannot even run it). It reads the whole file,
  which grows with everything the node ever exchanged: it runs on a connection of its
  own (read-only, so writers go on) in a thread of its own, at most every
  ``recheck_seconds`` after a pass and every ``recheck_failed_seconds`` after a
  failure, and a probe answers from the last verdict at once (none yet: ready). On
  PostgreSQL, whose server checks its own pages, ``SELECT 1`` on the node's connection.

Time comes from the ``monotonic`` argument; the file-system figure from ``free_bytes``;
``start`` runs the database check (a daemon thread by default; at once in tests).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from relay.db.pg import PgConnection

__all__ = ["MIN_FREE_BYTES", "StorageHealth", "free_bytes"]

MIN_FREE_BYTES = 64 * 1024 * 1024
_log = logging.getLogger("tongban.relay.storage")


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="storage-quick-check", daemon=True).start()


class StorageHealth:
    """Callable ``faults() -> list[str]``; empty when storage is ready."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection | PgConnection],
        data_dir: Path,
        *,
        min_free_bytes: int = MIN_FREE_BYTES,
        recheck_seconds: float = 300.0,
        recheck_failed_seconds: float = 10.0,
        free: Callable[[Path], int] = free_bytes,
        monotonic: Callable[[], float] = time.monotonic,
        start: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self._connection = connection
        self._data_dir = data_dir
        self._min_free = min_free_bytes
        self._recheck = recheck_seconds
        self._recheck_failed = recheck_failed_seconds
        self._free = free
        self._monotonic = monotonic
        self._start = start
        self._lock = threading.Lock()
        self._verdict: str | None = None  # of the last database check (None: it passed)
        self._checked_at: float | None = None  # when it started (None: never)
        self._checking = False
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
        verdict = self._database_verdict()
        if verdict is not None:
            found.append(verdict)
        if found != self._last:  # log changes, not every probe
            if found:
                _log.warning("storage not ready: %s", ", ".join(found))
            else:
                _log.info("storage ready again")
            self._last = found
        return found

    def check_soon(self) -> None:
        """Start the database check now unless one runs (at node start: a node started
        on a corrupt file says so at the first probes, not five minutes later)."""
        self._database_verdict()

    def _database_verdict(self) -> str | None:
        """The last database check's fault (None: passed, or none finished yet); starts
        the next check when one is due."""
        conn = self._connection()
        if isinstance(conn, PgConnection):  # the server checks its own pages
            import psycopg  # loaded already: it made the connection

            try:
                conn.execute("SELECT 1").fetchall()
            except psycopg.Error:
                return "database-unreadable"
            return None
        now = self._monotonic()
        with self._lock:
            wait = self._recheck if self._verdict is None else self._recheck_failed
            due = self._checked_at is None or now - self._checked_at >= wait
            start = due and not self._checking
            if start:
                self._checking = True
                self._checked_at = now
        if start:
            path = _file_of(conn)
            self._start(lambda: self._check(path))
        with self._lock:
            return self._verdict

    def _check(self, path: str | None) -> None:
        verdict = _quick_check(path)
        with self._lock:
            self._verdict = verdict
            self._checking = False

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


def _file_of(conn: sqlite3.Connection) -> str | None:
    """The file of ``conn``'s main database (None: it cannot even say)."""
    try:
        for _, name, file in conn.execute("PRAGMA database_list").fetchall():
            if name == "main":
                return str(file)
    except sqlite3.DatabaseError:
        pass
    return None


def _quick_check(path: str | None) -> str | None:
    """``PRAGMA quick_check`` of the SQLite file at ``path`` on a read-only connection of
    its own: None when it says ok, else the fault."""
    if not path:
        return "database-unreadable"
    try:
        conn = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return "database-unreadable"
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError:
        return "database-unreadable"
    finally:
        conn.close()
    return None if rows == [("ok",)] else "database-corrupt"
