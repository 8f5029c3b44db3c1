"""``tongban staff token``: issue a staff bearer token for this node's staff API.

Console accounts (``tongban staff user ...``, ``tongban staff journal``) are in
:mod:`relay.cli.staff_users`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from relay.cli import staff_users
from relay.cli._common import CliError
from relay.config import ConfigError, load_config, parse_duration
from relay.staff_auth import (
    StaffRole,
    TokenKeyError,
    issue_token,
    load_or_create_token_key,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = subparsers.add_parser("staff", help="staff API credentials")
    staff_sub = staff.add_subparsers(dest="staff_command", metavar="SUBCOMMAND")
    staff_sub.required = True
    token = staff_sub.add_parser(
        "token",
        help="issue a staff bearer token (printed on stdout)",
        description="Issue an EdDSA bearer token for the node's staff API, signed with "
        "the node's staff-token key (created in the data dir on first use).",
    )
    token.add_argument("--config", required=True, help="the node's node.toml")
    token.add_argument("--subject", required=True, help="who the token is for (staff name)")
    token.add_argument(
        "--role",
        action="append",
        choices=[r.value for r in StaffRole],
        help="role to grant (repeatable; default clerk)",
    )
    token.add_argument("--ttl", help="lifetime, e.g. 30m, 8h (default: staff.token_ttl)")
    token.set_defaults(handler=_token)
    staff_users.register(staff_sub)


def _token(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    try:
        ttl = parse_duration(args.ttl) if args.ttl is not None else config.staff.token_ttl
    except ValueError as exc:
        raise CliError("usage", f"--ttl {exc}") from None
    roles = [StaffRole(r) for r in (args.role or [StaffRole.CLERK.value])]
    try:
        key = load_or_create_token_key(config.staff.token_key)
    except TokenKeyError as exc:
        raise CliError("staff-key", str(exc)) from None
    try:
        token = issue_token(
            key,
            node_id=config.node_id,
            subject=args.subject,
            roles=roles,
            now=datetime.now(UTC),
            ttl=ttl,
        )
    except ValueError as exc:
        raise CliError("usage", str(exc)) from None
    sys.stdout.write(token + "\n")
    return 0
