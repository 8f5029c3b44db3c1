"""``tongban db``: the node's database.

``tongban db migrate --config node.toml`` brings every component's tables
(:data:`relay.db.components.COMPONENTS`) to the schema this release knows, on the
PostgreSQL database of ``[database] url`` or the SQLite file in the data directory, and
prints what it did, one line per component. A database written by a newer release is
refused (exit 1) and left as it is.

``tongban db migrate-from-sqlite`` moves an office's SQLite data into PostgreSQL
(:mod:`relay.cli.db_move`).
"""

from __future__ import annotations

import argparse
import sys

from relay.cli import db_move
from relay.cli._common import CliError
from relay.config import ConfigError, load_config
from relay.db.components import migrate_all, open_database
from relay.db.migrations import SchemaTooNew
from relay.db.open import database_errors, storage_errors

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "db",
        help="the node's database: schema migrations",
        description="Manage the node's database (SQLite in the data directory, or the "
        "PostgreSQL database named by [database] url).",
    )
    commands = group.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    commands.required = True
    migrate = commands.add_parser(
        "migrate",
        help="bring every component's tables to this release's schema",
        description="Apply the missing schema migrations of every component, each step in "
        "its own transaction; refuse a database written by a newer release.",
    )
    migrate.add_argument("--config", required=True, help="the node's node.toml")
    migrate.set_defaults(handler=_migrate)
    db_move.add_commands(commands)  # migrate-from-sqlite


def _migrate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    where = config.database.url or str(config.data_dir / "relay.sqlite3")
    try:
        conn = open_database(config.data_dir, config.database)
    except storage_errors() as exc:
        raise CliError("database-unreachable", f"cannot open the database {where}: {exc}") from None
    try:
        for applied in migrate_all(conn):
            done = (
                f"{applied.ran} step{'s' if applied.ran != 1 else ''} applied"
                if applied.ran
                else "up to date"
            )
            sys.stdout.write(f"{applied.component}: {done}, at version {applied.version}\n")
    except SchemaTooNew as exc:
        raise CliError("schema-too-new", str(exc), exit_code=1) from None
    except database_errors() as exc:
        raise CliError("migration-failed", f"migration failed on {where}: {exc}", 1) from None
    finally:
        conn.close()
    sys.stdout.write(f"tongban: database {where} is at this release's schema\n")
    return 0
