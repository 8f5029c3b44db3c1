"""Opening a component on the configured backend, and the per-name locks that make a
store's read-modify-write race-free on PostgreSQL without serialising other names."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from relay.config import load_config
from relay.db.open import database_errors, open_connection, row_locks, write_transaction
from relay.db.pg import PgConnection, connect
from relay.signin.store import StaffStore
from relay.staff_auth import StaffRole

NODE = (
    '[node]\nid = "420106"\nkey_dir = "keys"\ndata_dir = "data"\n'
    'trust_bundle = "bundle.pem"\n[listeners.federation]\nport = 8443\n'
    "[listeners.public]\nport = 8080\n[listeners.staff]\nport = 8444\n"
)


def test_without_a_url_each_component_opens_its_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(NODE, encoding="utf-8")
    config = load_config(path)
    config.data_dir.mkdir()
    conn = open_connection(config, "cases")
    assert isinstance(conn, sqlite3.Connection)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert (config.data_dir / "relay.sqlite3").exists()
    conn.close()
    staff = StaffStore.for_node(config)
    staff.add_account("wang.fang", "王芳", (StaffRole.CLERK,), None, 1.0)
    staff.close()
    assert (config.data_dir / "staff.sqlite").stat().st_mode & 0o777 == 0o600


def test_with_a_url_every_component_shares_the_postgresql_database(
    tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(NODE + f'[database]\nurl = "{pg_url}"\n', encoding="utf-8")
    config = load_config(path)
    conn = open_connection(config, "cases")
    assert isinstance(conn, PgConnection)
    name = conn.execute("SELECT current_setting('application_name')").fetchone()
    assert name == ("tongban-cases",)
    staff = StaffStore.for_node(config)
    staff.add_account("wang.fang", "王芳", (StaffRole.CLERK,), None, 1.0)
    staff.close()
    assert conn.execute("SELECT name FROM account").fetchall() == [("wang.fang",)]
    assert not (config.data_dir / "staff.sqlite").exists()
    conn.close()


def _in_thread(conn: PgConnection, space: int, names: list[str]) -> threading.Thread:
    thread = threading.Thread(target=row_locks, args=(conn, space, names), daemon=True)
    thread.start()
    return thread


def _waiting(watch: PgConnection, space: int) -> int:
    row: Any = watch.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ? AND NOT granted",
        (space,),
    ).fetchone()
    return int(row[0])


def test_row_locks_hold_one_name_and_let_the_others_pass(pg_url: str) -> None:
    one, two, watch = connect(pg_url), connect(pg_url), connect(pg_url)
    one.execute("BEGIN")
    row_locks(one, 7, ["WC-A"])
    two.execute("BEGIN")
    other = _in_thread(two, 7, ["WC-B"])  # another name
    other.join(timeout=60)
    assert not other.is_alive()
    elsewhere = _in_thread(two, 8, ["WC-A"])  # the same name in another lock space
    elsewhere.join(timeout=60)
    assert not elsewhere.is_alive()
    same = _in_thread(two, 7, ["WC-A", "WC-C"])  # waits for one's transaction
    deadline = time.monotonic() + 60
    while _waiting(watch, 7) == 0:
        assert time.monotonic() < deadline, "the second worker never waited for WC-A"
        time.sleep(0.02)
    assert same.is_alive()
    one.execute("COMMIT")  # the lock ends with the transaction
    same.join(timeout=60)
    assert not same.is_alive()
    two.execute("COMMIT")
    for conn in (one, two, watch):
        conn.close()


def _two_connections(backend: str, tmp_path: Path, url: str) -> tuple[Any, Any]:
    if backend == "sqlite":
        one = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
        one.execute("PRAGMA foreign_keys = ON")
        return one, sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    return connect(url), connect(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_write_transaction_commits_rolls_back_and_survives_a_refused_commit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    conn, other = _two_connections(backend, tmp_path, url)
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER"
        " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    with write_transaction(conn) as c:
        c.execute("INSERT INTO parent (id) VALUES (1)")
    assert other.execute("SELECT id FROM parent").fetchall() == [(1,)]  # committed

    def failing_block() -> None:
        with write_transaction(conn) as c:
            c.execute("INSERT INTO parent (id) VALUES (2)")
            raise KeyError("the block failed")

    with pytest.raises(KeyError):
        failing_block()
    assert other.execute("SELECT id FROM parent").fetchall() == [(1,)]  # rolled back
    # the deferred constraint refuses the COMMIT itself (on SQLite the transaction
    # would stay open, and every later BEGIN on the connection would fail)
    with pytest.raises(database_errors()), write_transaction(conn) as c:
        c.execute("INSERT INTO child (id, parent) VALUES (1, 99)")
    assert not conn.in_transaction
    with write_transaction(conn) as c:
        c.execute("INSERT INTO child (id, parent) VALUES (2, 1)")
    assert other.execute("SELECT id, parent FROM child").fetchall() == [(2, 1)]
    conn.close()
    other.close()


def test_database_errors_name_psycopgs_once_it_is_loaded_and_never_load_it() -> None:
    """A process that has not loaded psycopg cannot meet its errors: the helpers name
    sqlite3's alone there, and psycopg's as soon as a PostgreSQL connection loads it."""
    script = """
import sqlite3, sys
from relay.db.open import database_errors, storage_errors
assert database_errors() == (sqlite3.Error,), database_errors()
assert set(storage_errors(KeyError)) == {KeyError, sqlite3.Error, OSError}
assert "psycopg" not in sys.modules
import psycopg
assert database_errors(TimeoutError) == (TimeoutError, sqlite3.Error, psycopg.Error)
try:
    psycopg.connect("postgresql://127.0.0.1:1/none", connect_timeout=1)
except storage_errors() as exc:
    print(type(exc).__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "OperationalError\n"
