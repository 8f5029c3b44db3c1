"""The integration tables in the node's database, and the sink that fills the outbox.

Tables (component ``integration``, migrated when the store opens; on SQLite in
``relay.sqlite3`` next to the case tables, else in the configured PostgreSQL)::

    integration_events   seq PK, event_id UNIQUE, type, case_id, at, body JSON
    webhook_deliveries   (event_id, target) PK, seq, state (pending | delivered |
                         parked), attempts, next_at, last_error, delivered_at
    webhook_delivered    target PK, n                 (deliveries taken, step 2)
    case_applicants      case_id PK, applicant      per-applicant reports and export
    personal_data_reads  seq PK, at, who, purpose, case_id, applicant, what
    sla_marks            (case_id, colour) PK        (the SLA events already made)

:class:`OutboxSink` is the case store's :class:`~relay.cases.sqlite_store.CaseSink`:
inside the transaction of a case change it writes the events the change makes
(:func:`relay.integration.events.events_of_change`) and one delivery row per webhook
target whose filter takes the event, so an event exists exactly when its change does.
Events found by looking (a partner's refusal, an SLA colour) are written by
:meth:`IntegrationStore.record` in their own transaction; ids make both idempotent.

With several workers on PostgreSQL, ``seq`` is drawn when an event is written and the
events of one case are written under that case's lock (the case store's), so one case's
events keep their order in ``seq`` and in delivery; events of different cases may commit
out of ``seq`` order, which no receiver can tell from a slower transaction. Every write
is a single statement or guarded by a constraint (``event_id`` unique, the deliveries'
and marks' primary keys), so two workers writing the same event keep one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agreements.calendar import WorkingCalendar
from relay.audit.leaves import LeafKind, LicenceEvent, decode_leaf
from relay.cases.application import applicant_key
from relay.cases.model import EventKind
from relay.cases.queue import QueueEntry
from relay.cases.sla import ClockFacts, Colour
from relay.cases.store import CaseRecord
from relay.config import Webhook
from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import connection_for, write_transaction
from relay.db.pg import pg_ddl
from relay.integration.events import (
    IntegrationEvent,
    events_of_change,
    revoked_event,
    sla_event,
    step_event_id,
    taken_back_event,
)

__all__ = ["MIGRATIONS", "SCHEMA", "Delivery", "IntegrationStore", "OutboxSink", "Read"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS integration_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL, case_id TEXT NOT NULL, at REAL NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id TEXT NOT NULL, target TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    last_error TEXT, delivered_at REAL, PRIMARY KEY (event_id, target)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (target, state, seq);
CREATE TABLE IF NOT EXISTS case_applicants (case_id TEXT PRIMARY KEY, applicant TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS case_applicants_applicant ON case_applicants (applicant);
CREATE TABLE IF NOT EXISTS personal_data_reads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, who TEXT NOT NULL,
    purpose TEXT NOT NULL, case_id TEXT NOT NULL, applicant TEXT, what TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS personal_data_reads_case ON personal_data_reads (case_id);
CREATE TABLE IF NOT EXISTS sla_marks (
    case_id TEXT NOT NULL, colour TEXT NOT NULL, PRIMARY KEY (case_id, colour)
);
"""

# step 2: how many deliveries each target has taken, counted as they are made, so the
# gauges and the alert board count only what is pending or parked (an index range each)
# and never every delivery kept over the years; filled from the rows held before
_DELIVERED = """
CREATE TABLE IF NOT EXISTS webhook_delivered (target TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO webhook_delivered (target, n)
SELECT target, count(*) FROM webhook_deliveries WHERE state = 'delivered' GROUP BY target;
"""

# an applicant's reads are an index range, not a scan of every read ever logged
_READS_BY_APPLICANT = """
CREATE INDEX IF NOT EXISTS personal_data_reads_applicant
    ON personal_data_reads (applicant, seq);
"""

MIGRATIONS = [
    Migration(1, "webhook event outbox and personal data", SCHEMA, pg_ddl(SCHEMA)),
    Migration(2, "deliveries taken, counted per target", _DELIVERED, pg_ddl(_DELIVERED)),
    Migration(
        3, "personal data reads by applicant", _READS_BY_APPLICANT, pg_ddl(_READS_BY_APPLICANT)
    ),
]


@dataclass(frozen=True)
class Delivery:
    event_id: str
    target: str
    seq: int
    state: str
    attempts: int
    next_at: datetime
    last_error: str | None
    body: str


@dataclass(frozen=True)
class Read:
    """One read of a case's personal data."""

    at: datetime
    who: str
    purpose: str
    case_id: str
    applicant: str | None
    what: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(), "who": self.who, "purpose": self.purpose,
            "case": self.case_id, "applicant": self.applicant, "what": self.what,
        }  # fmt: skip


def _insert_event(
    conn: Connection, event: IntegrationEvent, node_id: str, targets: Sequence[Webhook]
) -> bool:
    body = json.dumps(event.body(node_id), ensure_ascii=False, sort_keys=True)
    row = conn.execute(
        "INSERT INTO integration_events (event_id, type, case_id, at, body)"
        " VALUES (?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING RETURNING seq",
        (event.id, event.type.value, event.case_id, event.at.timestamp(), body),
    ).fetchone()
    if row is None:
        return False
    seq = int(row[0])
    conn.executemany(
        "INSERT OR IGNORE INTO webhook_deliveries (event_id, target, seq, state, next_at)"
        " VALUES (?,?,?,'pending',?)",
        [(event.id, t.url, seq, event.at.timestamp()) for t in targets if event.type in t.events],
    )
    return True


def _withdraw(conn: Connection, event_id: str) -> bool:
    """Drop an event whose change was taken back, unless a target already has it (or is
    being sent it): True when one may, and must hear that the step is gone."""
    reached = conn.execute(
        "SELECT 1 FROM webhook_deliveries WHERE event_id = ?"
        " AND (state = 'delivered' OR attempts > 0)",
        (event_id,),
    ).fetchone()
    if reached is not None:
        return True
    conn.execute("DELETE FROM webhook_deliveries WHERE event_id = ?", (event_id,))
    conn.execute("DELETE FROM integration_events WHERE event_id = ?", (event_id,))
    return False


def _settled(record: CaseRecord) -> bool:
    """:attr:`relay.cases.queue.QueueEntry.settled` of a stored case copy."""
    return QueueEntry.of(record.case, record.version, record.opened_at).settled


class OutboxSink:
    """Writes a case change's events and deliveries in the change's transaction."""

    def __init__(
        self,
        node_id: str,
        targets: Sequence[Webhook],
        clock: Any,
        calendar: Callable[[], WorkingCalendar] | None = None,
    ) -> None:
        self._node = node_id
        self._targets = tuple(targets)
        self._clock = clock
        self._calendar = calendar
        self.written = 0  # events written (the dispatcher is woken when it grows)

    def changed(self, conn: Connection, old: CaseRecord | None, new: CaseRecord) -> None:
        at = self._clock()
        for event in events_of_change(self._node, old, new, at):
            self.written += _insert_event(conn, event, self._node, self._targets)
        self._settled_late(conn, old, new, at)
        if old is not None:  # a step taken back (the relay refused to queue it)
            kept = {e.ref for e in new.case.events}
            gone = [e for e in old.case.events if e.ref not in kept]
            case_id = new.case.header.case_id
            for e in gone:
                if _withdraw(conn, event_id := step_event_id(self._node, case_id, e)):
                    back = taken_back_event(self._node, event_id, case_id, at)
                    self.written += _insert_event(conn, back, self._node, self._targets)
        submit = next((e for e in new.case.events if e.kind is EventKind.SUBMIT), None)
        applicant = applicant_key(submit.details.get("application") if submit else None)
        if applicant is not None:
            conn.execute(
                "INSERT OR IGNORE INTO case_applicants (case_id, applicant) VALUES (?, ?)",
                (new.case.header.case_id, applicant),
            )

    def _settled_late(
        self, conn: Connection, old: CaseRecord | None, new: CaseRecord, at: datetime
    ) -> None:
        """The SLA event of a case settled yellow or red by this change (its clock stopped
        for good), made here: the integration scan judges the cases in progress only, so a
        case that turned red and ended between two scans would otherwise never have it. An
        event the scan made already is not made again (the same id and mark)."""
        if self._calendar is None or not _settled(new) or (old is not None and _settled(old)):
            return
        colour = ClockFacts.of(new.case).case_clock(self._calendar(), at).colour
        if colour not in (Colour.YELLOW, Colour.RED):
            return
        case_id = new.case.header.case_id
        conn.execute("INSERT OR IGNORE INTO sla_marks VALUES (?, ?)", (case_id, colour.value))
        event = sla_event(
            self._node, case_id=case_id, colour=colour.value, matter=new.case.header.matter, at=at
        )
        self.written += _insert_event(conn, event, self._node, self._targets)

    def logged(self, conn: Connection, leaf: bytes) -> None:
        decoded = decode_leaf(leaf)
        if decoded.kind is not LeafKind.LICENCE_EVENT:
            return
        body: Any = decoded.body
        if body.event == LicenceEvent.REVOKED.value:
            event = revoked_event(self._node, case_id=body.case or "", number=body.id,
                                  at=self._clock())  # fmt: skip
            self.written += _insert_event(conn, event, self._node, self._targets)


class IntegrationStore:
    """The integration tables of one node on ``target``, its own connection (from
    :func:`relay.db.open.open_connection`, or the path of the relay's SQLite file)."""

    def __init__(self, target: Path | Connection, node_id: str, targets: Sequence[Webhook]) -> None:
        self._conn = connection_for(target)
        self._writing = threading.RLock()
        migrate(self._conn, "integration", MIGRATIONS)
        self._node = node_id
        self._targets = tuple(targets)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One write transaction on the store's connection. The scan, the purge and a
        dispatcher per webhook target write from the event loop and from worker threads
        at once: the lock keeps each transaction whole (on one connection, a second
        ``BEGIN`` would fail, or a statement join another thread's transaction)."""
        with self._writing, write_transaction(self._conn) as conn:
            yield conn

    # -- events found by looking -------------------------------------------------------

    def record(self, event: IntegrationEvent, *, sla_mark: tuple[str, str] | None = None) -> bool:
        """Store ``event`` (and its SLA mark) once; whether it was new."""
        with self._tx() as conn:
            if sla_mark is not None:
                conn.execute("INSERT OR IGNORE INTO sla_marks VALUES (?, ?)", sla_mark)
            return _insert_event(conn, event, self._node, self._targets)

    def sla_marked(self, case_id: str, colour: str) -> bool:
        """Whether the SLA event of ``case_id`` turning ``colour`` was made (a key lookup:
        the scan asks for the cases flagged now, never reads every mark kept)."""
        row = self._conn.execute(
            "SELECT 1 FROM sla_marks WHERE case_id = ? AND colour = ?", (case_id, colour)
        ).fetchone()
        return row is not None

    def known_event(self, event_id: str) -> bool:
        """Whether an event of this id is stored (its unique index; never a scan)."""
        row = self._conn.execute(
            "SELECT 1 FROM integration_events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return row is not None

    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first (for tests and tools; the API pages them)."""
        return [event for _, event in self.events_after(0)]

    def events_after(
        self, after: int, limit: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """(seq, event) of the events after ``seq`` ``after``, oldest first, at most
        ``limit``: a range of the primary key, so a page costs the same however many
        events were ever made."""
        page = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self._conn.execute(
            f"SELECT seq, body FROM integration_events WHERE seq > ? ORDER BY seq{page}",  # noqa: S608
            (after,),
        ).fetchall()
        return [(int(seq), json.loads(body)) for seq, body in rows]

    # -- deliveries ------------------------------------------------------------------

    def next_delivery(self, target: str) -> Delivery | None:
        """The oldest pending delivery to ``target`` (they go in order)."""
        row = self._conn.execute(
            "SELECT d.event_id, d.target, d.seq, d.state, d.attempts, d.next_at, d.last_error,"
            " e.body FROM webhook_deliveries d JOIN integration_events e USING (event_id)"
            " WHERE d.target = ? AND d.state = 'pending' ORDER BY d.seq LIMIT 1",
            (target,),
        ).fetchone()
        if row is None:
            return None
        event_id, target_url, seq, state, attempts, next_at, last_error, body = row
        when = datetime.fromtimestamp(next_at, UTC)
        return Delivery(event_id, target_url, seq, state, attempts, when, last_error, body)

    def delivered(self, event_id: str, target: str, at: datetime) -> None:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,"
                " delivered_at = ?, last_error = NULL"
                " WHERE event_id = ? AND target = ? AND state != 'delivered'",
                (at.timestamp(), event_id, target),
            )
            if cur.rowcount == 1:  # counted once, in the transaction that delivers it
                conn.execute(
                    "INSERT INTO webhook_delivered (target, n) VALUES (?, 1)"
                    " ON CONFLICT (target) DO UPDATE SET n = webhook_delivered.n + 1",
                    (target,),
                )

    def failed(self, event_id: str, target: str, error: str, *, retry_at: datetime | None) -> None:
        """A failed attempt: retried at ``retry_at``, or parked when it is None."""
        with self._tx() as conn:
            if retry_at is None:
                conn.execute(
                    "UPDATE webhook_deliveries SET state = 'parked', attempts = attempts + 1,"
                    " last_error = ? WHERE event_id = ? AND target = ?",
                    (error, event_id, target),
                )
            else:
                conn.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?,"
                    " next_at = ? WHERE event_id = ? AND target = ?",
                    (error, retry_at.timestamp(), event_id, target),
                )

    def target_urls(self) -> frozenset[str]:
        """The URLs of the configured webhook targets."""
        return frozenset(t.url for t in self._targets)

    def retry_parked(self, target: str, now: datetime) -> int:
        """Put ``target``'s parked deliveries back in line (after the target is fixed)."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ?"
                " WHERE target = ? AND state = 'parked'",
                (now.timestamp(), target),
            )
            return cur.rowcount

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """(target, state) -> deliveries, every configured target and state present (for
        the gauges): :meth:`_counts` of each target."""
        return {
            (t.url, state): n for t in self._targets for state, n in self._counts(t.url).items()
        }

    def _counts(self, target: str) -> dict[str, int]:
        """``target``'s deliveries by state: those pending and parked counted on the
        ``webhook_deliveries_due`` index (a range of what is in progress), those taken
        read from their counter (``webhook_delivered``): never every delivery kept."""
        counts = {}
        args: tuple[str, ...]
        for state in ("pending", "delivered", "parked"):
            if state == "delivered":
                sql, args = "SELECT n FROM webhook_delivered WHERE target = ?", (target,)
            else:
                sql = "SELECT count(*) FROM webhook_deliveries WHERE target = ? AND state = ?"
                args = (target, state)
            row: Any = self._conn.execute(sql, args).fetchone()
            counts[state] = 0 if row is None else int(row[0])
        return counts

    def delivery_status(self) -> list[dict[str, Any]]:
        """Per target: counts by state, and the parked and failing deliveries."""
        out = []
        for target in self._targets:
            counts = self._counts(target.url)
            troubled = [  # with each event's type and case (the page reads no other list)
                {"event": r[0], "state": r[1], "attempts": r[2], "error": r[3], "type": r[4],
                 "case": r[5]}
                for r in self._conn.execute(
                    "SELECT d.event_id, d.state, d.attempts, d.last_error, e.type, e.case_id"
                    " FROM webhook_deliveries d JOIN integration_events e"
                    " ON e.event_id = d.event_id"
                    # two ranges of the index (parked, pending), not every delivery kept
                    " WHERE d.target = ? AND d.state IN ('parked', 'pending')"
                    " AND (d.state = 'parked' OR d.attempts > 0) ORDER BY d.seq LIMIT 50",
                    (target.url,),
                )
            ]  # fmt: skip
            out.append({"target": target.url, **counts, "troubled": troubled})
        return out

    # -- personal data ---------------------------------------------------------------

    def applicant_of(self, case_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT applicant FROM case_applicants WHERE case_id = ?", (case_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def cases_of(self, applicant: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT case_id FROM case_applicants WHERE applicant = ? ORDER BY case_id",
            (applicant,),
        )
        return [r[0] for r in rows]

    def log_read(self, read: Read) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO personal_data_reads (at, who, purpose, case_id, applicant, what)"
                " VALUES (?,?,?,?,?,?)",
                (read.at.timestamp(), read.who, read.purpose, read.case_id, read.applicant,
                 read.what),
            )  # fmt: skip

    def reads(self, *, applicant: str | None = None, case_id: str | None = None) -> list[Read]:
        sql = "SELECT at, who, purpose, case_id, applicant, what FROM personal_data_reads"
        if applicant is not None:
            rows = self._conn.execute(f"{sql} WHERE applicant = ? ORDER BY seq", (applicant,))
        elif case_id is not None:
            rows = self._conn.execute(f"{sql} WHERE case_id = ? ORDER BY seq", (case_id,))
        else:
            rows = self._conn.execute(f"{sql} ORDER BY seq")
        return [Read(datetime.fromtimestamp(r[0], UTC), *r[1:]) for r in rows]

    def forget_applicant_of(self, case_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM case_applicants WHERE case_id = ?", (case_id,))
