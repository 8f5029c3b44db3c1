"""The staff directory: accounts, console sessions, failed sign-ins, the journal.

On SQLite one file in the node's data dir (``staff.sqlite``, WAL, mode 0600), apart from
the case store: it holds people, not cases, and the CLI opens it while the node runs
(``tongban staff user ...``). With ``[database] url`` the same tables (component
``staff``) live in the node's PostgreSQL database, shared by its workers: a session made
by one worker is good at every other. Everything here is plain storage; the rules
(lockout, expiry, hashing) are in :mod:`relay.signin.policy` and
:mod:`relay.signin.passwords`. The one read-modify-write, counting a failed sign-in
(:meth:`StaffStore.count_failure`), holds the account (``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL), so parallel guesses at several workers all count.

Tables::

    account(name PK, display_name, roles, password_hash, enabled, totp_secret,
            failures, locked_until, created_at, totp_last_step, must_change)
    session(id_hash PK, name, display_name, roles, csrf, via, created_at, last_seen)
    address_failure(address, at)
    journal(seq PK, at, name, event, address, detail)

``must_change`` marks a password handed out once (``tongban staff user add|reset``):
the person must choose their own at the next sign-in. A session row is keyed by the
SHA-256 of the random session id: the cookie value itself is never stored. Roles are
space-separated role names. Times are POSIX seconds, except ``journal.at`` (ISO 8601
UTC, for people reading it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import open_connection, row_locks, sqlite_connection, write_transaction
from relay.db.pg import pg_ddl
from relay.staff_auth import StaffRole

if TYPE_CHECKING:
    from relay.config import NodeConfig

__all__ = [
    "FILE_NAME",
    "MIGRATIONS",
    "AccountRecord",
    "JournalEntry",
    "JournalRow",
    "SessionRecord",
    "StaffStore",
    "journal_row",
    "session_hash",
]

FILE_NAME = "staff.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    roles TEXT NOT NULL,
    password_hash TEXT,
    enabled INTEGER NOT NULL,
    totp_secret TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    created_at REAL NOT NULL,
    totp_last_step INTEGER,
    must_change INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS session (
    id_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    roles TEXT NOT NULL,
    csrf TEXT NOT NULL,
    via TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_name ON session(name);
CREATE TABLE IF NOT EXISTS address_failure (address TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS address_failure_address ON address_failure(address, at);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    name TEXT NOT NULL,
    event TEXT NOT NULL,
    address TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

MIGRATIONS = [Migration(1, "staff accounts, sessions and journal", _SCHEMA, pg_ddl(_SCHEMA))]

_LOCKS = 0x7374_6166  # advisory lock space "staf"


_JOURNAL_INSERT = "INSERT INTO journal (at, name, event, address, detail) VALUES (?, ?, ?, ?, ?)"

JournalRow = tuple[str, str, str, str, str]
"""One journal line as stored: at, name, event, address, detail (JSON)."""


def journal_row(
    at: datetime, name: str, event: str, address: str, detail: Mapping[str, Any]
) -> JournalRow:
    return (
        at.astimezone(UTC).isoformat(timespec="milliseconds"),
        name,
        event,
        address,
        json.dumps(dict(detail), ensure_ascii=False, sort_keys=True),
    )


def session_hash(session_id: str) -> str:
    """The stored key of a session: hex SHA-256 of its random id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _roles(text: str) -> tuple[StaffRole, ...]:
    return tuple(StaffRole(r) for r in text.split())


def _roles_text(roles: tuple[StaffRole, ...]) -> str:
    return " ".join(r.value for r in roles)


@dataclass(frozen=True)
class AccountRecord:
    name: str
    display_name: str
    roles: tuple[StaffRole, ...]
    password_hash: str | None
    enabled: bool
    totp_secret: str | None
    failures: int
    locked_until: float | None
    created_at: float
    must_change: bool = False


@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    name: str
    display_name: str
    roles: tuple[StaffRole, ...]
    csrf: str
    via: str  # "password" or "oidc"
    created_at: float
    last_seen: float


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    at: str
    name: str
    event: str
    address: str
    detail: Mapping[str, Any]


class StaffStore:
    """The staff directory of one node: ``data_dir / staff.sqlite``, or where
    ``connect`` opens a connection to (:func:`relay.db.open.open_connection` with
    ``file_name=FILE_NAME``; the store opens a second one for the journal writer)."""

    def __init__(self, data_dir: Path, *, connect: Callable[[], Connection] | None = None) -> None:
        path = data_dir / FILE_NAME
        if connect is None:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        self.path = path
        self._connect: Callable[[], Connection] = connect or (lambda: sqlite_connection(path))
        self._db = self._connect()
        if isinstance(self._db, sqlite3.Connection):
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(account)")}
            if columns and "must_change" not in columns:  # made before the column existed
                self._db.execute(
                    "ALTER TABLE account ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0"
                )
        migrate(self._db, "staff", MIGRATIONS)
        self._journal_db: Connection | None = None  # opened by journal_many
        self._journal_lock = threading.Lock()

    @classmethod
    def for_node(cls, config: NodeConfig) -> StaffStore:
        """The staff directory of the node ``config`` describes, on its backend."""
        if config.database.url is None:
            return cls(config.data_dir)
        return cls(
            config.data_dir,
            connect=functools.partial(open_connection, config, "staff", file_name=FILE_NAME),
        )

    @contextmanager
    def _tx(self, names: Sequence[str] = ()) -> Iterator[Connection]:
        """One write transaction holding the accounts ``names``."""
        with write_transaction(self._db) as db:
            row_locks(db, _LOCKS, names)
            yield db

    def close(self) -> None:
        self._db.close()
        with self._journal_lock:
            if self._journal_db is not None:
                self._journal_db.close()
                self._journal_db = None

    # -- accounts ---------------------------------------------------------------------

    def add_account(
        self,
        name: str,
        display_name: str,
        roles: tuple[StaffRole, ...],
        password_hash: str | None,
        now: float,
        *,
        must_change: bool = False,
    ) -> bool:
        """Insert an account; ``False`` when the name is taken."""
        cursor = self._db.execute(
            "INSERT INTO account (name, display_name, roles, password_hash, enabled,"
            " created_at, must_change) VALUES (?, ?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (name, display_name, _roles_text(roles), password_hash, now, int(must_change)),
        )
        return cursor.rowcount == 1

    def account(self, name: str) -> AccountRecord | None:
        row = self._db.execute(
            "SELECT name, display_name, roles, password_hash, enabled, totp_secret, failures,"
            " locked_until, created_at, must_change FROM account WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else self._account(row)

    def accounts(self) -> list[AccountRecord]:
        rows = self._db.execute(
            "SELECT name, display_name, roles, password_hash, enabled, totp_secret, failures,"
            " locked_until, created_at, must_change FROM account ORDER BY name"
        ).fetchall()
        return [self._account(r) for r in rows]

    @staticmethod
    def _account(row: tuple[Any, ...]) -> AccountRecord:
        return AccountRecord(
            name=row[0],
            display_name=row[1],
            roles=_roles(row[2]),
            password_hash=row[3],
            enabled=bool(row[4]),
            totp_secret=row[5],
            failures=int(row[6]),
            locked_until=row[7],
            created_at=float(row[8]),
            must_change=bool(row[9]),
        )

    def _update(self, name: str, sql: str, args: tuple[Any, ...]) -> bool:
        cursor = self._db.execute(f"UPDATE account SET {sql} WHERE name = ?", (*args, name))  # noqa: S608 - fixed column lists
        return cursor.rowcount == 1

    def set_enabled(self, name: str, enabled: bool) -> bool:
        with self._tx():
            changed = self._update(name, "enabled = ?", (int(enabled),))
            if changed and not enabled:
                self._db.execute("DELETE FROM session WHERE name = ?", (name,))
        return changed

    def set_password(self, name: str, password_hash: str, *, must_change: bool = False) -> bool:
        """A new password: clears the lockout and ends the account's sessions."""
        with self._tx():
            changed = self._update(
                name,
                "password_hash = ?, failures = 0, locked_until = NULL, must_change = ?",
                (password_hash, int(must_change)),
            )
            if changed:
                self._db.execute("DELETE FROM session WHERE name = ?", (name,))
        return changed

    def set_password_hash_only(self, name: str, password_hash: str) -> None:
        """Store the same password hashed with current parameters (sessions stay)."""
        self._update(name, "password_hash = ?", (password_hash,))

    def set_totp(self, name: str, secret: str | None) -> bool:
        return self._update(name, "totp_secret = ?, totp_last_step = NULL", (secret,))

    def use_totp_step(self, name: str, step: int) -> bool:
        """Mark time step ``step`` used; ``False`` if it (or a later one) already was."""
        cursor = self._db.execute(
            "UPDATE account SET totp_last_step = ? WHERE name = ?"
            " AND (totp_last_step IS NULL OR totp_last_step < ?)",
            (step, name, step),
        )
        return cursor.rowcount == 1

    def set_roles(self, name: str, roles: tuple[StaffRole, ...]) -> bool:
        return self._update(name, "roles = ?", (_roles_text(roles),))

    def record_failure(self, name: str, failures: int, locked_until: float | None) -> None:
        self._update(name, "failures = ?, locked_until = ?", (failures, locked_until))

    def count_failure(
        self, name: str, step: Callable[[int], tuple[int, float | None]]
    ) -> tuple[int, float | None] | None:
        """One more failed sign-in of ``name``: ``step`` maps the stored failure count
        to the new ``(failures, locked_until)``, stored and returned in one transaction
        that holds the account (None: no such account)."""
        with self._tx([name]) as db:
            row = db.execute("SELECT failures FROM account WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            failures, locked_until = step(int(row[0]))
            self._update(name, "failures = ?, locked_until = ?", (failures, locked_until))
            return failures, locked_until

    def clear_failures(self, name: str) -> None:
        self._update(name, "failures = 0, locked_until = NULL", ())

    # -- failed sign-ins per address ----------------------------------------------------

    def address_failures(self, address: str, since: float) -> list[float]:
        """Times of the failed sign-ins from ``address`` at or after ``since``, oldest
        first (older ones are dropped)."""
        with self._tx():
            self._db.execute("DELETE FROM address_failure WHERE at < ?", (since,))
            rows = self._db.execute(
                "SELECT at FROM address_failure WHERE address = ? ORDER BY at", (address,)
            ).fetchall()
        return [float(r[0]) for r in rows]

    def add_address_failure(self, address: str, at: float) -> None:
        self._db.execute("INSERT INTO address_failure (address, at) VALUES (?, ?)", (address, at))

    # -- sessions ---------------------------------------------------------------------

    def add_session(self, record: SessionRecord) -> None:
        self._db.execute(
            "INSERT INTO session (id_hash, name, display_name, roles, csrf, via, created_at,"
            " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id_hash,
                record.name,
                record.display_name,
                _roles_text(record.roles),
                record.csrf,
                record.via,
                record.created_at,
                record.last_seen,
            ),
        )

    def session(self, id_hash: str) -> SessionRecord | None:
        row = self._db.execute(
            "SELECT id_hash, name, display_name, roles, csrf, via, created_at, last_seen"
            " FROM session WHERE id_hash = ?",
            (id_hash,),
        ).fetchone()
        if row is None:
            return None
        return SessionRecord(
            id_hash=row[0],
            name=row[1],
            display_name=row[2],
            roles=_roles(row[3]),
            csrf=row[4],
            via=row[5],
            created_at=float(row[6]),
            last_seen=float(row[7]),
        )

    def touch_session(self, id_hash: str, now: float) -> None:
        self._db.execute("UPDATE session SET last_seen = ? WHERE id_hash = ?", (now, id_hash))

    def delete_session(self, id_hash: str) -> bool:
        return self._db.execute("DELETE FROM session WHERE id_hash = ?", (id_hash,)).rowcount == 1

    def delete_sessions_before(self, idle_since: float, created_since: float) -> int:
        """Drop sessions idle since before ``idle_since`` or created before ``created_since``."""
        return self._db.execute(
            "DELETE FROM session WHERE last_seen < ? OR created_at < ?",
            (idle_since, created_since),
        ).rowcount

    # -- journal ----------------------------------------------------------------------

    def journal(
        self, at: datetime, name: str, event: str, address: str, detail: Mapping[str, Any]
    ) -> None:
        self._db.execute(_JOURNAL_INSERT, journal_row(at, name, event, address, detail))

    def journal_many(self, rows: Sequence[JournalRow]) -> None:
        """Append ``rows`` (from :func:`journal_row`) in one transaction, on the
        journal's own connection: safe to call from one worker thread while the event
        loop uses the store (:class:`relay.signin.journal.JournalWriter`)."""
        with self._journal_lock:
            if self._journal_db is None:
                self._journal_db = self._connect()
            with write_transaction(self._journal_db) as db:
                db.executemany(_JOURNAL_INSERT, rows)

    def journal_entries(self, *, name: str | None = None, after: int = 0) -> Iterator[JournalEntry]:
        sql = "SELECT seq, at, name, event, address, detail FROM journal WHERE seq > ?"
        args: tuple[Any, ...] = (after,)
        if name is not None:
            sql += " AND name = ?"
            args = (after, name)
        for row in self._db.execute(sql + " ORDER BY seq", args).fetchall():
            yield JournalEntry(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))
