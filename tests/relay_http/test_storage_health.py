"""Issue 11, finding 4: readiness sees a full disk and a corrupt database
(relay.storage_health), where ``SELECT 1`` said ready."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from relay.storage_health import StorageHealth


def _database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}" * 20,) for i in range(2000)])
    conn.commit()
    return conn


def test_a_healthy_store_is_ready(tmp_path: Path) -> None:
    conn = _database(tmp_path / "db.sqlite")
    health = StorageHealth(lambda: conn, tmp_path, free=lambda _: 10**12, start=at_once)
    assert health.faults() == []


def test_a_full_disk_is_not_ready(tmp_path: Path) -> None:
    conn = _database(tmp_path / "db.sqlite")
    health = StorageHealth(lambda: conn, tmp_path, min_free_bytes=1 << 20, free=lambda _: 4096)
    assert health.faults() == ["disk-full"]
    assert conn.execute("SELECT 1").fetchone() == (1,)  # what readiness used to ask


def test_the_real_free_space_of_the_data_dir_is_read(tmp_path: Path) -> None:
    conn = _database(tmp_path / "db.sqlite")
    assert StorageHealth(lambda: conn, tmp_path, min_free_bytes=1).faults() == []
    too_much = StorageHealth(lambda: conn, tmp_path, min_free_bytes=1 << 62)
    assert too_much.faults() == ["disk-full"]


def _corrupt(path: Path) -> None:
    conn = sqlite3.connect(path)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    for offset in range(3 * page, 6 * page, 7):  # scribble over b-tree pages
        data[offset] = 0xA5
    path.write_bytes(bytes(data))


def at_once(work: Callable[[], None]) -> None:
    work()


def test_a_corrupt_database_is_not_ready_and_is_rechecked(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _database(path).close()
    conn = sqlite3.connect(path)
    now = [0.0]
    health = StorageHealth(
        lambda: conn, tmp_path, free=lambda _: 10**12, recheck_seconds=60,
        recheck_failed_seconds=5, monotonic=lambda: now[0], start=at_once,
    )  # fmt: skip
    assert health.faults() == []
    conn.close()
    _corrupt(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # what readiness used to ask
    assert health.faults() == []  # a passing check is reused within recheck_seconds
    now[0] = 61.0
    assert health.faults() in (["database-corrupt"], ["database-unreadable"])
    now[0] = 62.0
    assert health.faults() != []  # the failure stands until the next check
    path.unlink()
    _database(path).close()  # restored from a backup
    now[0] = 63.0
    assert health.faults() != []  # rechecked 5 s after the failure, not on every probe
    now[0] = 66.5
    assert health.faults() == []


def test_the_database_check_never_holds_up_a_probe(tmp_path: Path) -> None:
    """``quick_check`` reads the whole file (everything the node ever exchanged): a probe
    answers from the last verdict while a check runs in its own thread, on its own
    connection, and one check runs at a time."""
    path = tmp_path / "db.sqlite"
    conn = _database(path)
    started: list[Callable[[], None]] = []
    health = StorageHealth(
        lambda: conn, tmp_path, free=lambda _: 10**12, recheck_seconds=0,
        start=started.append,
    )  # fmt: skip
    assert health.faults() == []  # no verdict yet: ready
    assert health.faults() == []
    assert len(started) == 1  # the first check still runs: no second one
    conn.close()
    _corrupt(path)
    started[0]()
    assert health.faults() in (["database-corrupt"], ["database-unreadable"])
    # and for real: a thread of its own finds the corruption, the probes meanwhile answer
    conn = sqlite3.connect(path)
    threaded = StorageHealth(lambda: conn, tmp_path, free=lambda _: 10**12)
    bad = (["database-corrupt"], ["database-unreadable"])
    assert threaded.faults() in ([], *bad)  # the check may or may not have ended by now
    deadline = time.monotonic() + 30
    while not threaded.faults() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threaded.faults() in bad
    conn.close()


def test_a_read_only_data_dir_is_not_ready(tmp_path: Path) -> None:
    """Issue 14: a file system remounted read-only (as Linux does after an I/O error)
    still reads and still reports free space; only a write shows the fault."""
    import os
    import subprocess

    assert os.geteuid() == 0, "this test mounts a tmpfs: run it as root (as CI does)"
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        _database(mount / "db.sqlite").close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        conn = sqlite3.connect(f"file:{mount / 'db.sqlite'}?mode=ro", uri=True)
        health = StorageHealth(lambda: conn, mount, min_free_bytes=1)
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (2000,)  # reads work
        assert health.faults() == ["disk-unwritable"]
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert health.faults() == []
        conn.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
