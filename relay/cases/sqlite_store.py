""":class:`CaseStore` on the node's database: its SQLite file (its own connection, WAL)
or the configured PostgreSQL database (see :mod:`relay.db.open`).

Tables (component ``cases``, migrated when the store opens; on SQLite next to the
relay's own tables in ``relay.sqlite3``)::

    cases         case_id PK, me, header JSON, events (empty since step 2), access_hash,
                  opened_at, version, state, updated_at, stamp, clock JSON,
                  licence_number, licence, queue JSON, licence_issuer, licence_index
    case_events   (case_id, n) PK, content JSON: the case's events in canonical order
                  (docs/protocol.md §11 contents), n from 0
    case_packets  packet_id PK, case_id, outcome, detail, applied_at

A case row holds its header and which office we are; its events are rows of their own,
so a step writes the events it adds (or, when a partner's event sorts before the last
ones, those from where the order changed) and never the whole history again (issue 12:
a case with 1,000 events made every step read and rewrite a row that long). ``stamp`` is
drawn anew at every write of the case. ``clock`` holds what the case's SLA clocks are
counted from (:class:`relay.cases.sla.ClockFacts`), so :meth:`SqliteCaseStore.clocks`
judges every case without reading its events; ``licence_number`` and ``licence`` hold
the e-licence once issued, so a licence is found by its number
(:meth:`SqliteCaseStore.licence`) and the issued ones are listed
(:meth:`SqliteCaseStore.licences`) without reading a case; ``queue`` holds what the
console's work queue shows and filters on (:class:`relay.cases.queue.QueueFacts`), so
:meth:`SqliteCaseStore.queue_entries` lists every case from its row alone;
``licence_issuer`` and ``licence_index`` are the issuing node and the highest
status-list index of that licence, so the next free index is one index probe
(:meth:`SqliteCaseStore.next_status_index`), not a read of every licence ever issued.

Every write is one transaction; committed means on disk. On SQLite ``BEGIN IMMEDIATE``
makes each read-modify-write the only writer; on PostgreSQL, where several workers of
the node share the tables, a write first takes an advisory lock per case it touches
(:func:`relay.db.open.row_locks`, sorted, so two workers applying batches never
deadlock), so each change reads the copy the last committed one left and cases that are
not touched are not held up. The audit leaves a change records are appended after its
case locks are taken (the log's append lock, :data:`relay.audit.store.APPEND_LOCK`,
comes last): no transaction takes a case lock while holding the log, so the two never
wait on each other in a circle.

A step must not cost more as its case grows: the store keeps, for the cases it used
last (:data:`COPIES_KEPT`, :data:`KEPT_TEXT_BYTES`), the copy it read or wrote with
the row's stamp. A read whose row holds the kept stamp takes that copy (with its folded
view) instead of reading and decoding every event again; any other read takes the row
and its events in one statement (one snapshot) and decodes them. A stamp is never
written twice, so a copy written by another worker or rolled back is never taken.

A :class:`CaseSink` added with :meth:`SqliteCaseStore.add_sink` sees every stored
change of a case and every audit leaf this store appends *inside* the transaction that
makes them, so what it writes (relay.integration's event outbox) commits or rolls back
with the change.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
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
from relay.cases.model import CaseHeader, CaseState, Event, Office
from relay.cases.queue import COLOUR_RANK, QueueEntry, QueueFacts, SettledQueue
from relay.cases.sla import ClockFacts, Colour
from relay.cases.store import AppliedPacket, CaseRecord
from relay.cases.workflow import Case
from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import connection_for, row_locks, write_transaction
from relay.db.pg import pg_ddl
from signing.errors import MalformedInput
from signing.licence import parse_licence

__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "CaseSink",
    "Held",
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

# step 2: each event a row of its own (the old rows' event lists moved over in order);
# a worker of the release before that still runs on the database (several workers on
# PostgreSQL) has its writes of a whole events list refused instead of left unread
_EVENT_ROWS = {
    "sqlite": """
CREATE TABLE IF NOT EXISTS case_events (
    case_id TEXT NOT NULL, n INTEGER NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (case_id, n)
);
INSERT INTO case_events (case_id, n, content)
    SELECT c.case_id, e.key, e.value FROM cases AS c, json_each(c.events) AS e;
ALTER TABLE cases ADD COLUMN stamp TEXT NOT NULL DEFAULT '';
UPDATE cases SET events = '';
CREATE TRIGGER IF NOT EXISTS cases_events_in_rows_insert BEFORE INSERT ON cases
    WHEN NEW.events != '' BEGIN SELECT RAISE(ABORT, 'case events are rows of their own'); END;
CREATE TRIGGER IF NOT EXISTS cases_events_in_rows_update BEFORE UPDATE OF events ON cases
    WHEN NEW.events != '' BEGIN SELECT RAISE(ABORT, 'case events are rows of their own'); END;
""",
    "postgresql": """
CREATE TABLE IF NOT EXISTS case_events (
    case_id TEXT NOT NULL, n BIGINT NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (case_id, n)
);
INSERT INTO case_events (case_id, n, content)
    SELECT c.case_id, e.ord - 1, e.value::text
    FROM cases AS c, json_array_elements(c.events::json) WITH ORDINALITY AS e(value, ord);
ALTER TABLE cases ADD COLUMN stamp TEXT NOT NULL DEFAULT '';
UPDATE cases SET events = '';
ALTER TABLE cases ADD CONSTRAINT cases_events_in_rows CHECK (events = '');
""",
}

# step 3: each case's clock facts (relay.cases.sla.ClockFacts, JSON) and its licence
# (number and token, once issued), filled at every write; rows from before are filled
# when a store opens on them
_DERIVED = """
ALTER TABLE cases ADD COLUMN clock TEXT;
ALTER TABLE cases ADD COLUMN licence_number TEXT;
ALTER TABLE cases ADD COLUMN licence TEXT;
CREATE INDEX IF NOT EXISTS cases_licence_number ON cases (licence_number);
"""

# step 4: what the work queue shows of each case (relay.cases.queue.QueueFacts, JSON),
# filled like step 3's columns
# (and an index for listing the cases a page at a time, oldest first, and one of the
# rows still to fill: empty once filled, so a start does not read every case to find none)
_QUEUE = """
ALTER TABLE cases ADD COLUMN queue TEXT;
CREATE INDEX IF NOT EXISTS cases_opened ON cases (opened_at, case_id);
CREATE INDEX IF NOT EXISTS cases_unfilled ON cases (case_id) WHERE clock IS NULL OR queue IS NULL;
"""

# step 5: who issued each case's licence and the highest status-list index it uses
# (filled like step 3's columns; '' when the case has no licence or it cannot be
# decoded), and an index for the next free one; rows from before are filled at open,
# found through the same index (their issuer is NULL; none once they are filled)
_LICENCE_STATUS = """
ALTER TABLE cases ADD COLUMN licence_issuer TEXT;
ALTER TABLE cases ADD COLUMN licence_index BIGINT;
CREATE INDEX IF NOT EXISTS cases_licence_index ON cases (licence_issuer, licence_index);
"""

# step 6: whether a case is settled (relay.cases.queue.QueueEntry.settled: 1, else 0),
# the queue's filters as columns (matter, the other office, the people through whom our
# office acted, each name between two \x1f, found with instr/strpos) and, for a settled
# case, its place in the queue (relay.cases.queue.queue_rank: computed with the working
# calendar by the first queue that reads it, NULL again at each write; all computed
# again when the calendar changes: queue_ranks holds the fingerprint of the one they
# were computed with); a queue reads the rows of the cases in progress and counts the
# settled ones through partial indexes; rows from before (and rows a worker of the
# release before writes) have no matter and are in progress until marked: at open,
# found through an index of those alone
_SETTLED = """
ALTER TABLE cases ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN matter TEXT;
ALTER TABLE cases ADD COLUMN partner TEXT;
ALTER TABLE cases ADD COLUMN staff TEXT;
ALTER TABLE cases ADD COLUMN queue_rank INTEGER;
CREATE INDEX IF NOT EXISTS cases_active ON cases (opened_at, case_id) WHERE settled = 0;
CREATE INDEX IF NOT EXISTS cases_settled_state ON cases (state, queue_rank, case_id, settled)
    WHERE settled = 1;
CREATE INDEX IF NOT EXISTS cases_settled_rank ON cases (queue_rank, case_id) WHERE settled = 1;
CREATE INDEX IF NOT EXISTS cases_unmarked ON cases (case_id) WHERE matter IS NULL;
CREATE TABLE IF NOT EXISTS queue_ranks (calendar TEXT NOT NULL);
"""

# step 7: when each case's latest event happened (CaseView.last_at) and when its content
# falls due for purging (relay.integration.retention: computed by the purge from the
# agreement's retention years for the cases written since its last run, NULL again at
# each write; NOT_DUE while the case has not ended) and whether it was purged (0 again
# at each write: a step after the purge brings content to purge in its turn); the
# daily purge reads only the rows due, through the partial indexes; rows from before
# get their last event's time at open
_PURGE = """
ALTER TABLE cases ADD COLUMN last_at DOUBLE PRECISION;
ALTER TABLE cases ADD COLUMN purge_due DOUBLE PRECISION;
ALTER TABLE cases ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS cases_last_unknown ON cases (case_id) WHERE last_at IS NULL;
CREATE INDEX IF NOT EXISTS cases_purge_unknown ON cases (case_id) WHERE purge_due IS NULL;
CREATE INDEX IF NOT EXISTS cases_purge_due ON cases (purge_due) WHERE purged = 0;
"""

# step 8: the status of each licence this node changed, as its last licence-event leaf
# says (relay.http.licence_status): written with the leaf, so a change the published
# list shows and the log does not (its transaction failed after the file was put in
# place) is logged when the request is made again
_STATUS_LOGGED = """
CREATE TABLE IF NOT EXISTS licence_status_logged (
    number TEXT NOT NULL, purpose TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (number, purpose)
);
"""

# step 9: the packets of a step stored and not queued yet (relay.cases.desk: written with
# the step, removed once the relay has queued them; a start sends what a stop left);
# ``at``: when the row was written or last claimed by a worker sending it
_UNSENT = """
CREATE TABLE IF NOT EXISTS case_unsent (
    case_id TEXT NOT NULL, version INTEGER NOT NULL, packets TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, PRIMARY KEY (case_id, version)
);
"""

MIGRATIONS = [
    Migration(1, "cases and applied case packets", SCHEMA, pg_ddl(SCHEMA)),
    Migration(2, "case events in rows of their own", **_EVENT_ROWS),
    Migration(3, "each case's clock facts and licence", _DERIVED, _DERIVED),
    Migration(4, "what the work queue shows of each case; cases listed by opening", _QUEUE, _QUEUE),
    Migration(5, "who issued each licence and its status-list index", *[_LICENCE_STATUS] * 2),
    Migration(6, "settled cases counted apart in the work queue", _SETTLED, _SETTLED),
    Migration(7, "when each case's content falls due for purging", _PURGE, _PURGE),
    Migration(8, "the licence status each licence-event leaf logged", *[_STATUS_LOGGED] * 2),
    Migration(9, "the packets of a step not queued yet", _UNSENT, _UNSENT),
]

NOT_DUE = 1e18
"""``purge_due`` of a case that has not ended (no purge falls due)."""

_STAFF_SEPARATOR = "\x1f"

_log = logging.getLogger("tongban.relay.cases")

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
                self._size -= old.size
            if kept.size > KEPT_TEXT_BYTES:
                return  # too long to keep: it would only push the others out
            self._size += kept.size
            self._copies[case_id] = kept
            while len(self._copies) > COPIES_KEPT or self._size > KEPT_TEXT_BYTES:
                _, dropped = self._copies.popitem(last=False)
                self._size -= dropped.size


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
    """A case copy as read from or written to its row (``stamp``), with the characters
    of its events' texts (``size``)."""

    stamp: str
    size: int
    case: Case


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


Derived = tuple[
    str, str | None, str | None, str, str | None, int | None, int, str, str, str, None,
    float | None, None,
]  # fmt: skip


def _derived(record: CaseRecord) -> Derived:
    """The row's columns derived from ``case``: clock facts, licence number and token
    (both None until a licence is issued), queue facts, the licence's issuer and
    highest status-list index (:func:`_licence_status`), and the queue's columns
    (:func:`_queue_columns`), when its latest event happened and ``purge_due`` (None:
    to compute)."""
    case = record.case
    view = case.view
    licensed = view.licence_number is not None and view.licence is not None
    token = view.licence if licensed else None
    clock, queue = ClockFacts.of(case), QueueFacts.of(case)
    issuer, index = ("", None) if token is None else _licence_status(token)
    return (
        _json(clock.to_json()),
        view.licence_number if licensed else None,
        token,
        _json(queue.to_json()),
        issuer,
        index,
        *_queue_columns(
            QueueEntry(
                case.header, case.me, case.state, record.version, record.opened_at, clock, queue
            )
        ),
        None if view.last_at is None else view.last_at.timestamp(),
        None,  # purge_due: computed again by the next purge
    )


def _queue_columns(entry: QueueEntry) -> tuple[int, str, str, str, None]:
    """settled, matter, partner, staff and queue_rank (None: computed when a queue
    first reads the settled case) of a case's row."""
    staff = "".join(f"{_STAFF_SEPARATOR}{name}" for name in entry.facts.staff)
    return (
        int(entry.settled),
        entry.header.matter,
        entry.partner,
        staff + _STAFF_SEPARATOR,
        None,
    )


@functools.lru_cache(maxsize=64)
def _licence_status(token: str) -> tuple[str, int | None]:
    """(issuing node, highest status-list index or None) of a licence token, decoded
    without verifying it (the case's step checked it); ``('', None)`` when it cannot be
    decoded. Cached: every later write of a licensed case asks again."""
    try:
        licence = parse_licence(token)
    except MalformedInput:
        return "", None
    return licence.issuer_node, max((e.index for e in licence.status), default=None)


class CaseSink(Protocol):
    """Told of changes inside their transaction (``conn``); raising rolls them back."""

    def changed(self, conn: Connection, old: CaseRecord | None, new: CaseRecord) -> None: ...

    def logged(self, conn: Connection, leaf: bytes) -> None: ...


class Held:
    """The transaction of :meth:`SqliteCaseStore.holding`: audit leaves, and the status
    of each licence as its last ``licence-event`` leaf logged it."""

    def __init__(self, store: SqliteCaseStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn

    def append(self, leaf: bytes) -> int:
        """Append an audit leaf; its index."""
        return self._store._audit(self._conn, leaf)

    def logged_status(self, number: str, purpose: str) -> bool:
        """Licence ``number``'s bit of ``purpose`` as the log last set it; False when
        no change was logged (or logged by a release that did not record it here)."""
        row: Any = self._conn.execute(
            "SELECT value FROM licence_status_logged WHERE number = ? AND purpose = ?",
            (number, purpose),
        ).fetchone()
        return row is not None and bool(row[0])

    def log_status(self, number: str, purpose: str, value: bool) -> None:
        """Record the bit a leaf appended in this transaction logs."""
        self._conn.execute(
            "INSERT INTO licence_status_logged (number, purpose, value) VALUES (?, ?, ?)"
            " ON CONFLICT (number, purpose) DO UPDATE SET value = excluded.value",
            (number, purpose, int(value)),
        )


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
        self._fill_derived()
        self._fill_licence_status()
        self._fill_queue_columns()
        self._fill_last_at()

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
        with write_transaction(self._conn) as conn:
            row_locks(conn, _LOCKS, case_ids)
            yield conn

    _COLUMNS = "me, header, stamp, access_hash, opened_at, version"
    _WITH_EVENTS = (
        "SELECT c.me, c.header, c.stamp, c.access_hash, c.opened_at, c.version, e.content"
        " FROM cases AS c LEFT JOIN case_events AS e ON e.case_id = c.case_id"
        " WHERE c.case_id = ? ORDER BY e.n"
    )

    @staticmethod
    def _record(row: Sequence[Any], case: Case) -> CaseRecord:
        access_hash, opened_at, version = row[3:6]
        return CaseRecord(case, access_hash, datetime.fromtimestamp(opened_at, UTC), int(version))

    def _kept_for(self, case_id: str, row: Sequence[Any]) -> Case | None:
        """The kept copy of ``case_id`` when ``row`` is the write it was kept from."""
        kept = self._kept.get(case_id)
        if kept is not None and kept.stamp == row[2]:
            return kept.case
        return None

    def _read(self, conn: Connection, case_id: str, *, keep: bool) -> CaseRecord | None:
        """``case_id``'s row and all its events in one statement (one snapshot: a write
        committed meanwhile is wholly in it or wholly not), decoded; kept if ``keep``."""
        rows = conn.execute(self._WITH_EVENTS, (case_id,)).fetchall()
        if not rows:
            return None
        me, header, stamp = rows[0][:3]
        texts = [str(r[6]) for r in rows if r[6] is not None]
        case = case_from_json(
            {"me": me, "header": json.loads(header), "events": [json.loads(t) for t in texts]}
        )
        if keep:
            self._kept.put(case_id, _Kept(stamp, sum(map(len, texts)), case))
        return self._record(rows[0], case)

    def _get(self, conn: Connection, case_id: str, *, keep: bool = True) -> CaseRecord | None:
        """The case's record: its row alone when the kept copy is that row's (a step
        reads as much however many events the case holds), else row and events (kept
        if ``keep``)."""
        row = conn.execute(
            f"SELECT {self._COLUMNS} FROM cases WHERE case_id = ?",  # noqa: S608 - constant
            (case_id,),
        ).fetchone()
        if row is None:
            return None
        case = self._kept_for(case_id, row)
        if case is not None:
            return self._record(row, case)
        return self._read(conn, case_id, keep=keep)

    def _put(self, conn: Connection, record: CaseRecord, old: CaseRecord | None) -> None:
        """Write ``record`` over ``old`` (``None``: a new case): the row, and the events
        from the first one that differs from ``old``'s (only the added ones when the
        events before them are unchanged, as after a step)."""
        case = record.case
        header = case.header
        events = case.events
        held = () if old is None else old.case.events
        same = 0
        if old is not None and old.case.header == header:
            if events[: len(held)] == held:  # a step: the events held, then new ones
                same = len(held)  # (compared in C, each pair by identity first)
            else:
                for mine, theirs in zip(events, held, strict=False):
                    if mine is not theirs and mine != theirs:
                        break
                    same += 1
        texts = [_json(e.to_content(header)) for e in events[same:]]
        header_text = _json(header.to_json())
        stamp = secrets.token_hex(8)
        values = (
            case.me.value,
            header_text,
            record.access_hash,
            record.opened_at.timestamp(),
            record.version,
            case.state.value,
            datetime.now(UTC).timestamp(),
            stamp,
            *_derived(record),
            header.case_id,
        )
        if old is None:
            conn.execute(
                "INSERT INTO cases (me, header, access_hash, opened_at, version, state,"
                " updated_at, stamp, clock, licence_number, licence, queue, licence_issuer,"
                " licence_index, settled, matter, partner, staff, queue_rank, last_at,"
                " purge_due, case_id, events)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'')",
                values,
            )
        else:
            conn.execute(
                "UPDATE cases SET me = ?, header = ?, access_hash = ?, opened_at = ?,"
                " version = ?, state = ?, updated_at = ?, stamp = ?, clock = ?,"
                " licence_number = ?, licence = ?, queue = ?, licence_issuer = ?,"
                " licence_index = ?, settled = ?, matter = ?, partner = ?, staff = ?,"
                " queue_rank = ?, last_at = ?, purge_due = ?, purged = 0 WHERE case_id = ?",
                values,
            )
        if same < len(held):
            conn.execute(
                "DELETE FROM case_events WHERE case_id = ? AND n >= ?", (header.case_id, same)
            )
        if texts:
            conn.executemany(
                "INSERT INTO case_events (case_id, n, content) VALUES (?,?,?)",
                [(header.case_id, same + i, t) for i, t in enumerate(texts)],
            )
        size = sum(map(len, texts))
        if same:  # the unchanged events' texts: at most the kept ones (unknown: too many)
            kept = self._kept.get(header.case_id)
            known = kept is not None and old is not None and kept.case is old.case
            size += kept.size if known and kept is not None else KEPT_TEXT_BYTES + 1
        self._kept.put(header.case_id, _Kept(stamp, size, case))

    def create(self, record: CaseRecord) -> None:
        with self._tx([record.case.header.case_id]) as conn:
            if self._get(conn, record.case.header.case_id) is not None:
                raise CaseError(f"case {record.case.header.case_id} exists", code="case-exists")
            self._put(conn, record, None)
            for sink in self._sinks:
                sink.changed(conn, None, record)

    def get(self, case_id: str, *, keep: bool = True) -> CaseRecord | None:
        """The case's record; ``keep=False`` for a listing's reads, which must not push
        out the copies of the cases being worked on."""
        return self._get(self._conn, case_id, keep=keep)

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
        self._put(conn, stored, old)
        for sink in self._sinks:
            sink.changed(conn, old, stored)
        return stored

    def update(
        self,
        case_id: str,
        change: Callable[[CaseRecord | None], CaseRecord | None],
        audit: Sequence[bytes] = (),
        *,
        unsent: tuple[str, datetime] | None = None,
        sent: int | None = None,
    ) -> CaseRecord | None:
        """Store ``change`` of the case. ``unsent``: the packets the step sends (JSON,
        :mod:`relay.cases.desk`) and the time, kept under the stored version until
        :meth:`sent`; ``sent``: the version whose packets go unsent no more (a step
        undone)."""
        changed = False

        def noting(old: CaseRecord | None) -> CaseRecord | None:
            nonlocal changed
            new = change(old)
            changed = new is not None and new is not old
            return new

        with self._tx([case_id]) as conn:
            after = self._change(conn, case_id, noting)
            if after is not None:
                for leaf in audit:  # durable with the step they record
                    self._audit(conn, leaf)
                if unsent is not None and changed:
                    if conn.execute(
                        "SELECT 1 FROM case_unsent WHERE case_id = ? LIMIT 1", (case_id,)
                    ).fetchone():  # its packets would be queued before the earlier step's
                        raise CaseError(
                            "an earlier step of this case is still being sent; try again in"
                            " a moment", code="step-in-flight",
                        )  # fmt: skip
                    conn.execute(
                        "INSERT INTO case_unsent (case_id, version, packets, at)"
                        " VALUES (?, ?, ?, ?)",
                        (case_id, after.version, unsent[0], unsent[1].timestamp()),
                    )
            if sent is not None:
                self._sent(conn, case_id, sent)
            return after

    @staticmethod
    def _sent(conn: Connection, case_id: str, version: int) -> None:
        conn.execute(
            "DELETE FROM case_unsent WHERE case_id = ? AND version = ?", (case_id, version)
        )

    def sent(self, case_id: str, version: int) -> None:
        """The packets of the case's step stored as ``version`` are queued."""
        with self._tx([case_id]) as conn:
            self._sent(conn, case_id, version)

    def claim_unsent(
        self, before: datetime, now: datetime, limit: int = 100, *, case_id: str | None = None
    ) -> list[tuple[str, int, str]]:
        """Up to ``limit`` steps written (or claimed) before ``before`` whose packets may
        be unqueued (of the case ``case_id`` only, when given), each claimed for this
        caller (its time set to ``now``): another worker claiming at once gets none of
        them. In the order of their cases and versions."""
        claimed = []
        with self._tx() as conn:
            if case_id is None:
                rows = conn.execute(
                    "SELECT case_id, version, packets FROM case_unsent WHERE at <= ?"
                    " ORDER BY case_id, version LIMIT ?",
                    (before.timestamp(), limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT case_id, version, packets FROM case_unsent"
                    " WHERE case_id = ? AND at <= ? ORDER BY version LIMIT ?",
                    (case_id, before.timestamp(), limit),
                ).fetchall()
            for case_id, version, packets in rows:
                cur = conn.execute(
                    "UPDATE case_unsent SET at = ? WHERE case_id = ? AND version = ? AND at <= ?",
                    (now.timestamp(), case_id, version, before.timestamp()),
                )
                if cur.rowcount == 1:
                    claimed.append((str(case_id), int(version), str(packets)))
        return claimed

    def append_audit(self, leaf: bytes, publish: Callable[[], None]) -> int:
        """Append ``leaf`` and run ``publish`` (the act it records) in one transaction:
        a failing ``publish`` rolls the leaf back. Returns the leaf's index."""
        with self._tx() as conn:
            index = self._audit(conn, leaf)
            publish()
            return index

    def holding(self, names: Sequence[str], work: Callable[[Held], T]) -> T:
        """Run ``work`` in one write transaction that holds ``names`` (against every
        worker of the node, as a case is held; prefix them, e.g. ``status-list:…``, so
        they never meet a case id). ``work`` gets a :class:`Held`: what it appends and
        records there is rolled back when it raises or the commit fails."""
        with self._tx(names) as conn:
            return work(Held(self, conn))

    def _pages(self, select: str, size: int = 200) -> Iterator[list[Any]]:
        """The rows of ``select`` (``SELECT case_id, … FROM cases WHERE …``), a page of
        ``size`` at a time in case-id order, each read once the one before was handled:
        a keyset over the case id, so no page is read twice, even when a row of it could
        not be handled (it waits for the next time)."""
        after = ""
        while rows := self._conn.execute(
            f"{select} AND case_id > ? ORDER BY case_id LIMIT {int(size)}", (after,)
        ).fetchall():
            after = str(rows[-1][0])
            yield rows

    def _fill_derived(self) -> None:
        """Store the clock facts, licence and queue facts of the cases written before
        schema steps 3 and 4 (once, when a store first opens on them; a few hundred cases
        per transaction). A case whose copy cannot be decoded is logged and left without
        them (a listing reads it whole, as before): the node still starts."""
        for rows in self._pages("SELECT case_id FROM cases WHERE (clock IS NULL OR queue IS NULL)"):
            missing = [str(r[0]) for r in rows]
            with self._tx(missing) as conn:
                for case_id in missing:
                    try:
                        record = self._read(conn, case_id, keep=False)
                        derived = None if record is None else _derived(record)
                    except (ValueError, KeyError, TypeError, CaseError) as exc:
                        _log.error("case %s: clock and queue facts not stored (%s)", case_id, exc)
                        continue
                    if derived is not None:
                        conn.execute(
                            "UPDATE cases SET clock = ?, licence_number = ?, licence = ?,"
                            " queue = ?, licence_issuer = ?, licence_index = ?, settled = ?,"
                            " matter = ?, partner = ?, staff = ?, queue_rank = ?, last_at = ?,"
                            " purge_due = ? WHERE case_id = ? AND (clock IS NULL OR queue IS NULL)",
                            (*derived, case_id),
                        )

    def _fill_licence_status(self) -> None:
        """Store the issuer and status-list index of the licences issued before schema
        step 5, and an empty issuer for the cases without one (once, when a store first
        opens on them: afterwards no row has a NULL issuer, so this finds none)."""
        for rows in self._pages("SELECT case_id, licence FROM cases WHERE licence_issuer IS NULL"):
            with self._tx([str(r[0]) for r in rows]) as conn:
                conn.executemany(
                    "UPDATE cases SET licence_issuer = ?, licence_index = ?"
                    " WHERE case_id = ? AND licence = ?",
                    [(*_licence_status(str(t)), c, t) for c, t in rows if t is not None],
                )
                conn.executemany(
                    "UPDATE cases SET licence_issuer = '' WHERE case_id = ? AND licence IS NULL",
                    [(c,) for c, t in rows if t is None],
                )

    def clocks(self, *, settled: bool = True) -> list[tuple[str, ClockFacts]]:
        """Every case's id and clock facts, oldest first, without reading its events;
        without the settled cases unless ``settled`` (their clocks no longer run: an
        index of the others, so a node with years of cases reads only those in
        progress)."""
        out = []
        where = "" if settled else " WHERE settled = 0"
        for case_id, text in self._conn.execute(
            f"SELECT case_id, clock FROM cases{where} ORDER BY opened_at, case_id"  # noqa: S608
        ).fetchall():
            if text is not None:
                out.append((str(case_id), ClockFacts.from_json(json.loads(text))))
            elif (record := self._read(self._conn, case_id, keep=False)) is not None:
                out.append((str(case_id), ClockFacts.of(record.case)))  # not filled yet
        return out

    _QUEUE_COLUMNS = "case_id, me, header, state, version, opened_at, clock, queue"

    def _entry(self, row: Sequence[Any]) -> QueueEntry | None:
        """The queue entry of a row of :attr:`_QUEUE_COLUMNS` (its case read whole when
        the row's facts are not filled yet; None when the case is gone)."""
        case_id, me, header, state, version, opened_at, clock, queue = row
        opened = datetime.fromtimestamp(opened_at, UTC)
        if clock is None or queue is None:  # not filled yet
            record = self._read(self._conn, case_id, keep=False)
            return None if record is None else QueueEntry.of(record.case, record.version, opened)
        return QueueEntry(
            CaseHeader.from_json(json.loads(header)),
            Office(me),
            CaseState(state),
            int(version),
            opened,
            ClockFacts.from_json(json.loads(clock)),
            QueueFacts.from_json(json.loads(queue)),
        )

    def queue_entries(self, *, settled: bool = True) -> list[QueueEntry]:
        """Every case as the work queue sees it, oldest first, from its row alone;
        without the settled ones (:attr:`QueueEntry.settled`) unless ``settled``."""
        where = "" if settled else " WHERE settled = 0"
        rows = self._conn.execute(
            f"SELECT {self._QUEUE_COLUMNS} FROM cases{where}"  # noqa: S608 - constants
            " ORDER BY opened_at, case_id"
        ).fetchall()
        return [entry for row in rows if (entry := self._entry(row)) is not None]

    def rank_settled(self, rank_of: Callable[[ClockFacts], int], calendar: str) -> int:
        """Store the queue rank (:func:`relay.cases.queue.queue_rank`, from ``rank_of``)
        of the settled cases written since the last time; how many. When ``calendar``
        (the working calendar's fingerprint) is not the one the stored ranks were
        computed with, every settled case is ranked again (once per calendar change).
        A case written meanwhile keeps its row (its stamp changed)."""
        row = self._conn.execute("SELECT calendar FROM queue_ranks").fetchone()
        if row is None or row[0] != calendar:
            with self._tx() as conn:
                conn.execute(
                    "UPDATE cases SET queue_rank = NULL WHERE settled = 1"
                    " AND queue_rank IS NOT NULL"
                )
                conn.execute("DELETE FROM queue_ranks")
                conn.execute("INSERT INTO queue_ranks (calendar) VALUES (?)", (calendar,))
        ranked = 0
        for rows in self._pages(
            "SELECT case_id, stamp, clock FROM cases WHERE settled = 1 AND queue_rank IS NULL", 500
        ):
            ranks = [
                (rank_of(ClockFacts.from_json(json.loads(clock))), case_id, stamp)
                for case_id, stamp, clock in rows
                if clock is not None
            ]
            if ranks:
                with self._tx() as conn:
                    conn.executemany(
                        "UPDATE cases SET queue_rank = ? WHERE case_id = ? AND stamp = ?"
                        " AND settled = 1",
                        ranks,
                    )
                ranked += len(ranks)
        return ranked

    def settled_queue(
        self,
        *,
        matter: str = "",
        partner: str = "",
        mine: str = "",
        overdue: bool = False,
        state: str = "",
        room: Callable[[int, str], int | None] | None = None,
    ) -> SettledQueue:
        """The settled cases a work queue shows: how many in each state have this
        ``matter``, this ``partner``, an act of ours through ``mine`` and (``overdue``)
        a clock that is not green (an empty filter keeps every case), and the first of
        them in ``state`` (every state when empty) by queue rank, then case id: as many
        as ``room(rank, case id of the first)`` says (None: all; no ``room``: none).
        Counted on the partial indexes of the settled cases (no row decoded); only the
        rows shown are read."""
        where, args = ["settled = 1"], list[str | int]()
        if matter:
            where.append("matter = ?")
            args.append(matter)
        if partner:
            where.append("partner = ?")
            args.append(partner)
        if mine:  # the name whole, as written (LIKE would ignore ASCII case on SQLite)
            find = (
                "instr(staff, ?)"
                if isinstance(self._conn, sqlite3.Connection)
                else ("strpos(staff, ?)")
            )
            where.append(f"{find} > 0")
            args.append(f"{_STAFF_SEPARATOR}{mine}{_STAFF_SEPARATOR}")
        if overdue:  # not green; a rank not stored yet (written meanwhile) counts too
            where.append(f"(queue_rank IS NULL OR queue_rank % {len(COLOUR_RANK)} != ?)")
            args.append(COLOUR_RANK[Colour.GREEN])
        condition = " AND ".join(where)
        counts = {
            str(state_): int(n)
            for state_, n in self._conn.execute(
                f"SELECT state, COUNT(*) FROM cases WHERE {condition} GROUP BY state",  # noqa: S608
                args,
            ).fetchall()
        }
        if state:
            condition += " AND state = ?"
            args.append(state)
        if room is None:
            return SettledQueue(counts, ())
        ordered = f"FROM cases WHERE {condition} ORDER BY queue_rank, case_id"
        first = self._conn.execute(
            f"SELECT queue_rank, case_id {ordered} LIMIT 1",
            args,
        ).fetchone()
        if first is None:
            return SettledQueue(counts, ())
        rows_left = room(int(first[0] or 0), str(first[1]))
        if rows_left == 0:
            return SettledQueue(counts, ())
        page = "" if rows_left is None else f" LIMIT {int(rows_left)}"
        rows = self._conn.execute(
            f"SELECT {self._QUEUE_COLUMNS} {ordered}{page}",
            args,
        ).fetchall()
        entries = tuple(entry for row in rows if (entry := self._entry(row)) is not None)
        return SettledQueue(counts, entries)

    def _fill_queue_columns(self) -> None:
        """Mark the cases written before schema step 6 settled or not and store their
        queue's columns (once, when a store first opens on them), from their rows'
        columns: no event decoded. A row without its facts (its case could not be
        decoded) is taken as in progress (the queue reads it whole, as before)."""
        unmarked = f"SELECT {self._QUEUE_COLUMNS}, stamp FROM cases WHERE matter IS NULL"  # noqa: S608
        for rows in self._pages(unmarked):
            values: list[tuple[Any, ...]] = []
            for *row, stamp in rows:
                if row[6] is None or row[7] is None:  # marked in progress, read whole
                    values.append((0, "", "", _STAFF_SEPARATOR, None, row[0], stamp))
                    continue
                entry = self._entry(row)
                assert entry is not None
                values.append((*_queue_columns(entry), row[0], stamp))
            with self._tx([str(r[0]) for r in rows]) as conn:
                conn.executemany(
                    "UPDATE cases SET settled = ?, matter = ?, partner = ?, staff = ?,"
                    " queue_rank = ? WHERE case_id = ? AND stamp = ?",
                    values,
                )

    def _fill_last_at(self) -> None:
        """Store when the latest event of each case written before schema step 7
        happened (once, when a store first opens on them: each such case read whole)."""
        for rows in self._pages("SELECT case_id FROM cases WHERE last_at IS NULL"):
            with self._tx([str(r[0]) for r in rows]) as conn:
                for (case_id,) in rows:
                    try:
                        record = self._read(conn, case_id, keep=False)
                    except (ValueError, KeyError, TypeError, CaseError) as exc:
                        _log.error("case %s: its last step's time not stored (%s)", case_id, exc)
                        continue
                    if record is not None and record.case.view.last_at is not None:
                        conn.execute(
                            "UPDATE cases SET last_at = ?, purge_due = NULL WHERE case_id = ?",
                            (record.case.view.last_at.timestamp(), case_id),
                        )

    def schedule_purges(
        self, due_of: Callable[[CaseHeader, CaseState, datetime, datetime | None], float]
    ) -> int:
        """Store ``purge_due`` of the cases written since the last time, from
        ``due_of(header, state, opened_at, last_at)`` (a timestamp, :data:`NOT_DUE` while
        the case has not ended; raising :class:`CaseError` leaves it to the next time);
        how many. Read from the rows' columns: no event is decoded."""
        scheduled = 0
        for rows in self._pages(
            "SELECT case_id, stamp, header, state, opened_at, last_at FROM cases"
            " WHERE purge_due IS NULL",
            500,
        ):
            dues = []
            for case_id, stamp, header, state, opened_at, last_at in rows:
                try:
                    due = due_of(
                        CaseHeader.from_json(json.loads(header)),
                        CaseState(state),
                        datetime.fromtimestamp(opened_at, UTC),
                        None if last_at is None else datetime.fromtimestamp(last_at, UTC),
                    )
                except CaseError as exc:
                    _log.warning("case %s: retention unknown (%s)", case_id, exc)
                    continue
                dues.append((due, case_id, stamp))
            if dues:
                with self._tx() as conn:
                    conn.executemany(
                        "UPDATE cases SET purge_due = ? WHERE case_id = ? AND stamp = ?", dues
                    )
                scheduled += len(dues)
        return scheduled

    def purges_due(self, now: datetime) -> list[str]:
        """The cases not purged yet whose ``purge_due`` is ``now`` or before, the
        earliest first: a range of their partial index."""
        return [
            str(r[0])
            for r in self._conn.execute(
                "SELECT case_id FROM cases WHERE purged = 0 AND purge_due <= ?"
                " ORDER BY purge_due, case_id",
                (now.timestamp(),),
            ).fetchall()
        ]

    def mark_purged(self, case_id: str) -> None:
        """Note that ``case_id``'s content was purged (it is not read for it again)."""
        with self._tx([case_id]) as conn:
            conn.execute("UPDATE cases SET purged = 1 WHERE case_id = ?", (case_id,))

    def licence(self, number: str) -> tuple[str, str] | None:
        """(token, case id) of the e-licence numbered ``number`` (the oldest case's, as
        :meth:`list_cases` orders them), or None."""
        row = self._conn.execute(
            "SELECT licence, case_id FROM cases WHERE licence_number = ?"
            " AND licence IS NOT NULL ORDER BY opened_at, case_id LIMIT 1",
            (number,),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def next_status_index(self, issuer: str) -> int:
        """One past the highest status-list index of the e-licences ``issuer`` issued in
        a case here (0 for the first): one probe of ``cases_licence_index``."""
        row = self._conn.execute(
            "SELECT MAX(licence_index) FROM cases WHERE licence_issuer = ?", (issuer,)
        ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def list_cases(
        self, *, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[CaseRecord]:
        """Every case, oldest first (by when it was opened, then its id), or a page of
        them: at most ``limit``, those after the position ``after`` (``(opened_at
        timestamp, case id)`` of the last case of the page before; an index, so a page
        costs the same however many cases the node holds). The kept copy of a case whose
        row is its write is taken, the others are read with their events (and not kept:
        a listing would push out the copies of the cases being worked on)."""
        where, args = "", []
        if after is not None:
            where, args = " WHERE (opened_at, case_id) > (?, ?)", [after[0], after[1]]
        page = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self._conn.execute(
            f"SELECT case_id, {self._COLUMNS} FROM cases{where}"  # noqa: S608 - constants
            f" ORDER BY opened_at, case_id{page}",
            args,
        ).fetchall()
        out = []
        for case_id, *row in rows:
            case = self._kept_for(case_id, row)
            if case is not None:
                record: CaseRecord | None = self._record(row, case)
            else:
                record = self._read(self._conn, case_id, keep=False)
            if record is not None:  # None: deleted since the listing's statement
                out.append(record)
        return out

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
