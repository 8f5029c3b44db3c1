"""``tongban db``: the node's database.

``tongban db migrate-from-sqlite`` moves an office's SQLite data into PostgreSQL
(:mod:`relay.cli.db_move`).
"""

from __future__ import annotations

import argparse

from relay.cli import db_move

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "db",
        help="the node's database",
        description="Manage the node's database (SQLite in the data directory, or the "
        "PostgreSQL database named by [database] url).",
    )
    commands = group.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    commands.required = True
    db_move.add_commands(commands)
