"""``RelayStore`` on one SQLite file per node (WAL, ``synchronous=FULL``) plus a
content-addressed blob directory.

The SQL is written once, in :class:`SqlStore`, in the portable subset
:class:`relay.db.pg.PgConnection` runs unchanged on PostgreSQL; :class:`SqliteStore`
opens it on the SQLite file, :class:`relay.core.pg_store.PgStore` on a PostgreSQL
database several workers share (and adds what several workers need: leases on the
cases they send, locks on sequence allocation, deduplication by constraint).

Layout of a node's data directory::

    relay.sqlite3            outbox (and the packets' bodies), inbox, sequence state,
                             uploads, audit log
    blobs/ab/abcdef…         sealed blobs, named by the SHA-256 of their bytes
    partial/<kind>-<digest>  uploads in progress (offset recorded after fsync); a staff
                             upload is sealed as it arrives, its key and unsealed tail
                             beside it (.key, .tail: relay.core.staging)
    tmp/                     scratch files; renamed into blobs/ when complete

Files enter ``blobs/`` only by ``fsync`` + ``rename`` + ``fsync`` of the directory, so
a blob that is named exists completely. Transactions are explicit (``BEGIN IMMEDIATE``)
and commit with ``synchronous=FULL``: committed means on disk.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.audit.merkle import TreeHash
from relay.audit.store import MIGRATIONS as AUDIT_MIGRATIONS
from relay.audit.store import Appender, declare_tree_hash, lock_for_append
from relay.audit.store import append as audit_append
from relay.audit.store import append_many as audit_append_many
from relay.core.errors import StoreError
from relay.core.model import (
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketSummary,
)
from relay.core.outbox import OutboxRow, PeerBackoff
from relay.core.sqlite_schema import (
    LIVE,
    MIGRATIONS,
    REBUILD_HEADS,
    dt,
    fsync_dir,
    summary_from_json,
    summary_json,
    ts,
)
from relay.core.store import (
    Incoming,
    NewOutgoing,
    OutboxUpdate,
    Outgoing,
    StagedAttachment,
    Upload,
)
from relay.db.migrations import migrate
from relay.db.open import write_transaction
from relay.db.pg import PgConnection

__all__ = ["SqlStore", "SqliteStore", "fsync_dir"]

Db = sqlite3.Connection | PgConnection


def _refused_for_good(u: OutboxUpdate) -> bool:
    """Whether this update settles a packet as undeliverable for good (see sqlite_schema):
    rejected, or dead for any reason (an expiry too: the step never reached the partner)."""
    if u.state is OutboxState.REJECTED:
        return True
    return u.state is OutboxState.DEAD and u.reason is not None


def _ordered(limit: int | None, newest_first: bool) -> str:
    """The ``ORDER BY ord`` (and ``LIMIT``) clause of a listing."""
    clause = " ORDER BY ord DESC" if newest_first else " ORDER BY ord"
    return clause if limit is None else f"{clause} LIMIT {int(limit)}"


class _ReceiveTx:
    def __init__(self, conn: Db) -> None:
        self._conn = conn
        self._audit = Appender(conn)  # a batch's leaves: the log read once, not per leaf

    def inbox_lookup(self, packet_id: str) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT digest, receipt FROM inbox WHERE packet_id = ?", (packet_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def recv_sequence(self, sender: str, case_id: str) -> tuple[int, str] | None:
        row = self._conn.execute(
            "SELECT seq, digest FROM recv_seq WHERE sender = ? AND case_id = ?", (sender, case_id)
        ).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def blob_size(self, digest: str) -> int | None:
        row = self._conn.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else int(row[0])

    def audit_append(self, leaf: bytes) -> int:
        return self._audit.append(leaf)

    def inbox_put(
        self, summary: PacketSummary, token: str, received_at: datetime, receipt: str, log: int
    ) -> str | None:
        self._conn.execute(
            "INSERT INTO inbox (packet_id, sender, case_id, seq, digest, token, summary,"
            " received_at, receipt, log_index) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                summary.packet_id, summary.sender, summary.case_id, summary.seq, summary.digest,
                token, summary_json(summary), received_at.timestamp(), receipt, log,
            ),
        )  # fmt: skip
        self._conn.execute(
            "INSERT INTO recv_seq (sender, case_id, seq, digest) VALUES (?,?,?,?)"
            " ON CONFLICT (sender, case_id) DO UPDATE SET seq = excluded.seq,"
            " digest = excluded.digest",
            (summary.sender, summary.case_id, summary.seq, summary.digest),
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO inbox_blobs (digest, packet_id) VALUES (?, ?)",
            [(a.digest, summary.packet_id) for a in summary.attachments],
        )
        self._unsettled_put(summary)
        return receipt

    def _unsettled_put(self, summary: PacketSummary) -> None:
        """The accepted packet waits for the application (see sqlite_schema)."""
        self._conn.execute(
            "INSERT INTO inbox_unsettled (case_id, packet_id) VALUES (?, ?)",
            (summary.case_id, summary.packet_id),
        )


def append_leaf_once(conn: Any, key: str, leaf: bytes) -> int | None:
    """Append ``leaf`` in the caller's transaction unless a leaf was appended under
    ``key`` before (``audit_once``); its index, or None when it was not appended."""
    lock_for_append(conn)  # before the row lock of audit_once (see relay.audit.store)
    cur = conn.execute("INSERT OR IGNORE INTO audit_once (digest) VALUES (?)", (key,))
    return audit_append(conn, leaf) if cur.rowcount == 1 else None


class SqlStore:
    """The relay store's SQL on an open connection (SQLite or PostgreSQL): sealed blobs
    in ``blobs``, uploads in progress and files being sealed under ``work``
    (``partial/``, ``tmp/``), on the same file system as ``blobs`` (a finished file is
    renamed into it). ``tree_hash`` fixes the audit log's hash (SM3 for an SM-profile
    node, see :func:`relay.audit.store.declare_tree_hash`); a store opened without it
    keeps whatever the database declares (SHA-256 when nothing)."""

    _HINTS = True  # SQLite's INDEXED BY (PostgreSQL's planner takes no hints)
    NEW_PACKETS_OFF_LOOP = False
    """Whether :meth:`enqueue_many` may run in a worker thread while the event loop uses
    the store (True only where it writes through a connection of its own)."""

    def __init__(
        self, conn: Db, *, blobs: Path, work: Path, tree_hash: TreeHash | None = None
    ) -> None:
        self.directory = work
        self._blobs = blobs
        for folder in (blobs, work / "partial", work / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        self._conn = conn
        migrate(conn, "relay", MIGRATIONS)
        migrate(conn, "audit", AUDIT_MIGRATIONS)
        if tree_hash is not None:  # SM3 for an SM-profile node, fixed before any leaf
            declare_tree_hash(conn, tree_hash)

    def _hint(self, index: str) -> str:
        return f" INDEXED BY {index}" if self._HINTS else ""

    def _rebuild_heads(self) -> None:
        """Recompute ``outbox_heads`` from ``outbox`` (see sqlite_schema)."""
        with self._tx() as c:
            for statement in REBUILD_HEADS.split(";"):
                if statement.strip():
                    c.execute(statement)

    @property
    def connection(self) -> Db:
        """The node's database connection (for the audit log reader)."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def audit_append_once(self, entries: Sequence[tuple[str, bytes]]) -> int:
        """Append each ``(key, leaf)`` whose key was never logged; one transaction.

        For events the node learns from files rather than from a transaction of its own
        (agreement signatures and events): the key (the event's digest) is recorded
        with the leaf, so loading the same files again appends nothing. Returns how
        many leaves were appended.
        """
        with self._tx() as c:
            return sum(append_leaf_once(c, key, leaf) is not None for key, leaf in entries)

    @contextmanager
    def _tx(self, conn: Db | None = None) -> Iterator[Db]:
        conn = self._conn if conn is None else conn
        with self._writing():
            if conn.in_transaction:
                raise StoreError("nested transaction")
            with write_transaction(conn) as c:
                yield c

    def _writing(self) -> contextlib.AbstractContextManager[object]:
        """Held around every write transaction of this store (see :class:`SqliteStore`)."""
        return contextlib.nullcontext()

    @contextmanager
    def _new_packets(self) -> Iterator[Db]:
        """The connection :meth:`enqueue_many` writes through (see :class:`SqliteStore`)."""
        yield self._conn

    # -- sender ------------------------------------------------------------------------

    def enqueue(
        self, peer: str, case_id: str, build: Callable[[int, str | None], NewOutgoing]
    ) -> NewOutgoing:
        [result] = self.enqueue_many([(peer, case_id, build)])
        if isinstance(result, Exception):
            raise result
        return result

    def _lock_cases(self, c: Db, pairs: Iterable[tuple[str, str]]) -> None:
        """Make this transaction the only one allocating sequence numbers in these
        (destination, case) pairs (SQLite: its write transaction already is)."""

    @staticmethod
    def _last_sent_many(
        c: Db, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, str | None]]:
        """(seq, digest) of the last packet queued in each (peer, case) of ``keys``
        (``(0, None)`` for none), in one statement (each pair a point on the primary
        key)."""
        last: dict[tuple[str, str], tuple[int, str | None]] = dict.fromkeys(keys, (0, None))
        if keys:
            asked = list(keys)
            # padded to a power of two (the last pair again): few distinct statements
            asked += asked[-1:] * ((1 << (len(asked) - 1).bit_length()) - len(asked))
            terms = " OR ".join(["(peer = ? AND case_id = ?)"] * len(asked))
            for peer, case_id, seq, digest in c.execute(
                f"SELECT peer, case_id, seq, digest FROM send_seq WHERE {terms}",  # noqa: S608
                [v for key in asked for v in key],
            ).fetchall():
                last[str(peer), str(case_id)] = (int(seq), str(digest))
        return last

    def enqueue_many(
        self, items: Sequence[tuple[str, str, Callable[[int, str | None], NewOutgoing]]]
    ) -> list[NewOutgoing | Exception]:
        """:meth:`enqueue` for several packets in one transaction (one commit). Every
        packet is built first (a build that raises is left out alone, its exception
        returned in its place, and uses no sequence number); then the group is written
        with one statement per table: its ``packet-sent`` leaves appended in order, its
        outbox rows, each case's last (seq, digest), and a head for each case that had
        no open packet. A case's existing head keeps its place: it is older than any
        packet queued now."""
        out: list[NewOutgoing | Exception] = []
        with self._new_packets() as conn, self._tx(conn) as c:
            self._lock_cases(c, [(peer, case_id) for peer, case_id, _ in items])
            last = self._last_sent_many(c, {(peer, case_id) for peer, case_id, _ in items})
            for peer, case_id, build in items:
                key = (peer, case_id)
                seq = last[key][0] + 1
                try:
                    new = build(seq, last[key][1])
                    s = new.summary
                    if s.seq != seq or s.receiver != peer or s.case_id != case_id:
                        raise StoreError("built packet does not match the allocated sequence")
                except Exception as exc:  # handed back to that packet's caller
                    out.append(exc)
                    continue
                last[key] = (seq, s.digest)
                out.append(new)
            built = [new for new in out if isinstance(new, NewOutgoing)]
            if built:
                self._write_new(c, built, last)
        return out

    def _write_new(
        self,
        c: Db,
        built: Sequence[NewOutgoing],
        last: dict[tuple[str, str], tuple[int, str | None]],
    ) -> None:
        leaves = [leaf for new in built for leaf in (new.audit_leaf, *new.also_logged)]
        audit_append_many(c, leaves)  # the log's lock first
        c.executemany(
            "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state,"
            " expires) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    s.packet_id, s.receiver, s.case_id, s.seq, s.digest, summary_json(s),
                    str(OutboxState.QUEUED), s.expires.timestamp(),
                )
                for new in built
                for s in (new.summary,)
            ],
        )  # fmt: skip
        # the bytes apart, written once: a change of state rewrites the small row only
        c.executemany(
            "INSERT INTO outbox_bodies (ord, token, own_copy)"
            " SELECT ord, ?, ? FROM outbox WHERE packet_id = ?",
            [(new.token, new.own_copy, new.summary.packet_id) for new in built],
        )
        named = {(a.digest, n.summary.packet_id) for n in built for a in n.summary.attachments}
        if named:
            c.executemany(
                "INSERT INTO outbox_blobs (digest, packet_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                sorted(named),
            )
        first: dict[tuple[str, str], str] = {}
        for new in built:
            first.setdefault((new.summary.receiver, new.summary.case_id), new.summary.packet_id)
        c.executemany(
            "INSERT INTO send_seq (peer, case_id, seq, digest) VALUES (?,?,?,?)"
            " ON CONFLICT (peer, case_id) DO UPDATE SET seq = excluded.seq,"
            " digest = excluded.digest",
            [(peer, case_id, *last[peer, case_id]) for peer, case_id in first],
        )
        # a later packet of the case: its refusals to that partner stand no more
        c.executemany(
            f"UPDATE outbox_refusals{self._hint('outbox_refusals_standing')}"  # noqa: S608
            " SET standing = 0 WHERE peer = ? AND case_id = ? AND standing = 1",
            list(first),
        )
        # a new packet is queued and due now: it heads its case unless an open one does
        c.executemany(
            "INSERT INTO outbox_heads (peer, case_id, ord, due)"
            " SELECT peer, case_id, ord, NULL FROM outbox WHERE packet_id = ?"
            " ON CONFLICT (peer, case_id) DO NOTHING",
            [(packet_id,) for packet_id in first.values()],
        )

    def _refresh_heads(self, c: Db, pairs: Iterable[tuple[str, str]]) -> None:
        """Bring ``outbox_heads`` in step for these (destination, case) pairs. A head
        that stays as it was is not updated: a batch going in flight leaves its cases'
        heads as they were (``due`` stays NULL). The UPDATE per case it saves is mostly
        statement work: SQLite does not rewrite a cell whose bytes are unchanged."""
        for peer, case_id in sorted(set(pairs)):
            row = c.execute(
                f"SELECT ord, next_attempt_at FROM outbox{self._hint('outbox_live')}"  # noqa: S608
                f" WHERE peer = ? AND case_id = ? AND state IN {LIVE} ORDER BY seq LIMIT 1",
                (peer, case_id),
            ).fetchone()
            if row is None:
                c.execute(
                    "DELETE FROM outbox_heads WHERE peer = ? AND case_id = ?", (peer, case_id)
                )
            else:
                c.execute(
                    "INSERT INTO outbox_heads (peer, case_id, ord, due) VALUES (?,?,?,?)"
                    " ON CONFLICT (peer, case_id) DO UPDATE SET ord = excluded.ord,"
                    " due = excluded.due WHERE outbox_heads.ord <> excluded.ord"
                    " OR COALESCE(outbox_heads.due, -1) <> COALESCE(excluded.due, -1)",
                    (peer, case_id, row[0], row[1]),
                )

    _ROW_COLS = "packet_id, peer, case_id, seq, ord, state, expires, next_attempt_at"

    @staticmethod
    def _row(r: Sequence[Any]) -> OutboxRow:
        return OutboxRow(
            packet_id=r[0], peer=r[1], case_id=r[2], seq=int(r[3]), order=int(r[4]),
            state=OutboxState(r[5]), expires=datetime.fromtimestamp(r[6], UTC),
            next_attempt_at=dt(r[7]),
        )  # fmt: skip

    def open_peers(self) -> list[str]:
        """Destinations with open packets (one index probe per destination)."""
        rows = self._conn.execute(
            "WITH RECURSIVE p(peer) AS (SELECT MIN(peer) FROM outbox_heads UNION ALL"
            " SELECT (SELECT MIN(peer) FROM outbox_heads WHERE peer > p.peer) FROM p"
            " WHERE p.peer IS NOT NULL) SELECT peer FROM p WHERE peer IS NOT NULL"
        ).fetchall()
        return [r[0] for r in rows]

    def head_due(self, peer: str) -> tuple[bool, datetime | None]:
        """Whether ``peer`` has open packets, and when its earliest case head is due
        (None: due now, it never failed)."""
        row = self._conn.execute(
            "SELECT due FROM outbox_heads WHERE peer = ? ORDER BY due LIMIT 1", (peer,)
        ).fetchone()
        return (False, None) if row is None else (True, dt(row[0]))

    def due_rows(
        self, peer: str, at: datetime, limit: int, busy: Collection[str] = ()
    ) -> list[OutboxRow]:
        """Up to ``limit`` open packets for ``peer`` that may go out now, oldest case
        first: per case (except the ``busy`` ones) its head and the open packets after
        it in sequence, as long as each is due."""
        heads = self._conn.execute(
            "SELECT case_id FROM outbox_heads WHERE peer = ? AND (due IS NULL OR due <= ?)"
            " ORDER BY ord LIMIT ?",
            (peer, at.timestamp(), limit + len(busy)),
        ).fetchall()
        out: list[OutboxRow] = []
        for (case_id,) in heads:
            room = limit - len(out)
            if room <= 0:
                break
            if case_id in busy:
                continue
            out += self._case_rows(self._conn, peer, case_id, at, room)
        return out

    def _case_rows(
        self, c: Db, peer: str, case_id: str, at: datetime, room: int
    ) -> list[OutboxRow]:
        """Up to ``room`` open packets of one case from its head on, while each is due."""
        rows = c.execute(
            f"SELECT {self._ROW_COLS} FROM outbox{self._hint('outbox_live')}"  # noqa: S608
            f" WHERE peer = ? AND case_id = ? AND state IN {LIVE} ORDER BY seq LIMIT ?",
            (peer, case_id, room),
        ).fetchall()
        out: list[OutboxRow] = []
        for r in rows:
            row = self._row(r)
            if row.next_attempt_at is not None and row.next_attempt_at > at:
                break
            out.append(row)
        return out

    def expired_rows(self, before: datetime, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` queued packets whose expiry is at or before ``before``. A
        packet in flight is not among them: the partner may hold it (its answer was
        lost), and only the partner can say, when it answers the packet sent again (the
        original receipt, or ``expired``); taken for dead here, its sequence number
        would go to the case's next packet, which such a partner refuses for good."""
        return self._expiring(OutboxState.QUEUED, before, limit)

    def unconfirmed_rows(self, before: datetime, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` packets in flight whose expiry is at or before ``before``: sent,
        never answered, and left in flight since the partner may hold them (see
        :meth:`expired_rows`), oldest expiry first."""
        return self._expiring(OutboxState.IN_FLIGHT, before, limit)

    def _expiring(self, state: OutboxState, before: datetime, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` open packets in ``state`` that expire at or before ``before``,
        oldest expiry first (the partial expiry index)."""
        rows = self._conn.execute(
            f"SELECT {self._ROW_COLS} FROM outbox{self._hint('outbox_live_expiry')}"  # noqa: S608
            f" WHERE state IN {LIVE} AND state = ? AND expires <= ?"
            " ORDER BY expires LIMIT ?",
            (str(state), before.timestamp(), limit),
        ).fetchall()
        return [self._row(r) for r in rows]

    def earliest_expiry(self, skip: Collection[str] = ()) -> datetime | None:
        """The earliest expiry of a queued packet (see :meth:`expired_rows`) to a
        destination not in ``skip``."""
        others = f" AND peer NOT IN ({','.join('?' * len(skip))})" if skip else ""
        row: Any = self._conn.execute(
            f"SELECT MIN(expires) FROM outbox{self._hint('outbox_live_expiry')}"  # noqa: S608
            f" WHERE state IN {LIVE} AND state = 'queued'{others}",
            tuple(skip),
        ).fetchone()
        return dt(row[0])

    def open_after(self, peer: str, case_id: str, seq: int) -> list[str]:
        """Open packets of ``case_id`` towards ``peer`` after ``seq``, in order."""
        rows = self._conn.execute(
            f"SELECT packet_id FROM outbox{self._hint('outbox_live')}"  # noqa: S608
            " WHERE peer = ? AND case_id = ?"
            f" AND state IN {LIVE} AND seq > ? ORDER BY seq",
            (peer, case_id, seq),
        ).fetchall()
        return [r[0] for r in rows]

    def has_open(self) -> bool:
        return self._conn.execute("SELECT 1 FROM outbox_heads LIMIT 1").fetchone() is not None

    def parked(self) -> list[OutboxItem]:
        """Dead packets (parked, or expired since the relay schema's step 4) with no
        later packet of their case queued to that destination since (not sent again),
        newest first: the standing refusals (see sqlite_schema), never every one ever
        kept."""
        return self._standing(OutboxState.DEAD)

    def standing_rejections(self) -> list[OutboxItem]:
        """Packets the partner rejected with no later packet of their case queued to it
        since, newest first (an index of the standing refusals only)."""
        return self._standing(OutboxState.REJECTED)

    def _standing(self, state: OutboxState) -> list[OutboxItem]:
        rows = self._conn.execute(
            f"SELECT {self._OUT_COLS} FROM outbox_refusals r"  # noqa: S608
            f"{self._hint('outbox_refusals_standing')} JOIN outbox o ON o.ord = r.ord"
            " WHERE r.standing = 1 AND o.state = ? ORDER BY r.ord DESC",
            (str(state),),
        ).fetchall()
        return [self._outbox_item(r) for r in rows]

    def unnoticed_refusals(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` packets refused for good that :meth:`notice_refusals` has not
        been told of, oldest first: what is new to the integration scan, whatever the
        number of refusals kept."""
        rows = self._conn.execute(
            f"SELECT {self._OUT_COLS} FROM outbox_refusals r"  # noqa: S608
            f"{self._hint('outbox_refusals_unnoticed')} JOIN outbox o ON o.ord = r.ord"
            " WHERE r.noticed = 0 ORDER BY r.ord LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._outbox_item(r) for r in rows]

    def notice_refusals(self, packet_ids: Sequence[str]) -> None:
        """The integration scan has made the events of these refusals."""
        if not packet_ids:
            return
        with self._tx() as c:
            c.executemany(
                "UPDATE outbox_refusals SET noticed = 1"
                " WHERE ord = (SELECT ord FROM outbox WHERE packet_id = ?)",
                [(packet_id,) for packet_id in packet_ids],
            )

    def open_rows(self) -> list[OutboxRow]:
        """Every open packet (for tests and tools; the outbox itself reads only what is
        due, through :meth:`due_rows` and friends)."""
        rows = self._conn.execute(
            f"SELECT {self._ROW_COLS} FROM outbox"  # noqa: S608 - constants
            f" WHERE state IN {LIVE} ORDER BY ord"
        ).fetchall()
        return [self._row(r) for r in rows]

    def _outbox_item(self, r: Sequence[Any]) -> OutboxItem:
        return OutboxItem(
            summary=summary_from_json(r[0]),
            state=OutboxState(r[1]),
            attempts=int(r[2]),
            next_attempt_at=dt(r[3]),
            reason=r[4],
            receipt=r[5],
        )

    _OUT_COLS = "summary, state, attempts, next_attempt_at, reason, receipt"

    def outgoing(self, packet_id: str) -> Outgoing | None:
        r = self._conn.execute(
            f"SELECT {self._OUT_COLS}, token, own_copy FROM outbox"  # noqa: S608
            " JOIN outbox_bodies USING (ord) WHERE packet_id = ?",
            (packet_id,),
        ).fetchone()
        return None if r is None else Outgoing(self._outbox_item(r), r[6], r[7])

    def update_outbox(self, updates: Sequence[OutboxUpdate]) -> None:
        with self._tx() as c:
            self._lock_updated(c, updates)
            touched: list[tuple[str, str]] = []
            leaves: list[bytes] = []
            for u in updates:
                if u.audit_leaf is not None and u.receipt is not None:
                    held = c.execute(
                        "SELECT receipt FROM outbox WHERE packet_id = ?", (u.packet_id,)
                    ).fetchone()
                    if held is None or held[0] != u.receipt:
                        leaves.append(u.audit_leaf)
            if leaves:  # appends first: the log's lock before any row lock
                audit_append_many(c, leaves)  # the log's size and edge read once
            for u in updates:
                pair = c.execute(
                    "UPDATE outbox SET state = ?, next_attempt_at = ?, reason = ?,"
                    " receipt = COALESCE(?, receipt), attempts = attempts + ?"
                    " WHERE packet_id = ? RETURNING peer, case_id",
                    (
                        str(u.state), ts(u.next_attempt_at), u.reason, u.receipt,
                        1 if u.attempted else 0, u.packet_id,
                    ),
                ).fetchone()  # fmt: skip
                if pair is not None:
                    touched.append((pair[0], pair[1]))
            for u in updates:
                if u.state in (OutboxState.DEAD, OutboxState.REJECTED):
                    self._rewind(c, u.packet_id)
            c.executemany(
                "INSERT INTO outbox_refusals (ord, peer, case_id, standing, noticed)"
                " SELECT ord, peer, case_id, 1, 0 FROM outbox WHERE packet_id = ?"
                " ON CONFLICT (ord) DO NOTHING",
                [(u.packet_id,) for u in updates if _refused_for_good(u)],
            )
            self._refresh_heads(c, touched)
            self._after_updates(c, updates)

    def _lock_updated(self, c: Db, updates: Sequence[OutboxUpdate]) -> None:
        """Hook at the start of :meth:`update_outbox`'s transaction (PostgreSQL: the
        locks of the cases it touches, in the order enqueueing takes them)."""

    def _after_updates(self, c: Db, updates: Sequence[OutboxUpdate]) -> None:
        """Hook inside :meth:`update_outbox`'s transaction (PostgreSQL: leases)."""

    @staticmethod
    def _rewind(c: Db, packet_id: str) -> None:
        """After a packet died or was rejected, let its case continue: the next packet
        of that case and destination follows the last one still live (delivered or
        open), reusing the sequence numbers of the dead ones."""
        pair: Any = c.execute(
            "SELECT peer, case_id FROM outbox WHERE packet_id = ?", (packet_id,)
        ).fetchone()
        peer, case_id = pair
        live = c.execute(
            "SELECT seq, digest FROM outbox WHERE peer = ? AND case_id = ?"
            " AND state IN (?, ?, ?) ORDER BY seq DESC LIMIT 1",
            (
                peer, case_id, str(OutboxState.QUEUED), str(OutboxState.IN_FLIGHT),
                str(OutboxState.DELIVERED),
            ),
        ).fetchone()  # fmt: skip
        if live is None:
            c.execute("DELETE FROM send_seq WHERE peer = ? AND case_id = ?", (peer, case_id))
        else:
            c.execute(
                "UPDATE send_seq SET seq = ?, digest = ? WHERE peer = ? AND case_id = ?",
                (live[0], live[1], peer, case_id),
            )

    def peer_backoffs(self) -> dict[str, PeerBackoff]:
        rows = self._conn.execute("SELECT peer, failures, next_attempt_at FROM peers").fetchall()
        return {r[0]: PeerBackoff(int(r[1]), dt(r[2])) for r in rows}

    def set_peer_backoff(self, peer: str, backoff: PeerBackoff) -> None:
        with self._tx() as c:
            if backoff == PeerBackoff():  # reachable: no row at all
                c.execute("DELETE FROM peers WHERE peer = ?", (peer,))
                return
            c.execute(
                "INSERT INTO peers (peer, failures, next_attempt_at) VALUES (?,?,?)"
                " ON CONFLICT (peer) DO UPDATE SET failures = excluded.failures,"
                " next_attempt_at = excluded.next_attempt_at",
                (peer, backoff.failures, ts(backoff.next_attempt_at)),
            )

    def list_outbox(
        self,
        state: OutboxState | None,
        peer: str | None,
        case_id: str | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]:
        """Outgoing packets by creation (``ord``; ``newest_first`` reversed), at most
        ``limit``: unfiltered, the last ``limit`` are a walk of the key's end, however
        many packets the node ever sent."""
        sql = f"SELECT {self._OUT_COLS} FROM outbox WHERE 1=1"  # noqa: S608
        args: list[str] = []
        if state is not None:
            sql += " AND state = ?"
            args.append(str(state))
        if peer is not None:
            sql += " AND peer = ?"
            args.append(peer)
        if case_id is not None:  # indexed (outbox_by_case): a case page reads its own rows
            sql += " AND case_id = ?"
            args.append(case_id)
        sql += _ordered(limit, newest_first)
        return [self._outbox_item(r) for r in self._conn.execute(sql, args)]

    def uploaded(self, peer: str, digest: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM uploaded WHERE peer = ? AND digest = ?", (peer, digest)
        ).fetchone()
        return row is not None

    def mark_uploaded(self, peer: str, digest: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO uploaded (peer, digest) VALUES (?, ?)", (peer, digest))

    def unmark_uploaded(self, peer: str, digests: Sequence[str]) -> None:
        """The partner says it lacks these blobs: ask it again before the next send."""
        with self._tx() as c:
            for digest in digests:
                c.execute("DELETE FROM uploaded WHERE peer = ? AND digest = ?", (peer, digest))

    # -- receiver ----------------------------------------------------------------------

    @contextmanager
    def receiving(self) -> Iterator[_ReceiveTx]:
        with self._tx() as c:
            yield self._receive_tx(c)

    def _receive_tx(self, c: Db) -> _ReceiveTx:
        return _ReceiveTx(c)

    _IN_COLS = "summary, received_at, receipt, log_index"

    def _inbox_item(self, r: Sequence[Any]) -> InboxItem:
        return InboxItem(
            summary=summary_from_json(r[0]),
            received_at=datetime.fromtimestamp(r[1], UTC),
            receipt=r[2],
            log_index=r[3],
        )

    def incoming(self, packet_id: str) -> Incoming | None:
        r = self._conn.execute(
            f"SELECT {self._IN_COLS}, token FROM inbox WHERE packet_id = ?",  # noqa: S608
            (packet_id,),
        ).fetchone()
        return None if r is None else Incoming(self._inbox_item(r), r[4])

    def list_inbox(
        self, case_id: str | None, *, limit: int | None = None, newest_first: bool = False
    ) -> list[InboxItem]:
        """Accepted packets by arrival (``newest_first`` reversed), at most ``limit``."""
        sql = f"SELECT {self._IN_COLS} FROM inbox"  # noqa: S608
        args: tuple[str, ...] = ()
        if case_id is not None:
            sql += " WHERE case_id = ?"
            args = (case_id,)
        sql += _ordered(limit, newest_first)
        return [self._inbox_item(r) for r in self._conn.execute(sql, args)]

    def inbox_after(self, after: int, limit: int) -> list[tuple[int, InboxItem]]:
        """Accepted packets numbered after ``after``, by arrival, at most ``limit``."""
        rows = self._conn.execute(
            f"SELECT ord, {self._IN_COLS} FROM inbox WHERE ord > ? ORDER BY ord"  # noqa: S608
            f" LIMIT {int(limit)}",
            (after,),
        )
        return [(r[0], self._inbox_item(r[1:])) for r in rows]

    def unsettled_inbox(self, case_id: str | None) -> list[InboxItem]:
        """Accepted packets (of ``case_id``; None: of every case) not settled yet, in
        arrival order: an index range of what is in progress (see sqlite_schema)."""
        sql = (
            f"SELECT {', '.join('i.' + c for c in self._IN_COLS.split(', '))}"  # noqa: S608
            " FROM inbox_unsettled u JOIN inbox i ON i.packet_id = u.packet_id"
        )
        args: tuple[str, ...] = ()
        if case_id is not None:
            sql += " WHERE u.case_id = ?"
            args = (case_id,)
        return [self._inbox_item(r) for r in self._conn.execute(sql + " ORDER BY i.ord", args)]

    def settle_inbox(self, packet_ids: Sequence[str]) -> None:
        """The application is done with these packets (their outcome is recorded)."""
        if not packet_ids:
            return
        with self._tx() as c:
            c.executemany(
                "DELETE FROM inbox_unsettled WHERE packet_id = ?"
                " AND case_id = (SELECT case_id FROM inbox WHERE packet_id = ?)",
                [(p, p) for p in packet_ids],
            )

    def inbox_count(self) -> int:
        row: Any = self._conn.execute("SELECT COUNT(*) FROM inbox").fetchone()
        return int(row[0])

    def packet_naming_blob(self, digest: str) -> str | None:
        """An accepted packet naming the blob whose copy is still held (a case the
        retention purge emptied holds none)."""
        row = self._conn.execute(
            "SELECT b.packet_id FROM inbox_blobs b JOIN inbox i ON i.packet_id = b.packet_id"
            " WHERE b.digest = ? AND i.token != '' LIMIT 1",
            (digest,),
        ).fetchone()
        return None if row is None else str(row[0])

    # -- blobs and uploads -------------------------------------------------------------

    def blob_size(self, digest: str) -> int | None:
        return _ReceiveTx(self._conn).blob_size(digest)

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest[:2] / digest

    def temp_path(self) -> Path:
        return self.directory / "tmp" / uuid.uuid4().hex

    def publish_blob(self, src: Path, digest: str, size: int) -> None:
        """Move the complete, fsync'd file ``src`` to its content address, then record it."""
        target = self.blob_path(digest)
        target.parent.mkdir(exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.replace(src, target)
        fsync_dir(target.parent)
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO blobs (digest, size) VALUES (?, ?)", (digest, size))

    def _partial(self, kind: str, digest: str) -> Path:
        return self.directory / "partial" / f"{kind}-{digest}"

    def upload(self, kind: str, digest: str) -> Upload | None:
        r = self._conn.execute(
            'SELECT size, "offset" FROM uploads WHERE kind = ? AND digest = ?', (kind, digest)
        ).fetchone()
        if r is None:
            return None
        return Upload(kind, digest, int(r[0]), int(r[1]), self._partial(kind, digest))

    def begin_upload(self, kind: str, digest: str, size: int) -> Upload:
        existing = self.upload(kind, digest)
        if existing is not None:
            return existing
        path = self._partial(kind, digest)
        with open(path, "wb") as f:
            os.fsync(f.fileno())
        with self._tx() as c:
            c.execute(
                'INSERT INTO uploads (kind, digest, size, "offset") VALUES (?,?,?,0)',
                (kind, digest, size),
            )
        return Upload(kind, digest, size, 0, path)

    def advance_upload(self, kind: str, digest: str, offset: int) -> None:
        with self._tx() as c:
            c.execute(
                'UPDATE uploads SET "offset" = ? WHERE kind = ? AND digest = ?',
                (offset, kind, digest),
            )

    def drop_upload(self, kind: str, digest: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM uploads WHERE kind = ? AND digest = ?", (kind, digest))
        self._partial(kind, digest).unlink(missing_ok=True)

    def put_attachment(self, staged: StagedAttachment) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO attachments (plain_digest, plain_size, blob_digest, blob_size,"
                " media_type, name, key_kid, wrapped_key) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (plain_digest) DO UPDATE SET plain_size = excluded.plain_size,"
                " blob_digest = excluded.blob_digest, blob_size = excluded.blob_size,"
                " media_type = excluded.media_type, name = excluded.name,"
                " key_kid = excluded.key_kid, wrapped_key = excluded.wrapped_key",
                (
                    staged.plain_digest, staged.plain_size, staged.blob_digest, staged.blob_size,
                    staged.media_type, staged.name, staged.key_kid, staged.wrapped_key,
                ),
            )  # fmt: skip

    def attachment(self, digest: str) -> StagedAttachment | None:
        r = self._conn.execute(
            "SELECT plain_digest, plain_size, blob_digest, blob_size, media_type, name,"
            " key_kid, wrapped_key FROM attachments"
            " WHERE plain_digest = ? OR blob_digest = ? LIMIT 1",
            (digest, digest),
        ).fetchone()
        if r is None:
            return None
        return StagedAttachment(r[0], int(r[1]), r[2], int(r[3]), r[4], r[5], r[6], bytes(r[7]))

    # -- figures for the metrics (read at scrape time) -----------------------------------

    def outbox_depth(self) -> dict[str, tuple[int, datetime]]:
        """Partner → (packets queued or in flight, creation time of the oldest of them).

        A grouped count over the ``outbox_open`` index plus one primary-key read per
        partner, never a read of the whole table."""
        open_states = (str(OutboxState.QUEUED), str(OutboxState.IN_FLIGHT))
        groups = self._conn.execute(
            "SELECT peer, COUNT(*), MIN(ord) FROM outbox WHERE state IN (?, ?) GROUP BY peer",
            open_states,
        ).fetchall()
        out: dict[str, tuple[int, datetime]] = {}
        for peer, count, first in groups:
            row = self._conn.execute(
                "SELECT summary FROM outbox WHERE ord = ?", (first,)
            ).fetchone()
            if row is not None:
                out[str(peer)] = (int(count), summary_from_json(row[0]).created)
        return out


class SqliteStore(SqlStore):
    """The relay store of one node in ``directory`` (created if missing).

    New packets (:meth:`enqueue_many`) are written through a second connection of their
    own, so that a group's transaction, fsync included, may run in a worker thread while
    the event loop goes on with the node's connection
    (:class:`~relay.core.group_commit.GroupCommit` with ``off_loop``, see
    :attr:`NEW_PACKETS_OFF_LOOP`). One lock is held around every write transaction of
    either connection: a write on the node's connection meanwhile waits for that commit
    (as it waited for the same commit on the event loop before) on the lock, never on
    SQLite's ``busy_timeout``, which a slow disk could run out; reads are never blocked
    (WAL) and see a group only once it is committed."""

    NEW_PACKETS_OFF_LOOP = True

    def __init__(self, directory: Path, *, tree_hash: TreeHash | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "relay.sqlite3"
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.RLock()  # both connections' write transactions
        self._closed = False
        super().__init__(
            self._connect(), blobs=directory / "blobs", work=directory, tree_hash=tree_hash
        )
        for leftover in (directory / "tmp").iterdir():  # half-sealed files of a crash
            leftover.unlink()
        self._rebuild_heads()  # derived data: rebuilt once per open (see sqlite_schema)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _writing(self) -> contextlib.AbstractContextManager[object]:
        return self._writer_lock

    @contextmanager
    def _new_packets(self) -> Iterator[Db]:
        with self._writer_lock:
            if self._writer is None:
                if self._closed:
                    raise StoreError("the store is closed")
                self._writer = self._connect()
            yield self._writer

    def close(self) -> None:
        with self._writer_lock:  # after a group committing in a worker thread
            self._closed = True
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        super().close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The node's SQLite connection (for the audit log reader)."""
        assert isinstance(self._conn, sqlite3.Connection)
        return self._conn

    @property
    def writer_connection(self) -> sqlite3.Connection:
        """The connection new packets are written through (opened on first use; for
        tools and tests that look at the statements run)."""
        with self._new_packets() as conn:
            assert isinstance(conn, sqlite3.Connection)
            return conn
