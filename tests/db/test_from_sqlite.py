"""`tongban db migrate-from-sqlite`: a real office that has worked (two `tongban serve`
processes: a case, packets on several cases, an attachment, receipts both ways, audit
checkpoints; see office_kit) moves into a real PostgreSQL database, verified; a target
that is not empty, data from a newer release, a receipt or an audit leaf that does not
verify are refused with the target left empty."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from office_kit import CASE, A, B, Office, Proc, make_office, staff
from relay_http_support import make_pki

from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree, TreeHash
from relay.audit.store import AuditStore
from relay.cli import main
from relay.db.from_sqlite import _root_of
from relay.db.pg import PgConnection, connect
from relay.staff_auth import StaffRole


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Office:
    base = tmp_path_factory.mktemp("office")
    pki = make_pki(base / "pki")
    (base / "fed").mkdir()
    return make_office(pki, base / "fed")


def _copy(office: Office, node: str, to: Path, url: str | None, blob_dir: Path | None) -> Path:
    """The node's folder (config and data) copied to ``to``, its config given ``url``."""
    config = office.config_a if node == A else office.config_b
    shutil.copytree(config.parent, to, ignore=shutil.ignore_patterns("node.lock"))
    extra = "\n[database]\n"
    if url is not None:
        extra += f'url = "{url}"\n'
    if blob_dir is not None:
        extra += f'blob_dir = "{blob_dir}"\n'
    with (to / "node.toml").open("a", encoding="utf-8") as f:
        f.write(extra)
    return to / "node.toml"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _move(config: Path) -> Ran:
    """``tongban db migrate-from-sqlite`` (in this process: the CLI's own entry point)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["db", "migrate-from-sqlite", "--config", str(config)])
    return Ran(code, out.getvalue(), err.getvalue())


def _sqlite_counts(data: Path) -> dict[str, int]:
    counts = {}
    for name in ("relay.sqlite3", "staff.sqlite"):
        conn = sqlite3.connect(f"file:{data / name}?mode=ro", uri=True)
        try:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                if table not in ("sqlite_sequence", "schema_versions"):
                    counts[table] = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
        finally:
            conn.close()
    return counts


def _pg_rows(conn: PgConnection, table: str) -> int:
    return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def _pg_held(url: str) -> dict[str, int]:
    """Rows per table of the target, schema_versions aside (empty: nothing moved)."""
    conn = connect(url)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema() AND table_name <> 'schema_versions'").fetchall()]  # fmt: skip
        return {t: n for t in tables if (n := _pg_rows(conn, t))}
    finally:
        conn.close()


def _checkpoint_root(conn: sqlite3.Connection | PgConnection) -> tuple[int, bytes]:
    """(size, root) of the latest checkpoint the node signed (its note's lines 2-3)."""
    note = conn.execute("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
    _, size, root = bytes(note.fetchone()[0]).decode().split("\n")[:3]
    return int(size), base64.b64decode(root)


def test_an_office_moves_to_postgresql_verified(
    office: Office, tmp_path: Path, pg_url: str
) -> None:
    shared = tmp_path / "shared-blobs"
    config = _copy(office, B, tmp_path / "node", pg_url, shared)
    data = config.parent / "data"
    result = _move(config)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "row counts equal" in out
    inbox, outbox = office.packets, 1  # B's own receipts, and A's for B's acceptance
    assert f"receipts verified: {inbox + outbox}" in out
    assert "blobs: 1 copied" in out

    held = _sqlite_counts(data)
    conn = connect(pg_url)
    try:
        for table, rows in held.items():
            if rows:  # an empty table PostgreSQL does not have is nothing lost
                assert _pg_rows(conn, table) == rows, table
        assert _pg_rows(conn, "cases") == 1
        assert _pg_rows(conn, "inbox") == inbox
        assert _pg_rows(conn, "outbox") == outbox
        # the log: the same head as SQLite's, matching the checkpoint the node signed
        source = sqlite3.connect(f"file:{data / 'relay.sqlite3'}?mode=ro", uri=True)
        try:
            head = AuditStore(source).head()
            assert head[0] > office.packets
            assert AuditStore(conn).head() == head
            size, root = _checkpoint_root(conn)
            assert _checkpoint_root(source) == (size, root)
            assert AuditStore(conn).root(size) == root
            # keys continue after the copied ones (and after SQLite's AUTOINCREMENT mark)
            mark = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        finally:
            source.close()
        sequence = conn.execute("SELECT pg_get_serial_sequence('outbox', 'ord')").fetchone()[0]
        assert conn.execute(f"SELECT last_value FROM {sequence}").fetchone()[0] == mark["outbox"]
    finally:
        conn.close()
    for digest in (p.name for p in (data / "blobs").rglob("*") if p.is_file()):
        copied = shared / digest[:2] / digest
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == digest

    again = _move(config)  # the target is no longer empty
    assert again.returncode == 1, again.stdout + again.stderr
    assert "the PostgreSQL database is not empty" in again.stderr
    assert sum(_pg_held(pg_url).values()) == sum(held.values())
    asyncio.run(_serves_what_it_held(config, data))


async def _serves_what_it_held(config: Path, data: Path) -> None:
    """The node, started on PostgreSQL, serves the moved inbox (same receipts) and case."""
    conn = sqlite3.connect(f"file:{data / 'relay.sqlite3'}?mode=ro", uri=True)
    try:
        receipts = dict(conn.execute("SELECT packet_id, receipt FROM inbox").fetchall())
    finally:
        conn.close()
    node = Proc(config)
    await node.start()
    try:
        async with staff(config, StaffRole.CLERK) as clerk:
            inbox = (await clerk.get("/staff/v1/inbox"))["items"]
            case = await clerk.get(f"/staff/v1/cases/{CASE}")
    finally:
        await node.stop()
    assert {i["packet"]["packet_id"]: i["receipt"] for i in inbox} == receipts
    assert case["state"] == "accepted"


def _tampered(office: Office, tmp_path: Path, pg_url: str, statements: list[str]) -> Ran:
    config = _copy(office, B, tmp_path / "node", pg_url, None)
    conn = sqlite3.connect(config.parent / "data" / "relay.sqlite3", isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()
    return _move(config)


def test_data_written_by_a_newer_release_is_refused(
    office: Office, tmp_path: Path, pg_url: str
) -> None:
    result = _tampered(office, tmp_path, pg_url, [
        "UPDATE schema_versions SET version = version + 1 WHERE component = 'cases'"])  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "newer than the" in result.stderr
    assert _pg_held(pg_url) == {}


def test_a_receipt_that_does_not_verify_is_refused_and_nothing_is_written(
    office: Office, tmp_path: Path, pg_url: str
) -> None:
    flip = "substr(receipt, 1, length(receipt) - 5) || 'AAAAA'"  # the signature's end
    result = _tampered(office, tmp_path, pg_url, [
        f"UPDATE inbox SET receipt = {flip} WHERE ord = (SELECT MAX(ord) FROM inbox)"])  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(inbox) does not verify" in result.stderr
    assert _pg_held(pg_url) == {}


def test_an_audit_leaf_that_does_not_hash_to_the_tree_is_refused(
    office: Office, tmp_path: Path, pg_url: str
) -> None:
    result = _tampered(office, tmp_path, pg_url, [
        "DROP TRIGGER audit_leaves_no_update",
        "UPDATE audit_leaves SET data = CAST(data || x'20' AS BLOB) WHERE idx = 3"])  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audit leaves hash to root" in result.stderr
    assert _pg_held(pg_url) == {}


def test_a_config_without_a_database_url_is_a_usage_error(office: Office, tmp_path: Path) -> None:
    result = _move(_copy(office, B, tmp_path / "node", None, None))
    assert result.returncode == 2
    assert "error[no-database-url]" in result.stderr


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 8, 13, 64, 100])
@pytest.mark.parametrize("tree", [SHA256_TREE, SM3_TREE], ids=lambda t: t.name)
def test_the_streamed_root_is_the_rfc_9162_root(size: int, tree: TreeHash) -> None:
    leaves = [f"leaf {i}".encode() for i in range(size)]
    assert _root_of(((i, tree.leaf(d)) for i, d in enumerate(leaves)), tree) == (
        size, MemoryTree(leaves, tree_hash=tree).root()
    )  # fmt: skip


def test_an_sm_profile_log_moves_with_its_sm3_root(tmp_path: Path, pg_url: str) -> None:
    """An SM-profile office's audit log hashes with SM3: the move checks the root in the
    log's own hash (a SHA-256 recomputation refused every SM office) and the target
    keeps the declaration."""
    from relay.audit.store import append, tree_hash_of
    from relay.cli.db_move import _prepare_source, _prepare_target
    from relay.core.sqlite_store import SqliteStore
    from relay.db.from_sqlite import move_to_postgresql

    data = tmp_path / "data"
    store = SqliteStore(data, tree_hash=SM3_TREE)
    conn = store.connection
    conn.execute("BEGIN IMMEDIATE")
    for i in range(5):
        append(conn, f"leaf {i}".encode())
    conn.execute("COMMIT")
    expected = AuditStore(conn).head()
    store.close()
    target = connect(pg_url)
    try:
        report = move_to_postgresql(
            data, target, node_id="420106", bundle=make_pki(tmp_path / "pki").bundle,
            prepare_source=_prepare_source, prepare_target=_prepare_target,
        )  # fmt: skip
        assert (report.audit_size, report.audit_root) == expected
        assert expected[1] == MemoryTree([f"leaf {i}".encode() for i in range(5)],
                                         tree_hash=SM3_TREE).root()  # fmt: skip
        assert tree_hash_of(target) is SM3_TREE
    finally:
        target.close()


def test_a_running_node_is_not_moved(office: Office, tmp_path: Path, pg_url: str) -> None:
    from relay.backup import DataDirLock

    config = _copy(office, B, tmp_path / "node", pg_url, None)
    serving = DataDirLock(config.parent / "data")  # what a serving node holds
    try:
        result = _move(config)
    finally:
        serving.release()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error[node-running]" in result.stderr
    assert _pg_held(pg_url) == {}


def test_the_open_cases_next_packets_are_found_again_on_postgresql(
    office: Office, tmp_path: Path, pg_url: str
) -> None:
    """``outbox_heads`` is derived data the SQLite store rebuilds at every open: the
    move recomputes it from the outbox (here a packet still queued whose head row the
    file does not hold), so the workers find what they still have to send."""
    result = _tampered(office, tmp_path, pg_url, [
        "UPDATE outbox SET state = 'queued', receipt = NULL, next_attempt_at = NULL",
        "DELETE FROM outbox_heads"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    conn = connect(pg_url)
    try:
        heads = conn.execute("SELECT h.peer, h.case_id, o.state FROM outbox_heads h"
                             " JOIN outbox o ON o.ord = h.ord").fetchall()  # fmt: skip
    finally:
        conn.close()
    assert heads == [(A, CASE, "queued")]
