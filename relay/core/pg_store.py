"""``RelayStore`` on PostgreSQL: one database that several workers of a node share.

The SQL is :class:`relay.core.sqlite_store.SqlStore`'s, run through
:class:`relay.db.pg.PgConnection`. What several workers of one node (same node id and
keys, on one or more hosts) need beyond it:

- **One audit appender at a time.** :func:`relay.audit.store.append` takes the log's
  advisory lock (held to commit) before it reads the size, so indexes are gap-free.
  Every transaction here appends before it takes a row lock, so a worker never waits
  for a row while it holds the log (and the rest of a receive transaction — lookups,
  checks, signing — runs concurrently with the other workers').
- **Sequence allocation.** :meth:`enqueue` and :meth:`enqueue_many` take a
  transaction-level advisory lock per (destination, case), all of them, in one sorted
  order, before anything else: two workers never hand out the same ``seq``.
  :meth:`update_outbox` takes the same locks for the cases it touches, so the two
  always lock case, then log, then rows, and never wait for each other in a cycle.
- **Deduplication by constraint.** Each packet of a receive transaction is decided in
  a savepoint; its inbox row goes in with ``ON CONFLICT DO NOTHING``. When another
  worker accepted the same packet first, the savepoint is rolled back (our two audit
  leaves with it) and the receipt that worker returned is returned again; when a
  different packet took that place in the case's sequence, the packet is refused
  ``out-of-order``. The conflicting row is always committed already: whoever wrote it
  held the log's lock, which we hold now.
- **Claims with leases.** :meth:`due_rows` claims the case heads it returns
  (``SELECT … FOR UPDATE SKIP LOCKED`` on ``outbox_heads``, then ``lease_owner`` = this
  worker, ``lease_until`` = now + ``lease``, ``lease_seq`` = the last packet handed
  out). Other workers skip a case under a live lease (and do not dead-letter its
  expired packets either), so two workers never send the same case at once, and per
  case order holds. :meth:`update_outbox` renews the lease when the packets go in
  flight and releases it when the worker is done with the case for this pass: the
  last packet handed out is settled or queued again, one was refused for good, or an
  attempt failed. A worker that dies holds its cases until ``lease`` runs out; then
  any worker takes them over, from the head. ``lease`` must exceed the longest send
  (a slow worker whose lease ran out may send a packet the new owner also sends: the
  receiver answers the duplicate with its original receipt).

**A lost connection** (the server restarted, a failover, an idle connection cut) is
opened again by the next statement outside a transaction; a transaction whose
connection broke fails as a whole (its remaining statements are refused, never run in
autocommit), and the caller's retry (the next outbox pass, the partner's next attempt)
runs on the new connection.

Blobs stay files. ``blobs`` is a directory every worker reaches (``[database]
blob_dir`` on shared storage); uploads in progress (``partial/``) and files being sealed
(``tmp/``) live under ``work``, which must be on the same file system (a complete file
is renamed into ``blobs``): with a shared ``blob_dir`` it is that directory, so an
upload resumed through another worker finds its bytes. Each worker seals in its own
``tmp/<worker>/`` and empties it at start (half-sealed files of its crash); give a
worker a stable ``worker`` name so that happens after a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from relay.audit.merkle import TreeHash
from relay.core.model import OutboxState, PacketSummary
from relay.core.outbox import OutboxRow
from relay.core.sqlite_schema import LIVE, dt, summary_json
from relay.core.sqlite_store import Db, SqlStore, _ReceiveTx
from relay.core.store import OutboxUpdate
from relay.db.pg import PgConnection

__all__ = ["DEFAULT_LEASE", "PgStore", "default_worker_id"]

DEFAULT_LEASE = timedelta(seconds=120)
"""How long a claimed case stays with its worker without a word from it."""

_CASE_LOCKS = 0x7462  # first key of the (int, int) advisory locks on (destination, case)

_FINAL = (OutboxState.DEAD, OutboxState.REJECTED)
_OPEN = (OutboxState.QUEUED, OutboxState.IN_FLIGHT)


def default_worker_id() -> str:
    """``host:pid:random``: unique among the workers of a node, also after a restart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _file_name(worker: str) -> str:
    """``worker`` as one safe file name."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in worker)
    return safe.lstrip(".") or "worker"


def _case_key(peer: str, case_id: str) -> int:
    digest = hashlib.sha256(f"{peer}\x00{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


_VERB = re.compile(r"^\s*(\w+)(\s+TO\b)?", re.IGNORECASE)


class _Reconnecting(PgConnection):
    """A connection that opens itself again when the server dropped it — between
    transactions only (see the module docstring)."""

    def __init__(self, url: str, application_name: str) -> None:
        self._url = url
        self._name = application_name
        super().__init__(self._open())
        self._in_tx = False

    def _open(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True, application_name=self._name)

    def _run(self, sql: str, call: Callable[[], psycopg.Cursor[Any]]) -> psycopg.Cursor[Any]:
        m = _VERB.match(sql)
        verb = "" if m is None or m.group(2) else m.group(1).upper()
        if self.raw.closed:
            if self._in_tx and verb != "ROLLBACK":
                raise psycopg.OperationalError("the connection was lost inside a transaction")
            self.raw = self._open()
        if verb in ("COMMIT", "END", "ROLLBACK"):
            self._in_tx = False  # whatever the server answers, the transaction is over
        cursor = call()
        if verb in ("BEGIN", "START"):
            self._in_tx = True
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self._in_tx if self.raw.closed else super().in_transaction

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self._run(sql, lambda: PgConnection.execute(self, sql, params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        return self._run(sql, lambda: PgConnection.executemany(self, sql, rows))


class _PgReceiveTx(_ReceiveTx):
    """Each packet's decision in a savepoint; the inbox insert settles races."""

    def __init__(self, conn: Db) -> None:
        super().__init__(conn)
        self._savepoint = False

    def inbox_lookup(self, packet_id: str) -> tuple[str, str] | None:
        # the first call of each packet's decision (see relay.core.inbox)
        self._conn.execute(
            "RELEASE SAVEPOINT packet; SAVEPOINT packet" if self._savepoint else "SAVEPOINT packet"
        )
        self._savepoint = True
        return super().inbox_lookup(packet_id)

    def inbox_put(
        self, summary: PacketSummary, token: str, received_at: datetime, receipt: str, log: int
    ) -> str | None:
        row = self._conn.execute(
            "INSERT INTO inbox (packet_id, sender, case_id, seq, digest, token, summary,"
            " received_at, receipt, log_index) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT DO NOTHING RETURNING ord",
            (
                summary.packet_id, summary.sender, summary.case_id, summary.seq, summary.digest,
                token, summary_json(summary), received_at.timestamp(), receipt, log,
            ),
        ).fetchone()  # fmt: skip
        if row is None:  # another worker accepted this packet, or another in its place
            self._conn.execute("ROLLBACK TO SAVEPOINT packet")
            self._audit.forget()  # the packet's leaves are undone: read the log again
            held = super().inbox_lookup(summary.packet_id)
            return held[1] if held is not None and held[0] == summary.digest else None
        self._conn.execute(
            "INSERT INTO recv_seq (sender, case_id, seq, digest) VALUES (?,?,?,?)"
            " ON CONFLICT (sender, case_id) DO UPDATE SET seq = excluded.seq,"
            " digest = excluded.digest",
            (summary.sender, summary.case_id, summary.seq, summary.digest),
        )
        self._conn.executemany(
            "INSERT INTO inbox_blobs (digest, packet_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(a.digest, summary.packet_id) for a in summary.attachments],
        )
        self._unsettled_put(summary)
        return receipt


class PgStore(SqlStore):
    """The relay store of one worker of a node on the PostgreSQL database at ``url``.

    ``worker`` names this worker in the leases it takes (unique among the node's
    workers; default :func:`default_worker_id`); ``clock`` gives the time leases are
    measured in (the node's clock)."""

    _HINTS = False

    def __init__(
        self,
        url: str,
        *,
        blobs: Path,
        work: Path,
        worker: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        clock: Callable[[], datetime] | None = None,
        tree_hash: TreeHash | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("the lease must be positive")
        self.worker = worker or default_worker_id()
        self._lease = lease
        self._clock = clock or (lambda: datetime.now(UTC))
        conn = _Reconnecting(url, f"tongban {self.worker}"[:63])
        try:
            super().__init__(conn, blobs=blobs, work=work, tree_hash=tree_hash)
        except BaseException:
            conn.close()
            raise
        self._tmp = work / "tmp" / _file_name(self.worker)
        self._tmp.mkdir(exist_ok=True)
        for leftover in self._tmp.iterdir():  # half-sealed files of this worker's crash
            leftover.unlink()

    def temp_path(self) -> Path:
        return self._tmp / uuid.uuid4().hex

    @property
    def connection(self) -> PgConnection:
        """This worker's connection to the node's database (for the audit log reader)."""
        assert isinstance(self._conn, PgConnection)
        return self._conn

    def rebuild_heads(self) -> None:
        """Recompute ``outbox_heads`` (and drop every lease): once, after the tables were
        copied from SQLite, before any worker starts."""
        self._rebuild_heads()

    # -- several workers ---------------------------------------------------------------

    def _lock_cases(self, c: Db, pairs: Iterable[tuple[str, str]]) -> None:
        keys = sorted({_case_key(peer, case_id) for peer, case_id in pairs})
        if keys:
            c.execute(
                "SELECT pg_advisory_xact_lock(?, k) FROM unnest(?::int[]) AS k",
                (_CASE_LOCKS, keys),
            )

    def _lock_updated(self, c: Db, updates: Sequence[OutboxUpdate]) -> None:
        if updates:
            pairs = c.execute(
                "SELECT peer, case_id FROM outbox WHERE packet_id = ANY(?::text[])",
                ([u.packet_id for u in updates],),
            ).fetchall()
            self._lock_cases(c, [(str(peer), str(case_id)) for peer, case_id in pairs])

    def _receive_tx(self, c: Db) -> _ReceiveTx:
        return _PgReceiveTx(c)

    def _others_lease(self, alias: str) -> str:
        """SQL: the case of row ``alias`` is leased to another worker now (two params:
        this worker, now)."""
        return (
            f"EXISTS (SELECT 1 FROM outbox_heads h WHERE h.peer = {alias}.peer"  # noqa: S608
            f" AND h.case_id = {alias}.case_id AND h.lease_owner <> ? AND h.lease_until > ?)"
        )

    def due_rows(
        self, peer: str, at: datetime, limit: int, busy: Collection[str] = ()
    ) -> list[OutboxRow]:
        """As on SQLite, and every case returned is claimed for this worker: cases other
        workers hold under a live lease are skipped, as are heads locked by a claim in
        progress elsewhere."""
        now = self._clock()
        with self._tx() as c:
            heads = c.execute(
                "SELECT case_id FROM outbox_heads WHERE peer = ? AND (due IS NULL OR due <= ?)"
                " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)"
                " AND NOT (case_id = ANY(?::text[]))"
                " ORDER BY ord LIMIT ? FOR UPDATE SKIP LOCKED",
                (peer, at.timestamp(), self.worker, now.timestamp(), sorted(busy), limit),
            ).fetchall()
            out: list[OutboxRow] = []
            for (case_id,) in heads:
                room = limit - len(out)
                if room <= 0:
                    break
                rows = self._case_rows(c, peer, case_id, at, room)
                if rows:
                    c.execute(
                        "UPDATE outbox_heads SET lease_owner = ?, lease_until = ?, lease_seq = ?"
                        " WHERE peer = ? AND case_id = ?",
                        (self.worker, (now + self._lease).timestamp(), rows[-1].seq, peer,
                         case_id),
                    )  # fmt: skip
                out += rows
        return out

    def head_due(self, peer: str) -> tuple[bool, datetime | None]:
        """As on SQLite, a case another worker holds counting as due when its lease
        runs out (so an idle worker does not wake for it before)."""
        now = self._clock().timestamp()
        row: Any = self._conn.execute(
            "SELECT COUNT(*), MIN(CASE WHEN lease_owner <> ? AND lease_until > ?"
            " THEN GREATEST(COALESCE(due, 0), lease_until) ELSE COALESCE(due, 0) END)"
            " FROM outbox_heads WHERE peer = ?",
            (self.worker, now, peer),
        ).fetchone()
        if not row[0]:
            return False, None
        return True, None if not row[1] else datetime.fromtimestamp(row[1], UTC)

    def expired_rows(self, before: datetime, limit: int) -> list[OutboxRow]:
        """As on SQLite (queued packets only), except packets of cases another worker
        is sending now."""
        rows = self._conn.execute(
            f"SELECT {self._ROW_COLS} FROM outbox o"  # noqa: S608 - constants
            f" WHERE state IN {LIVE} AND state = 'queued' AND expires <= ?"
            f" AND NOT {self._others_lease('o')}"
            " ORDER BY expires LIMIT ?",
            (before.timestamp(), self.worker, self._clock().timestamp(), limit),
        ).fetchall()
        return [self._row(r) for r in rows]

    def earliest_expiry(self, skip: Collection[str] = ()) -> datetime | None:
        """As on SQLite, except packets of cases another worker is sending now (their
        expiry is that worker's: counted here, a past one would wake this worker's
        outbox at once, again and again, for as long as the lease)."""
        row: Any = self._conn.execute(
            "SELECT MIN(expires) FROM outbox o"  # noqa: S608 - constants
            f" WHERE state IN {LIVE} AND state = 'queued'"
            f" AND NOT (peer = ANY(?::text[])) AND NOT {self._others_lease('o')}",
            (sorted(skip), self.worker, self._clock().timestamp()),
        ).fetchone()
        return dt(row[0])

    def _after_updates(self, c: Db, updates: Sequence[OutboxUpdate]) -> None:
        """Renew the leases of cases going in flight; release those this worker is
        done with for now (see the module docstring)."""
        if not updates:
            return
        where = {
            r[0]: (r[1], r[2], int(r[3]))
            for r in c.execute(
                "SELECT packet_id, peer, case_id, seq FROM outbox WHERE packet_id = ANY(?::text[])",
                ([u.packet_id for u in updates],),
            ).fetchall()
        }
        done: dict[tuple[str, str], tuple[bool, int]] = {}  # case → (for good, last settled)
        renew: set[tuple[str, str]] = set()
        for u in updates:
            if u.packet_id not in where:
                continue
            peer, case_id, seq = where[u.packet_id]
            case = (peer, case_id)
            if u.state is OutboxState.IN_FLIGHT and u.reason is None:
                renew.add(case)
                continue
            stop = u.state in _FINAL or (u.state in _OPEN and u.reason is not None)
            was_stop, last = done.get(case, (False, -1))
            done[case] = (was_stop or stop, max(last, seq))
        now = self._clock()
        for (peer, case_id), (stop, last) in sorted(done.items()):
            c.execute(
                "UPDATE outbox_heads SET lease_owner = NULL, lease_until = NULL, lease_seq = NULL"
                " WHERE peer = ? AND case_id = ? AND lease_owner = ? AND (? OR lease_seq <= ?)",
                (peer, case_id, self.worker, stop, last),
            )
        for peer, case_id in sorted(renew - done.keys()):
            c.execute(
                "UPDATE outbox_heads SET lease_until = ?"
                " WHERE peer = ? AND case_id = ? AND lease_owner = ?",
                ((now + self._lease).timestamp(), peer, case_id, self.worker),
            )
