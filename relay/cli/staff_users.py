"""``tongban staff user ...`` and ``tongban staff journal``: console accounts on the data dir.

    tongban staff user add     --config C NAME --role R [--role R] [--display-name N]
                               [--password-stdin]
    tongban staff user disable --config C NAME     (ends the account's sessions)
    tongban staff user enable  --config C NAME
    tongban staff user reset   --config C NAME [--password-stdin]
    tongban staff user roles   --config C NAME --role R [--role R]
    tongban staff user totp    --config C NAME [--qr | --remove]
    tongban staff user list    --config C [--json]
    tongban staff journal      --config C [--user NAME] [--json]

Without ``--password-stdin``, ``add`` and ``reset`` make a random one-time password and
print it on stdout (hand it to the person): it signs in once, together with the
person's own new password. With it, the first line of stdin is the password. They work
on the staff directory in the node's data dir, also while the node runs. Every change
is written to the staff journal as done by ``cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from relay.cli._common import CliError
from relay.config import ConfigError, load_config
from relay.db.open import storage_errors
from relay.signin.passwords import hash_password, one_time_password
from relay.signin.policy import ACCOUNT_ROLES, check_account_name
from relay.signin.store import StaffStore
from relay.signin.totp import new_secret, provisioning_uri
from relay.staff_auth import StaffRole

__all__ = ["register"]

_ROLE_NAMES = [r.value for r in ACCOUNT_ROLES]


def register(staff_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = staff_sub.add_parser("user", help="console accounts of this node's staff")
    sub = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND")
    sub.required = True

    def command(name: str, help_text: str, *, with_name: bool = True) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--config", required=True, help="the node's node.toml")
        if with_name:
            parser.add_argument("name", help="account name (a-z 0-9 . _ -)")
        return parser

    def roles(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--role", action="append", required=True, choices=_ROLE_NAMES,
            help="role to grant (repeatable)",
        )  # fmt: skip

    add = command("add", "create an account (prints a one-time password unless given one)")
    roles(add)
    add.add_argument("--display-name", help="the person's name as shown (default: NAME)")
    add.add_argument("--password-stdin", action="store_true", help="read the password")
    add.set_defaults(handler=_add)
    command("disable", "disable an account and end its sessions").set_defaults(
        handler=_enabled(False)
    )
    command("enable", "enable a disabled account").set_defaults(handler=_enabled(True))
    reset = command("reset", "set a new password (printed once unless read from stdin)")
    reset.add_argument("--password-stdin", action="store_true", help="read the password")
    reset.set_defaults(handler=_reset)
    set_roles = command("roles", "replace an account's roles")
    roles(set_roles)
    set_roles.set_defaults(handler=_roles)
    totp = command("totp", "enrol a TOTP second factor: prints its otpauth:// URI")
    group = totp.add_mutually_exclusive_group()
    group.add_argument("--qr", action="store_true", help="also draw it as a QR code")
    group.add_argument("--remove", action="store_true", help="remove the second factor")
    totp.set_defaults(handler=_totp)
    listing = command("list", "list the accounts", with_name=False)
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.set_defaults(handler=_list)

    journal = staff_sub.add_parser(
        "journal",
        help="the staff journal: sign-ins and staff requests, with the person's name",
    )
    journal.add_argument("--config", required=True, help="the node's node.toml")
    journal.add_argument("--user", help="only this account")
    journal.add_argument("--json", action="store_true", help="JSON lines")
    journal.set_defaults(handler=_journal)


def _open(args: argparse.Namespace) -> tuple[StaffStore, str]:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    try:
        return StaffStore.for_node(config), config.node_id
    except storage_errors() as exc:  # a missing directory, a database that cannot be reached
        raise CliError("staff-store", f"cannot open the staff directory: {exc}") from None


def _name(args: argparse.Namespace) -> str:
    try:
        return check_account_name(args.name)
    except ValueError as exc:
        raise CliError("usage", str(exc)) from None


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password and whether it was generated (and must be printed)."""
    if not args.password_stdin:
        return one_time_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError("usage", "--password-stdin: no password on standard input")
    return line, False


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise CliError("weak-password", str(exc)) from None


def _note(store: StaffStore, name: str, event: str, detail: dict[str, Any]) -> None:
    store.journal(datetime.now(UTC), "cli", event, "-", {"account": name, **detail})


def _missing(name: str) -> CliError:
    return CliError("no-such-account", f"there is no account {name!r}", 1)


def _role_list(args: argparse.Namespace) -> tuple[StaffRole, ...]:
    return tuple(dict.fromkeys(StaffRole(r) for r in args.role))


def _add(args: argparse.Namespace) -> int:
    name = _name(args)
    display = (args.display_name or name).strip()
    if not display or len(display) > 100:
        raise CliError("usage", "--display-name must be 1-100 characters")
    password, generated = _password(args)
    store, _ = _open(args)
    granted = _role_list(args)
    hashed, now = _hash(password), datetime.now(UTC).timestamp()
    if not store.add_account(name, display, granted, hashed, now, must_change=generated):
        raise CliError("account-exists", f"an account {name!r} already exists", 1)
    _note(store, name, "account-added", {"roles": [r.value for r in granted]})
    if generated:
        sys.stdout.write(password + "\n")
    return 0


def _enabled(value: bool) -> Any:
    def handler(args: argparse.Namespace) -> int:
        name = _name(args)
        store, _ = _open(args)
        if not store.set_enabled(name, value):
            raise _missing(name)
        _note(store, name, "account-enabled" if value else "account-disabled", {})
        return 0

    return handler


def _reset(args: argparse.Namespace) -> int:
    name = _name(args)
    password, generated = _password(args)
    hashed = _hash(password)
    store, _ = _open(args)
    if not store.set_password(name, hashed, must_change=generated):
        raise _missing(name)
    _note(store, name, "password-reset", {})
    if generated:
        sys.stdout.write(password + "\n")
    return 0


def _roles(args: argparse.Namespace) -> int:
    name = _name(args)
    store, _ = _open(args)
    granted = _role_list(args)
    if not store.set_roles(name, granted):
        raise _missing(name)
    _note(store, name, "roles-changed", {"roles": [r.value for r in granted]})
    return 0


def _totp(args: argparse.Namespace) -> int:
    name = _name(args)
    store, node_id = _open(args)
    if args.remove:
        if not store.set_totp(name, None):
            raise _missing(name)
        _note(store, name, "totp-removed", {})
        return 0
    secret = new_secret()
    if not store.set_totp(name, secret):
        raise _missing(name)
    _note(store, name, "totp-enrolled", {})
    uri = provisioning_uri(secret, name, node_id)
    sys.stdout.write(uri + "\n")
    if args.qr:
        import segno

        segno.make(uri, error="m").terminal(out=sys.stdout, compact=True)
    return 0


def _list(args: argparse.Namespace) -> int:
    store, _ = _open(args)
    for account in store.accounts():
        row = {
            "name": account.name,
            "display_name": account.display_name,
            "roles": [r.value for r in account.roles],
            "enabled": account.enabled,
            "totp": account.totp_secret is not None,
            "must_change_password": account.must_change,
            "locked_until": None
            if account.locked_until is None
            else datetime.fromtimestamp(account.locked_until, UTC).isoformat(timespec="seconds"),
        }
        if args.json:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            role_text = ",".join(r.value for r in account.roles)
            flags = ("" if account.enabled else " disabled") + (" totp" if row["totp"] else "")
            sys.stdout.write(f"{account.name}\t{account.display_name}\t{role_text}{flags}\n")
    return 0


def _journal(args: argparse.Namespace) -> int:
    store, _ = _open(args)
    for entry in store.journal_entries(name=args.user):
        if args.json:
            row = {
                "seq": entry.seq,
                "at": entry.at,
                "name": entry.name,
                "event": entry.event,
                "address": entry.address,
                "detail": dict(entry.detail),
            }
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            detail = json.dumps(dict(entry.detail), ensure_ascii=False, sort_keys=True)
            sys.stdout.write(
                f"{entry.at}\t{entry.name}\t{entry.event}\t{entry.address}\t{detail}\n"
            )
    return 0
