"""Moving an office from its SQLite file to PostgreSQL, verified.

``tongban db migrate-from-sqlite --config node.toml`` calls :func:`move_to_postgresql`,
which works in this order and writes nothing to the target until every check passed:

1. **Snapshot.** The node's ``relay.sqlite3`` is copied with SQLite's online backup API
   in one step (one consistent snapshot even while a node still writes; stop the node
   first so nothing it accepts afterwards is left behind). The rest works on the
   snapshot only.
2. **Versions.** A snapshot whose ``schema_versions`` names a step newer than this
   release knows is refused (:class:`~relay.db.migrations.SchemaTooNew`); an older one is
   brought to this release's schema first (on the private snapshot, never on the
   office's file), so both sides hold the same tables and columns.
3. **Target.** The PostgreSQL schema is migrated; a target that holds any row outside
   ``schema_versions`` is refused: the move fills an empty database, it never merges.
4. **Plan.** Every SQLite table must exist in PostgreSQL with every one of its columns
   (table and column names are the same on both backends); a table or column PostgreSQL
   lacks would lose data, so the move is refused before anything is written.
5. **Blobs.** When the configured ``blob_dir`` is not ``data_dir/blobs``, every blob the
   snapshot's ``blobs`` table names is copied there (temporary name, ``fsync``, rename)
   and its SHA-256 checked against its name, *before* the rows naming it commit, as the
   stores do.
6. **Copy and verify, one transaction.** Every table is copied with ``COPY`` (values
   checked against the PostgreSQL column type: an integer column takes integers only, a
   ``BYTEA`` column bytes only), identity sequences are set past the highest key (and
   past SQLite's ``AUTOINCREMENT`` high-water mark, so no key is ever reused), derived
   data is recomputed rather than copied (``outbox_heads``, each open case's next
   packet: the workers find what to send), then, reading PostgreSQL inside the same
   transaction:

   - the row count of every table equals the snapshot's;
   - every stored receipt verifies (:func:`relay.core.receipts.verify_receipt`, at the
     moment it was signed, against the trust bundle) and names its packet: the partners'
     receipts in ``outbox`` are signed by the partner and addressed to this node, this
     node's receipts in ``inbox`` are signed by this node and addressed to the sender;
   - the audit log's tree head from PostgreSQL's stored subtree hashes equals the
     SQLite one, and so does the root recomputed from PostgreSQL's leaves.

   Only then does the transaction commit; any failure rolls it back and leaves the
   target as step 3 found it (migrated and empty), so the command can simply run again.

Exceptions: :class:`MoveError` (refused or failed; the message says why and what to do),
:class:`~relay.db.migrations.SchemaTooNew` is turned into one.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from relay.audit.merkle import TreeHash
from relay.audit.store import AuditStore, tree_hash_of
from relay.backup import file_sha256, fsync_path
from relay.core.errors import MalformedPacket
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.core.sqlite_schema import REBUILD_HEADS
from relay.db.migrations import Connection, SchemaTooNew
from relay.db.pg import PgConnection
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["MoveError", "MoveReport", "TableCount", "move_to_postgresql", "snapshot"]

DATABASE = "relay.sqlite3"
STAFF_DATABASE = "staff.sqlite"
DATABASES = (DATABASE, STAFF_DATABASE)  # the node's SQLite files; the staff one optional
_NOT_COPIED = {"schema_versions", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"}
_DERIVED = {"outbox_heads"}  # rebuilt from the copied rows (REBUILD_HEADS), not copied
_BATCH = 1 << 12

PrepareSource = Callable[[str, sqlite3.Connection], None]
"""Brings a SQLite snapshot (by file name) to this release's schema, or raises
:class:`SchemaTooNew`."""
PrepareTarget = Callable[[PgConnection], None]
"""Brings the PostgreSQL database to this release's schema, or raises
:class:`SchemaTooNew`."""


class MoveError(Exception):
    """The move was refused or failed; nothing was committed to the target."""


@dataclass(frozen=True)
class TableCount:
    table: str
    rows: int


@dataclass(frozen=True)
class MoveReport:
    """What was moved and checked."""

    node_id: str
    tables: tuple[TableCount, ...]
    receipts: int
    audit_size: int
    audit_root: bytes
    blobs_copied: int
    blobs_in_place: int

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def summary(self) -> str:
        lines = [
            f"moved node {self.node_id} to PostgreSQL: {self.rows} rows in"
            f" {len(self.tables)} tables, row counts equal",
            f"receipts verified: {self.receipts}",
            f"audit log: {self.audit_size} leaves, root {self.audit_root.hex()} on both sides",
            f"blobs: {self.blobs_copied} copied, {self.blobs_in_place} already in place",
        ]
        width = max((len(t.table) for t in self.tables), default=0)
        lines += [f"  {t.table:<{width}}  {t.rows}" for t in self.tables if t.rows]
        return "\n".join(lines) + "\n"


def snapshot(database: Path, into: Path) -> Path:
    """Copy ``database`` into the folder ``into`` in one step of the backup API."""
    if not database.is_file():
        raise MoveError(f"{database} does not exist: this is not a node's data directory")
    copy = into / database.name
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    except sqlite3.DatabaseError as exc:
        raise MoveError(f"cannot read {database}: {exc}") from None
    finally:
        source.close()
        target.close()
    return copy


def move_to_postgresql(
    data_dir: Path,
    target: PgConnection,
    *,
    node_id: str,
    bundle: TrustBundle,
    prepare_source: PrepareSource,
    prepare_target: PrepareTarget,
    blob_dir: Path | None = None,
) -> MoveReport:
    """Move the office whose data is in ``data_dir`` into ``target`` (see above)."""
    with tempfile.TemporaryDirectory(prefix="tongban-move-") as scratch:
        sources: dict[str, sqlite3.Connection] = {}
        try:
            for name in DATABASES:
                if name == DATABASE or (data_dir / name).is_file():
                    copy = snapshot(data_dir / name, Path(scratch))
                    sources[name] = sqlite3.connect(copy, isolation_level=None)
            for name, conn in sources.items():
                with _newer_refused(str(data_dir / name)):
                    prepare_source(name, conn)
            with _newer_refused("the PostgreSQL database"):
                prepare_target(target)
            tables = _plan(sources, target)
            relay = sources[DATABASE]
            digests = [str(r[0]) for r in relay.execute("SELECT digest FROM blobs")]
            copied, in_place = _copy_blobs(data_dir / "blobs", blob_dir, digests)
            with _transaction(target):
                _refuse_non_empty(target)
                counts = tuple(_copy_table(target, t) for t in tables)
                _set_sequences(target, tables)
                _rebuild_derived(target)
                _same_counts(target, tables, counts)
                receipts = _verify_receipts(target, node_id, bundle)
                size, root = _same_audit_log(relay, target)
        finally:
            for conn in sources.values():
                conn.close()
    return MoveReport(node_id, counts, receipts, size, root, copied, in_place)


@contextmanager
def _newer_refused(what: str) -> Iterator[None]:
    try:
        yield
    except SchemaTooNew as exc:
        raise MoveError(f"{what}: {exc}") from None


@contextmanager
def _transaction(conn: PgConnection) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class _Table:
    source: sqlite3.Connection
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]  # PostgreSQL data types, as information_schema names them
    mark: int  # SQLite's AUTOINCREMENT high-water mark (0: none)


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if str(r[0]) not in _NOT_COPIED | _DERIVED and not str(r[0]).startswith("sqlite_")
    ]


def _rebuild_derived(target: PgConnection) -> None:
    """``outbox_heads`` (each open case's first packet, and on PostgreSQL its lease) is
    computed from the copied outbox, as the SQLite store does at every open; the
    PostgreSQL store keeps it in step from then on and never rebuilds it."""
    for statement in REBUILD_HEADS.split(";"):
        if statement.strip():
            target.execute(statement)


def _marks(conn: sqlite3.Connection) -> dict[str, int]:
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone():
        return {}
    return {str(n): int(s) for n, s in conn.execute("SELECT name, seq FROM sqlite_sequence")}


def _plan(sources: dict[str, sqlite3.Connection], target: PgConnection) -> list[_Table]:
    have: dict[str, dict[str, str]] = {}
    for table, column, data_type in target.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall():
        have.setdefault(str(table), {})[str(column)] = str(data_type)
    plan: list[_Table] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for file, source in sources.items():
        marks = _marks(source)
        for name in _tables(source):
            if name in seen:
                problems.append(f"table {name} is in both {seen[name]} and {file}")
                continue
            seen[name] = file
            columns = [str(r[1]) for r in source.execute(f"PRAGMA table_info({_quote(name)})")]
            rows = _count(source, name)
            if name not in have:
                if rows:
                    problems.append(f"table {name} ({rows} rows) has no PostgreSQL counterpart")
                continue
            missing = [c for c in columns if c not in have[name]]
            if missing and rows:
                problems.append(f"table {name}: PostgreSQL lacks column(s) {', '.join(missing)}")
                continue
            kept = tuple(c for c in columns if c in have[name])
            types = tuple(have[name][c] for c in kept)
            plan.append(_Table(source, name, kept, types, marks.get(name, 0)))
    if problems:
        raise MoveError(
            "the PostgreSQL schema cannot hold this office's data (nothing was written): "
            + "; ".join(problems)
        )
    return plan


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count(conn: Connection, table: str) -> int:
    row: Any = conn.execute(f"SELECT COUNT(*) FROM {_quote(table)}").fetchone()  # noqa: S608
    return int(row[0])


def _refuse_non_empty(target: PgConnection) -> None:
    tables = [
        str(r[0])
        for r in target.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
    ]
    held = [(t, n) for t in tables if t != "schema_versions" and (n := _count(target, t))]
    if held:
        listed = ", ".join(f"{t} ({n} rows)" for t, n in held[:5])
        raise MoveError(
            f"the PostgreSQL database is not empty: {listed}; the move fills an empty"
            " database only (create a new one, or drop this one if it holds nothing to keep)"
        )


# -- values ------------------------------------------------------------------------------

_INTEGER = {"bigint", "integer", "smallint"}
_FLOAT = {"double precision", "real", "numeric"}
_TEXT = {"text", "character varying", "character"}


def _coerce(value: Any, data_type: str, where: str) -> Any:
    """A SQLite value as the PostgreSQL column type wants it, or :class:`MoveError`
    (SQLite's dynamic typing can hold values a PostgreSQL column refuses)."""
    if value is None:
        return None
    if data_type in _INTEGER:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif data_type in _FLOAT:
        if isinstance(value, int | float):
            return float(value)
    elif data_type == "bytea":
        if isinstance(value, bytes | memoryview):
            return bytes(value)
    elif data_type in _TEXT:
        if isinstance(value, str):
            return value
    elif data_type == "boolean":
        if value in (0, 1):
            return bool(value)
    elif data_type in ("json", "jsonb") and isinstance(value, str):
        return value
    raise MoveError(f"{where}: the value {value!r:.60} does not fit a {data_type} column")


def _copy_table(target: PgConnection, table: _Table) -> TableCount:
    from psycopg import sql

    if not table.columns:
        return TableCount(table.name, 0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    columns = ", ".join(map(_quote, table.columns))
    rows = table.source.execute(f"SELECT {columns} FROM {_quote(table.name)}")  # noqa: S608
    written = 0
    with target.raw.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(_copy_types(table.types)))
        while batch := rows.fetchmany(_BATCH):
            for row in batch:
                where = f"table {table.name}, row {written + 1}"
                copy.write_row(
                    [_coerce(v, t, where) for v, t in zip(row, table.types, strict=True)]
                )
                written += 1
    return TableCount(table.name, written)


def _copy_types(types: Iterable[str]) -> Iterator[str]:
    names = {"double precision": "float8", "character varying": "varchar", "character": "bpchar"}
    for data_type in types:
        yield names.get(data_type, data_type)


def _set_sequences(target: PgConnection, tables: Sequence[_Table]) -> None:
    """Identity and serial columns continue after the highest copied key (and after
    SQLite's ``AUTOINCREMENT`` mark, which remembers keys of deleted rows)."""
    for table in tables:
        for column in table.columns:
            row: Any = target.execute(
                "SELECT pg_get_serial_sequence(?, ?)", (_quote(table.name), column)
            ).fetchone()
            if row is None or row[0] is None:
                continue
            top: Any = target.execute(
                f"SELECT MAX({_quote(column)}) FROM {_quote(table.name)}"  # noqa: S608
            ).fetchone()
            after = max(int(top[0] or 0), table.mark)
            if after > 0:
                target.execute("SELECT setval(?, ?, true)", (str(row[0]), after))


# -- checks ------------------------------------------------------------------------------


def _same_counts(
    target: PgConnection, tables: Sequence[_Table], counts: Sequence[TableCount]
) -> None:
    for table, written in zip(tables, counts, strict=True):
        held, there = _count(table.source, table.name), _count(target, table.name)
        if not held == written.rows == there:
            raise MoveError(
                f"table {written.table}: {held} rows in SQLite, {written.rows} copied,"
                f" {there} in PostgreSQL"
            )


def _signed_at(token: str) -> datetime:
    """The ``iat`` a compact JWS claims (checked by the verification that follows)."""
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        return datetime.fromtimestamp(int(header["iat"]), UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        raise MalformedPacket("the receipt has no readable iat") from None


def _verify_receipts(target: PgConnection, node_id: str, bundle: TrustBundle) -> int:
    """Every receipt held verifies and names its packet; the count checked."""
    checked = 0
    partner_receipts = target.execute(
        "SELECT packet_id, digest, peer, receipt FROM outbox WHERE receipt IS NOT NULL"
    ).fetchall()
    own_receipts = target.execute("SELECT packet_id, digest, sender, receipt FROM inbox").fetchall()
    for rows, ours in ((partner_receipts, False), (own_receipts, True)):
        for packet_id, digest, partner, token in rows:
            signer, to = (node_id, partner) if ours else (partner, node_id)
            table = "inbox" if ours else "outbox"
            try:
                receipt = verify_receipt(token, bundle, at=_signed_at(token), expected_from=signer)
            except (SigningError, MalformedPacket) as exc:
                raise MoveError(
                    f"the receipt of packet {packet_id} ({table}) does not verify: {exc}"
                ) from None
            if (receipt.packet_id, receipt.packet_digest, receipt.to) != (packet_id, digest, to):
                raise MoveError(f"the receipt of packet {packet_id} ({table}) names another packet")
            if ours and receipt.status is not ReceiptStatus.ACCEPTED:
                raise MoveError(f"the inbox holds packet {packet_id} with a rejecting receipt")
            checked += 1
    return checked


def _same_audit_log(source: sqlite3.Connection, target: PgConnection) -> tuple[int, bytes]:
    """The tree head from PostgreSQL equals SQLite's, and PostgreSQL's leaves hash to it."""
    size, root = AuditStore(source).head()
    pg_size, pg_root = AuditStore(cast(sqlite3.Connection, target)).head()
    if (pg_size, pg_root) != (size, root):
        raise MoveError(
            f"the audit log differs: SQLite has {size} leaves with root {root.hex()},"
            f" PostgreSQL {pg_size} with root {pg_root.hex()}"
        )
    tree = tree_hash_of(source)  # SHA-256, or SM3 for an SM-profile node
    recomputed = _root_of(_leaf_hashes(target, tree), tree)
    if (recomputed[0], recomputed[1]) != (size, root):
        raise MoveError(
            f"PostgreSQL's audit leaves hash to root {recomputed[1].hex()} over"
            f" {recomputed[0]} leaves, not to the tree head {root.hex()}"
        )
    return size, root


def _leaf_hashes(target: PgConnection, tree: TreeHash) -> Iterator[tuple[int, bytes]]:
    cur = target.raw.cursor()
    cur.execute(b"SELECT idx, data FROM audit_leaves ORDER BY idx")
    while batch := cur.fetchmany(_BATCH):
        for idx, data in batch:
            yield int(idx), tree.leaf(bytes(data))


def _root_of(leaves: Iterable[tuple[int, bytes]], tree: TreeHash) -> tuple[int, bytes]:
    """RFC 9162 root of leaf hashes given in index order (0, 1, 2, … without gaps),
    in O(log n) memory: a stack of complete subtrees, merged as they pair up."""
    stack: list[tuple[int, bytes]] = []  # (leaf count, hash), sizes decreasing
    count = 0
    for index, h in leaves:
        if index != count:
            raise MoveError(f"PostgreSQL's audit log has a gap: leaf {count} is missing")
        count += 1
        size = 1
        while stack and stack[-1][0] == size:
            size, h = size * 2, tree.node(stack.pop()[1], h)
        stack.append((size, h))
    if not stack:
        return 0, tree.empty
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = tree.node(h, root)
    return count, root


# -- blobs -------------------------------------------------------------------------------


def _copy_blobs(held: Path, blob_dir: Path | None, digests: Sequence[str]) -> tuple[int, int]:
    """Copy the named blobs from ``held`` into ``blob_dir``; (copied, already there)."""
    if blob_dir is None or blob_dir.resolve() == held.resolve():
        return 0, len(digests)
    copied = in_place = 0
    for digest in digests:
        source, dest = held / digest[:2] / digest, blob_dir / digest[:2] / digest
        if not source.is_file():
            raise MoveError(f"blob {digest} named by the database is missing from {held}")
        if dest.is_file() and file_sha256(dest) == digest:
            in_place += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{digest}.moving")
        shutil.copyfile(source, partial)
        if file_sha256(partial) != digest:
            partial.unlink()
            raise MoveError(f"blob {digest} does not match its name: the store is damaged")
        fsync_path(partial)
        partial.rename(dest)
        fsync_path(dest.parent)
        copied += 1
    return copied, in_place
