""":class:`CaseStore` on the node's database: its SQLite file (its own connection, WAL)
or the configured PostgreSQL database (see :mod:`relay.db.open`).

Tables (component ``cases``, migrated when the store opens; on SQLite next to the
relay's own tables in ``relay.sqlite3``)::

    cases         case_id PK, me, header JSON, events JSON, access_hash, opened_at,
                  version, state, updated_at
    case_packets  packet_id PK, case_id, outcome, detail, applied_at

A case row holds the whole copy (header, which office we are, the events in canonical
order as docs/protocol.md §11 contents). Every write is one transaction; committed
means on disk. On SQLite ``BEGIN IMMEDIATE`` makes each read-modify-write the only
writer; on PostgreSQL, where several workers of the node share the tables, a write first
takes an advisory lock per case it touches (:func:`relay.db.open.row_locks`, sorted, so
two workers applying batches never deadlock), so each change reads the copy the last
committed one left and cases that are not touched are not held up. The audit leaves a
change records are appended after its case locks are taken (the log's append lock,
:data:`relay.audit.store.APPEND_LOCK`, comes last): no transaction takes a case lock
while holding the log, so the two never wait on each other in a circle.

A step must not cost more as its case grows: the store keeps, for the cases it used
last (:data:`COPIES_KEPT`, :data:`KEPT_TEXT_BYTES`), the copy it read or wrote with
the row's texts. A read whose row holds the same texts takes that copy (with its folded
view) instead of decoding every event again; a write whose copy is the kept one with
events added at the end writes the kept events text with the new events' text
appended instead of encoding every event again (the text is the same: ``json.dumps``
of the whole list). The row's text is compared on every read, so a copy written by
another worker or rolled back is never taken.

A :class:`CaseSink` added with :meth:`SqliteCaseStore.add_sink` sees every stored
change of a case and every audit leaf this store appends *inside* the transaction that
makes them, so what it writes (relay.integration's event outbox) commits or rolls back
with the change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from relay.audit.store import MIGRATIONS as AUDIT_MIGRATIONS
from relay.audit.store import append as audit_append
from relay.audit.store import create_schema as audit_schema
from relay.cases.errors import CaseError
from relay.cases.model import CaseHeader, Event, Office
from relay.cases.store import AppliedPacket, CaseRecord
from relay.cases.workflow import Case
from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import connection_for, row_locks
from relay.db.pg import pg_ddl

__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "CaseSink",
    "SqliteCaseStore",
    "case_from_json",
    "case_to_json",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, me TEXT NOT NULL, header TEXT NOT NULL, events TEXT NOT NULL,
    access_hash TEXT, opened_at REAL NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS case_packets (
    packet_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, outcome TEXT NOT NULL,
    detail TEXT NOT NULL, applied_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS case_packets_case ON case_packets (case_id);
"""

MIGRATIONS = [Migration(1, "cases and applied case packets", SCHEMA, pg_ddl(SCHEMA))]

_LOCKS = 0x6361_7365  # advisory lock space "case"

COPIES_KEPT = 256
"""Cases whose last copy the store keeps decoded (see the module note) ..."""
KEPT_TEXT_BYTES = 8 << 20
"""... and at most this many characters of their events texts together (the decoded
copies take a few times that): a node with long cases keeps fewer of them."""


class _KeptCopies:
    """The kept copies, least recently used first out (by count and by text size);
    thread-safe (retention runs in a worker thread)."""

    def __init__(self) -> None:
        self._copies: OrderedDict[str, _Kept] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, case_id: str) -> _Kept | None:
        with self._lock:
            kept = self._copies.get(case_id)
            if kept is not None:
                self._copies.move_to_end(case_id)
            return kept

    def put(self, case_id: str, kept: _Kept) -> None:
        with self._lock:
            old = self._copies.pop(case_id, None)
            if old is not None:
                self._size -= len(old.events)
            if len(kept.events) > KEPT_TEXT_BYTES:
                return  # too long to keep: it would only push the others out
            self._size += len(kept.events)
            self._copies[case_id] = kept
            while len(self._copies) > COPIES_KEPT or self._size > KEPT_TEXT_BYTES:
                _, dropped = self._copies.popitem(last=False)
                self._size -= len(dropped.events)


T = TypeVar("T")


def case_to_json(case: Case) -> dict[str, Any]:
    return {
        "header": case.header.to_json(),
        "me": case.me.value,
        "events": [e.to_content(case.header) for e in case.events],
    }


def case_from_json(obj: dict[str, Any]) -> Case:
    header = CaseHeader.from_json(obj["header"])
    return Case(header, Office(obj["me"]), tuple(Event.from_content(e) for e in obj["events"]))


@dataclass(frozen=True)
class _Kept:
    """A case copy as decoded from or encoded to its row's texts."""

    me: str
    header: str
    events: str
    case: Case


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class CaseSink(Protocol):
    """Told of changes inside their transaction (``conn``); raising rolls them back."""

    def changed(self, conn: Connection, old: CaseRecord | None, new: CaseRecord) -> None: ...

    def logged(self, conn: Connection, leaf: bytes) -> None: ...


class SqliteCaseStore:
    """Cases of one node on ``target``: a connection from
    :func:`relay.db.open.open_connection` (SQLite or PostgreSQL), or the path of the
    relay's SQLite file. The name stays from when SQLite was the only backend."""

    def __init__(self, target: Path | Connection) -> None:
        self._conn = connection_for(target)
        migrate(self._conn, "cases", MIGRATIONS)
        if isinstance(self._conn, sqlite3.Connection):
            audit_schema(self._conn)
        else:  # the log this store appends to
            migrate(self._conn, "audit", AUDIT_MIGRATIONS)
        self._sinks: list[CaseSink] = []
        self._kept = _KeptCopies()

    def add_sink(self, sink: CaseSink) -> None:
        self._sinks.append(sink)

    @property
    def connection(self) -> Connection:
        """The case store's connection (for a sink's own tables in the same file)."""
        return self._conn

    def _audit(self, conn: Connection, leaf: bytes) -> int:
        index = audit_append(conn, leaf)
        for sink in self._sinks:
            sink.logged(conn, leaf)
        return index

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self, case_ids: Iterable[str] = ()) -> Iterator[Connection]:
        """A write transaction holding the cases ``case_ids`` (see the module note)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row_locks(self._conn, _LOCKS, case_ids)
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @staticmethod
    def _record(row: tuple[Any, ...], case: Case | None = None) -> CaseRecord:
        me, header, events, access_hash, opened_at, version = row
        if case is None:
            case = case_from_json(
                {"me": me, "header": json.loads(header), "events": json.loads(events)}
            )
        return CaseRecord(case, access_hash, datetime.fromtimestamp(opened_at, UTC), int(version))

    def _decoded(self, case_id: str, row: tuple[Any, ...]) -> CaseRecord:
        """The record of ``row``, its case the kept copy when the row's texts are the kept
        ones (compared whole: a copy another writer left is decoded anew)."""
        me, header, events = row[:3]
        kept = self._kept.get(case_id)
        if kept is not None and (kept.events, kept.header, kept.me) == (events, header, me):
            return self._record(row, kept.case)
        record = self._record(row)
        self._kept.put(case_id, _Kept(me, header, events, record.case))
        return record

    def _encoded(self, case: Case) -> _Kept:
        """The texts of ``case``'s row: the kept copy's events text with the events
        appended since, when ``case`` is that copy with events added at its end."""
        header = case.header
        kept = self._kept.get(header.case_id)
        events = case.events
        if kept is not None and kept.case.header == header and kept.me == case.me.value:
            held = kept.case.events
            if len(held) <= len(events) and events[: len(held)] == held:
                added = ", ".join(_json(e.to_content(header)) for e in events[len(held) :])
                if not added:
                    text = kept.events
                elif held:
                    text = f"{kept.events[:-1]}, {added}]"
                else:
                    text = f"[{added}]"
                return _Kept(kept.me, kept.header, text, case)
        data = case_to_json(case)
        return _Kept(data["me"], _json(data["header"]), _json(data["events"]), case)

    _COLUMNS = "me, header, events, access_hash, opened_at, version"

    def _get(self, conn: Connection, case_id: str) -> CaseRecord | None:
        row = conn.execute(
            f"SELECT {self._COLUMNS} FROM cases WHERE case_id = ?",  # noqa: S608 - constant
            (case_id,),
        ).fetchone()
        return None if row is None else self._decoded(case_id, row)

    def _put(self, conn: Connection, record: CaseRecord, *, insert: bool) -> None:
        texts = self._encoded(record.case)
        values = (
            texts.me,
            texts.header,
            texts.events,
            record.access_hash,
            record.opened_at.timestamp(),
            record.version,
            record.case.state.value,
            datetime.now(UTC).timestamp(),
            record.case.header.case_id,
        )
        if insert:
            conn.execute(
                "INSERT INTO cases (me, header, events, access_hash, opened_at, version, state,"
                " updated_at, case_id) VALUES (?,?,?,?,?,?,?,?,?)",
                values,
            )
        else:
            conn.execute(
                "UPDATE cases SET me = ?, header = ?, events = ?, access_hash = ?,"
                " opened_at = ?, version = ?, state = ?, updated_at = ? WHERE case_id = ?",
                values,
            )
        self._kept.put(record.case.header.case_id, texts)

    def create(self, record: CaseRecord) -> None:
        with self._tx([record.case.header.case_id]) as conn:
            if self._get(conn, record.case.header.case_id) is not None:
                raise CaseError(f"case {record.case.header.case_id} exists", code="case-exists")
            self._put(conn, record, insert=True)
            for sink in self._sinks:
                sink.changed(conn, None, record)

    def get(self, case_id: str) -> CaseRecord | None:
        return self._get(self._conn, case_id)

    def _change(
        self,
        conn: Connection,
        case_id: str,
        change: Callable[[CaseRecord | None], CaseRecord | None],
    ) -> CaseRecord | None:
        old = self._get(conn, case_id)
        new = change(old)
        if new is None or new is old:
            return old
        stored = CaseRecord(
            new.case, new.access_hash, new.opened_at, (old.version if old else 0) + 1
        )
        self._put(conn, stored, insert=old is None)
        for sink in self._sinks:
            sink.changed(conn, old, stored)
        return stored

    def update(
        self,
        case_id: str,
        change: Callable[[CaseRecord | None], CaseRecord | None],
        audit: Sequence[bytes] = (),
    ) -> CaseRecord | None:
        with self._tx([case_id]) as conn:
            after = self._change(conn, case_id, change)
            if after is not None:
                for leaf in audit:  # durable with the step they record
                    self._audit(conn, leaf)
            return after

    def append_audit(self, leaf: bytes, publish: Callable[[], None]) -> int:
        """Append ``leaf`` and run ``publish`` (the act it records) in one transaction:
        a failing ``publish`` rolls the leaf back. Returns the leaf's index."""
        with self._tx() as conn:
            index = self._audit(conn, leaf)
            publish()
            return index

    def holding(self, names: Sequence[str], work: Callable[[Callable[[bytes], int]], T]) -> T:
        """Run ``work`` in one write transaction that holds ``names`` (against every
        worker of the node, as a case is held; prefix them, e.g. ``status-list:…``, so
        they never meet a case id). ``work`` gets a function that appends an audit leaf
        in that transaction and returns its index; raising rolls the leaves back."""
        with self._tx(names) as conn:
            return work(lambda leaf: self._audit(conn, leaf))

    def list_cases(self) -> list[CaseRecord]:
        rows = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM cases ORDER BY opened_at, case_id"  # noqa: S608
        ).fetchall()
        return [self._record(r) for r in rows]

    def unapplied(self, packet_ids: list[str]) -> list[str]:
        done: set[str] = set()
        for i in range(0, len(packet_ids), 500):  # under SQLite's bound-parameter limit
            chunk = packet_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT packet_id FROM case_packets WHERE packet_id IN ({marks})"  # noqa: S608
            done.update(r[0] for r in self._conn.execute(sql, chunk))
        return [p for p in packet_ids if p not in done]

    def apply_packet(
        self,
        packet_id: str,
        case_id: str,
        change: Callable[[CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]],
    ) -> AppliedPacket:
        [applied] = self.apply_packets([(packet_id, case_id, change)])
        return applied

    def apply_packets(
        self,
        items: Sequence[
            tuple[str, str, Callable[[CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]]]
        ],
    ) -> list[AppliedPacket]:
        """:meth:`apply_packet` for several packets in one transaction (one commit),
        in order: each change sees the copy the ones before it left."""
        outcomes: list[AppliedPacket] = []
        with self._tx([case_id for _, case_id, _ in items]) as conn:
            for _packet_id, case_id, change in items:
                outcome: list[AppliedPacket] = []

                def record_change(
                    old: CaseRecord | None,
                    change: Callable[
                        [CaseRecord | None], tuple[CaseRecord | None, AppliedPacket]
                    ] = change,
                    outcome: list[AppliedPacket] = outcome,
                ) -> CaseRecord | None:
                    new, applied = change(old)
                    outcome.append(applied)
                    return new

                self._change(conn, case_id, record_change)
                applied = outcome[0]
                conn.execute(
                    "INSERT OR IGNORE INTO case_packets (packet_id, case_id, outcome, detail,"
                    " applied_at) VALUES (?,?,?,?,?)",
                    (
                        applied.packet_id,
                        applied.case_id,
                        applied.outcome,
                        applied.detail,
                        datetime.now(UTC).timestamp(),
                    ),
                )
                outcomes.append(applied)
        return outcomes

    def packets(self, case_id: str) -> list[AppliedPacket]:
        rows = self._conn.execute(
            "SELECT packet_id, case_id, outcome, detail FROM case_packets WHERE case_id = ?"
            " ORDER BY applied_at, packet_id",
            (case_id,),
        ).fetchall()
        return [AppliedPacket(*r) for r in rows]
