"""The case store on both backends (SQLite and a real PostgreSQL), and what several
workers sharing the PostgreSQL tables need: no lost update, no deadlock."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from casekit import T0, details_for, header, later
from dbkit import Database

from relay.cases.errors import CaseError
from relay.cases.model import EventKind, Office
from relay.cases.queue import QueueEntry
from relay.cases.sla import ClockFacts
from relay.cases.sqlite_store import MIGRATIONS, SCHEMA, SqliteCaseStore, case_to_json
from relay.cases.store import AppliedPacket, CaseRecord
from relay.cases.workflow import Case, Command, transition
from relay.db.migrations import Connection, migrate, schema_version
from relay.db.open import database_errors, sqlite_connection


def record(case_id: str, access: str | None = "0") -> CaseRecord:
    return CaseRecord(Case(header(case_id), Office.RECEIVING), access, T0, 1)


def bump(old: CaseRecord | None) -> CaseRecord | None:
    """The access hash as a counter: a lost update shows as a missing increment."""
    assert old is not None
    return replace(old, access_hash=str(int(old.access_hash or "0") + 1))


def test_cases_are_stored_read_back_and_listed(database: Database) -> None:
    store = SqliteCaseStore(database.connect())
    store.create(record("WC-B"))
    store.create(record("WC-A", access=None))
    with pytest.raises(CaseError) as taken:
        store.create(record("WC-A"))
    assert taken.value.code == "case-exists"
    got = store.get("WC-A")
    assert got is not None
    assert got.case == record("WC-A").case
    assert (got.access_hash, got.opened_at, got.version) == (None, T0, 1)
    assert store.get("WC-NONE") is None
    assert [r.case.header.case_id for r in store.list_cases()] == ["WC-A", "WC-B"]
    store.close()
    reopened = SqliteCaseStore(database.connect())
    assert reopened.get("WC-B") == record("WC-B")
    assert schema_version(database.connect(), "cases") == len(MIGRATIONS)
    reopened.close()


def test_update_bumps_the_version_and_none_leaves_the_case(database: Database) -> None:
    store = SqliteCaseStore(database.connect())
    store.create(record("WC-1"))
    after = store.update("WC-1", bump)
    assert after is not None
    assert (after.access_hash, after.version) == ("1", 2)
    assert store.update("WC-1", lambda old: None) == after
    assert store.get("WC-1") == after
    assert store.update("WC-NEW", lambda old: record("WC-NEW") if old is None else None) is not None
    assert store.get("WC-NEW") is not None
    store.close()


def test_packets_apply_in_order_in_one_transaction_and_are_recorded_once(
    database: Database,
) -> None:
    store = SqliteCaseStore(database.connect())
    store.create(record("WC-1"))

    def applied(packet_id: str, case_id: str = "WC-1"):
        def change(old: CaseRecord | None) -> tuple[CaseRecord | None, AppliedPacket]:
            return bump(old), AppliedPacket(packet_id, case_id, "applied", old.access_hash or "")

        return (packet_id, case_id, change)

    out = store.apply_packets([applied("p1"), applied("p2"), applied("p3")])
    assert [(a.packet_id, a.detail) for a in out] == [("p1", "0"), ("p2", "1"), ("p3", "2")]
    stored = store.get("WC-1")
    assert stored is not None
    assert (stored.access_hash, stored.version) == ("3", 4)
    assert store.unapplied(["p0", "p1", "p3", "p9"]) == ["p0", "p9"]
    store.apply_packet("p1", "WC-1", lambda old: (None, AppliedPacket("p1", "WC-1", "dup", "")))
    assert [a.packet_id for a in store.packets("WC-1")] == ["p1", "p2", "p3"]
    assert store.packets("WC-1")[0].outcome == "applied"  # the first outcome stays

    def broken(old: CaseRecord | None) -> tuple[CaseRecord | None, AppliedPacket]:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        store.apply_packets([applied("p4"), ("p5", "WC-1", broken)])
    assert store.unapplied(["p4", "p5"]) == ["p4", "p5"]  # nothing of the batch stayed
    stored = store.get("WC-1")
    assert stored is not None
    assert stored.version == 4
    store.close()


class Sink:
    def __init__(self, table_conn: Connection, fail: bool = False) -> None:
        self.fail = fail
        table_conn.execute("CREATE TABLE sink_rows (case_id TEXT NOT NULL, version INTEGER)")

    def changed(self, conn: Connection, old: CaseRecord | None, new: CaseRecord) -> None:
        conn.execute(
            "INSERT INTO sink_rows (case_id, version) VALUES (?, ?)",
            (new.case.header.case_id, new.version),
        )
        if self.fail:
            raise RuntimeError("sink refused")

    def logged(self, conn: Connection, leaf: bytes) -> None:
        raise AssertionError("no audit leaf here")


def test_a_sink_writes_in_the_transaction_of_the_change(database: Database) -> None:
    store = SqliteCaseStore(database.connect())
    sink = Sink(store.connection)
    store.add_sink(sink)
    store.create(record("WC-1"))
    store.update("WC-1", bump)
    sink.fail = True
    with pytest.raises(RuntimeError, match="sink refused"):
        store.update("WC-1", bump)
    rows = store.connection.execute("SELECT case_id, version FROM sink_rows").fetchall()
    assert sorted(tuple(r) for r in rows) == [("WC-1", 1), ("WC-1", 2)]
    stored = store.get("WC-1")
    assert stored is not None
    assert stored.version == 2
    store.close()


def test_workers_changing_the_same_cases_lose_no_update_and_never_deadlock(
    database: Database,
) -> None:
    """Four workers, each its own connection, apply batches touching the same two cases
    in opposite orders. On PostgreSQL each change reads the copy the last committed one
    left (a per-case lock), and the batches' locks are taken in one order."""
    setup = SqliteCaseStore(database.connect())
    setup.create(record("WC-A"))
    setup.create(record("WC-B"))
    rounds, errors = 15, []
    stores = [SqliteCaseStore(database.connect()) for _ in range(4)]

    def work(n: int, store: SqliteCaseStore) -> None:
        try:
            for i in range(rounds):
                order = ["WC-A", "WC-B"] if n % 2 else ["WC-B", "WC-A"]
                store.apply_packets(
                    [
                        (f"w{n}-{i}-{c}", c, lambda old, p=f"w{n}-{i}-{c}", c=c: (
                            bump(old), AppliedPacket(p, c, "applied", "")))
                        for c in order
                    ]
                )  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for case_id in ("WC-A", "WC-B"):
        stored = setup.get(case_id)
        assert stored is not None
        assert (stored.access_hash, stored.version) == (str(4 * rounds), 4 * rounds + 1)
        assert len(setup.packets(case_id)) == 4 * rounds
    for store in [setup, *stores]:
        store.close()


def test_the_migration_accepts_a_sqlite_file_written_before_migrations(tmp_path: Path) -> None:
    conn = sqlite_connection(tmp_path / "relay.sqlite3")
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT INTO case_packets VALUES (?, ?, ?, ?, ?)",
        ("p-old", "WC-OLD", "applied", "", datetime.now(UTC).timestamp()),
    )
    store = SqliteCaseStore(conn)
    assert schema_version(conn, "cases") == len(MIGRATIONS)
    assert store.unapplied(["p-old", "p-new"]) == ["p-new"]
    store.close()


def _grown(case_id: str, complaints: int) -> Case:
    case = Case(header(case_id), Office.RECEIVING)
    case, _ = transition(
        case, Command(EventKind.SUBMIT, details_for(EventKind.SUBMIT, case)), later(0)
    )
    for i in range(1, complaints + 1):
        case, _ = transition(
            case, Command(EventKind.COMPLAIN, {"text": f'第{i}次催办："材料"已交齐'}), later(i)
        )
    return case


def test_step_two_moves_each_case_s_events_into_rows_of_their_own(database: Database) -> None:
    """A database the release before wrote (the events a JSON list in the case row) is
    migrated in place: the same cases read back, each event a row in order, the next
    step adds its row alone, and a write of the release before (a worker not restarted
    yet) is refused."""
    conn = database.connect()
    migrate(conn, "cases", MIGRATIONS[:1])
    cases = {"WC-OLD-1": _grown("WC-OLD-1", 3), "WC-OLD-2": _grown("WC-OLD-2", 0)}
    for case_id, case in cases.items():
        data = case_to_json(case)
        conn.execute(
            "INSERT INTO cases (case_id, me, header, events, access_hash, opened_at, version,"
            " state, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                case_id, data["me"], json.dumps(data["header"], ensure_ascii=False),
                json.dumps(data["events"], ensure_ascii=False), "h", T0.timestamp(), 4,
                case.state.value, T0.timestamp(),
            ),
        )  # fmt: skip
    store = SqliteCaseStore(database.connect())
    assert schema_version(conn, "cases") == len(MIGRATIONS)
    # step 3 on the way: the clock facts of the cases written before are stored
    assert store.clocks() == [(c, ClockFacts.of(case)) for c, case in cases.items()]
    assert conn.execute("SELECT count(*) FROM cases WHERE clock IS NULL").fetchone() == (0,)
    # and step 4's: what the work queue shows of them
    assert store.queue_entries() == [QueueEntry.of(case, 4, T0) for case in cases.values()]
    assert conn.execute("SELECT count(*) FROM cases WHERE queue IS NULL").fetchone() == (0,)
    # a row a worker of the release before wrote meanwhile (no queue facts) is read whole
    conn.execute("UPDATE cases SET queue = NULL WHERE case_id = 'WC-OLD-1'")
    assert store.queue_entries() == [QueueEntry.of(case, 4, T0) for case in cases.values()]
    for case_id, case in cases.items():
        got = store.get(case_id)
        assert got is not None
        assert (got.case, got.access_hash, got.opened_at, got.version) == (case, "h", T0, 4)
        rows = conn.execute(
            "SELECT n, content FROM case_events WHERE case_id = ? ORDER BY n", (case_id,)
        ).fetchall()
        assert [n for n, _ in rows] == list(range(len(case.events)))
        assert [json.loads(c) for _, c in rows] == case_to_json(case)["events"]
    assert conn.execute("SELECT events FROM cases").fetchall() == [("",), ("",)]
    assert [r.case for r in store.list_cases()] == list(cases.values())
    old_write = "UPDATE cases SET events = '[]' WHERE case_id = 'WC-OLD-2'"  # the release before
    with pytest.raises(database_errors(), match="events"):
        conn.execute(old_write)

    def complain(old: CaseRecord | None) -> CaseRecord | None:
        assert old is not None
        new, _ = transition(old.case, Command(EventKind.COMPLAIN, {"text": "再催"}), later(9))
        return replace(old, case=new)

    after = store.update("WC-OLD-1", complain)
    assert after is not None
    assert len(after.case.events) == 5
    fresh = SqliteCaseStore(database.connect())  # keeps nothing: reads the rows
    assert fresh.get("WC-OLD-1") == after
    store.close()
    fresh.close()
