"""``tongban db migrate-from-sqlite``: move an office's SQLite data to PostgreSQL.

::

    tongban db migrate-from-sqlite --config node.toml

reads the office's SQLite files in ``data_dir`` (a consistent snapshot; stop the node
first so nothing it accepts afterwards stays behind) and fills the empty PostgreSQL
database of ``[database] url``, copying the blobs to ``[database] blob_dir`` if that is
another folder, then verifies what it wrote (:mod:`relay.db.from_sqlite`). It prints a
summary; a refusal or failure goes to stderr with exit 1 (2 for a configuration that
cannot be used) and leaves the target empty.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from relay.backup import BackupError, DataDirLock
from relay.cli._common import CliError
from relay.config import ConfigError, NodeConfig, load_config
from relay.db.components import migrate_all
from relay.db.from_sqlite import MoveError, move_to_postgresql
from relay.db.open import database_errors, storage_errors
from relay.db.pg import PgConnection, connect
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["add_commands"]

_LEFT_EMPTY = "not moved, the PostgreSQL database is left empty"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``migrate-from-sqlite`` to the subcommands of ``tongban db``."""
    move = commands.add_parser(
        "migrate-from-sqlite",
        help="move the office's SQLite data into the empty PostgreSQL database, verified",
        description="Copy the office's SQLite data (a consistent snapshot: stop the node "
        "first) into the empty PostgreSQL database of [database] url after migrating its "
        "schema, and the blobs to [database] blob_dir; then check, before committing, that "
        "every table has as many rows, every stored receipt verifies and the audit log's "
        "root is unchanged. Refuses a non-empty target and data written by a newer release.",
    )
    move.add_argument("--config", required=True, help="the node's node.toml")
    move.set_defaults(handler=_move)


def _prepare_source(file_name: str, conn: sqlite3.Connection) -> None:
    migrate_all(conn, sqlite_file=file_name)


def _prepare_target(conn: PgConnection) -> None:
    migrate_all(conn)


def _move(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    url = config.database.url
    if url is None:
        raise CliError(
            "no-database-url",
            f"{args.config} has no [database] url: name the PostgreSQL database to fill",
        )
    try:
        bundle = TrustBundle.from_pem(config.trust_bundle.read_bytes())
    except (OSError, SigningError, ValueError) as exc:
        raise CliError("trust-bundle", f"cannot read the trust bundle: {exc}") from None
    if not config.data_dir.is_dir():
        raise CliError("no-data", f"{config.data_dir} does not exist: nothing to move", 1)
    try:  # held until the end: the node cannot start and write to SQLite meanwhile
        lock = DataDirLock(config.data_dir)
    except BackupError:
        raise CliError(
            "node-running", f"node {config.node_id} is running from {config.data_dir}: stop"
            " it first, so nothing it accepts is left behind in SQLite", 1,
        ) from None  # fmt: skip
    try:
        _run(config, url, bundle)
    finally:
        lock.release()
    return 0


def _run(config: NodeConfig, url: str, bundle: TrustBundle) -> None:
    try:
        target = connect(url, application_name="tongban db migrate-from-sqlite")
    except database_errors() as exc:
        raise CliError("database-unreachable", f"cannot connect to {url}: {exc}") from None
    try:
        report = move_to_postgresql(
            config.data_dir, target, node_id=config.node_id, bundle=bundle,
            prepare_source=_prepare_source, prepare_target=_prepare_target,
            blob_dir=config.database.blob_dir,
        )  # fmt: skip
    except MoveError as exc:
        raise CliError("not-moved", f"{_LEFT_EMPTY}: {exc}", exit_code=1) from None
    except storage_errors() as exc:
        raise CliError("not-moved", f"{_LEFT_EMPTY}: {type(exc).__name__}: {exc}", 1) from None
    finally:
        target.close()
    sys.stdout.write(report.summary())
    sys.stdout.write(
        f"tongban: {config.node_id} now runs on {url}; its SQLite files in"
        f" {config.data_dir} are no longer read (keep them until you are satisfied)\n"
    )
