"""``tongban backup`` and ``tongban restore``: a node's data, online, with a manifest
(see :mod:`relay.backup`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from relay.backup import BackupError, backup, restore
from relay.cli._common import CliError
from relay.config import ConfigError, NodeConfig, load_config

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    make = subparsers.add_parser(
        "backup",
        help="copy a node's data while it runs (database snapshot, blobs, manifest)",
        description="Write a consistent copy of the node's data directory into a new "
        "folder: an online SQLite snapshot, the blobs it names, the other data files and "
        "manifest.json with every file's SHA-256.",
    )
    make.add_argument("--config", required=True, help="the node's node.toml")
    make.add_argument("--out", required=True, type=Path, help="a new (or empty) folder")
    make.set_defaults(handler=_backup)
    back = subparsers.add_parser(
        "restore",
        help="restore a node's data from a backup (the node must be stopped)",
        description="Check every digest of the backup's manifest, then make it the node's "
        "data directory. Refused while the node runs; a data directory that holds files "
        "needs --replace (it is kept beside, renamed).",
    )
    back.add_argument("--config", required=True, help="the node's node.toml")
    back.add_argument("--from", dest="source", required=True, type=Path, help="a backup folder")
    back.add_argument("--replace", action="store_true", help="set the present data aside")
    back.set_defaults(handler=_restore)


def _config(path: str) -> NodeConfig:
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    if config.database.postgresql:
        raise CliError(
            "postgresql",
            "this node keeps its tables in PostgreSQL ([database] url): back the database"
            " up with pg_dump and the blob directory with a file copy, restore with"
            " pg_restore (docs/operations.md, 'Backup on PostgreSQL')",
        )
    return config


def _backup(args: argparse.Namespace) -> int:
    config = _config(args.config)
    try:
        manifest = backup(config.data_dir, args.out, node_id=config.node_id, now=datetime.now(UTC))
    except (BackupError, OSError) as exc:
        raise CliError("backup", f"backup not made: {exc}") from None
    files, leaves = len(manifest.files), manifest.audit_leaves
    sys.stdout.write(
        f"tongban: backup of {config.node_id} in {args.out}: {files} files, "
        f"audit log {leaves} leaves\n"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    config = _config(args.config)
    try:
        manifest = restore(args.source, config.data_dir, node_id=config.node_id,
                           now=datetime.now(UTC), replace=args.replace)  # fmt: skip
    except (BackupError, OSError) as exc:
        raise CliError("restore", f"not restored: {exc}") from None
    sys.stdout.write(
        f"tongban: restored {config.node_id} from {args.source} "
        f"({manifest.created}, audit log {manifest.audit_leaves} leaves)\n"
    )
    return 0
