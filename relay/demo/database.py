"""The demo on PostgreSQL (``tongban demo --database postgresql://…``).

Each office of the demo keeps its tables in its own schema of the one database the URL
names, ``tongban_demo_<node id>``, reached through the libpq option
``options=-c search_path=…`` in the URL written to its ``node.toml``: one database and
no right to create databases are needed, and the offices stay apart as they would on
separate servers. The schemas are recreated on every run, like the work folder, and
with the same care: a schema is dropped only when its comment says the demo made it
(:data:`MARK`), so a URL pointing at the wrong database is refused, never wiped.

:func:`database_step` ends such a run by checking, in PostgreSQL itself, that each
office's packets, receipts, cases and audit log are there and that no office wrote
them to a SQLite file instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from relay.demo.context import Demo
from relay.demo.errors import NotADemoDatabase, StepFailed
from relay.demo.report import Reporter

__all__ = ["MARK", "database_step", "node_url", "prepare_schemas", "schema_name"]

MARK = "created by tongban demo; dropped and recreated on each run"
_CHECKED = ("outbox", "inbox", "cases", "audit_leaves", "audit_checkpoints")


def schema_name(node_id: str) -> str:
    return f"tongban_demo_{node_id}"


def node_url(server_url: str, node_id: str) -> str:
    """``server_url`` with the node's schema first on the search path."""
    parts = urlsplit(server_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-c search_path={schema_name(node_id)}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _connect(url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise NotADemoDatabase(f"cannot connect to the database {url}: {exc}") from None


def prepare_schemas(server_url: str, node_ids: Iterable[str]) -> dict[str, str]:
    """A fresh empty schema per node (the demo's own ones dropped first); their URLs.

    Raises :class:`NotADemoDatabase` for a schema of that name the demo did not make."""
    from psycopg import sql

    urls = {}
    with _connect(server_url) as conn:
        for node_id in node_ids:
            name = schema_name(node_id)
            row = conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                (name,),
            ).fetchone()
            if row is not None:
                if row[0] != MARK:
                    raise NotADemoDatabase(
                        f"schema {name} exists in {server_url} and was not created by"
                        " `tongban demo`; refusing to drop it — use another database"
                    )
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(name), sql.Literal(MARK)
                )
            )
            urls[node_id] = node_url(server_url, node_id)
    return urls


def _rows(conn: Any, schema: str, table: str) -> int | None:
    from psycopg import sql

    found = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchone()
    if found is None:
        return None
    count = sql.SQL("SELECT COUNT(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    return int(conn.execute(count).fetchone()[0])


def _sqlite_rows(demo: Demo, node_id: str) -> int:
    """Rows of the checked tables in the node's SQLite file, if it made one."""
    path = demo.config_path(node_id).parent / "data" / "relay.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
        return sum(
            int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])  # noqa: S608
            for t in _CHECKED
            if t in names
        )
    finally:
        conn.close()


async def database_step(demo: Demo, out: Reporter) -> None:
    """Each office's data is in its PostgreSQL schema, and in no SQLite file."""
    if demo.database is None:
        raise StepFailed("the demo runs on SQLite: there is no PostgreSQL to check")
    with _connect(demo.database) as conn:
        for office in demo.offices:
            schema = schema_name(office.node_id)
            counts = {t: _rows(conn, schema, t) for t in _CHECKED}
            missing = [t for t, n in counts.items() if n is None]
            if missing:
                raise StepFailed(f"{schema} has no table {', '.join(missing)}")
            if not counts["audit_leaves"] or not (counts["outbox"] or counts["inbox"]):
                raise StepFailed(f"{schema} holds no packets or no audit log: {counts}")
            stray = _sqlite_rows(demo, office.node_id)
            if stray:
                raise StepFailed(f"{office.node_id} wrote {stray} rows to a SQLite file")
            listed = ", ".join(f"{t} {n}" for t, n in counts.items())
            out.proved(
                f"{office.node_id} 的数据都在 PostgreSQL 模式 {schema} 中，没有 SQLite 文件",
                f"{office.node_id}'s data is in PostgreSQL schema {schema} ({listed}),"
                " none in a SQLite file",
            )
