"""``tongban send`` and ``tongban inbox``: case packets through the node's staff API."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.cli._common import CliError, read_bytes
from relay.config import ConfigError, NodeConfig, load_config
from relay.staff_auth import StaffRole, TokenKeyError, issue_token, load_or_create_token_key
from relay.staff_client import StaffApiError, StaffClient

__all__ = ["register"]

_CLI_TOKEN_TTL = 300.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = subparsers.add_parser(
        "send",
        help="create a case packet (with attachments) through the staff API",
        description="Upload the attachments (resumable), then ask the node to seal, sign "
        "and queue a case packet for the partner node. Prints the packet summary as JSON.",
    )
    _common(send)
    send.add_argument("--to", required=True, metavar="CODE", help="receiving node id")
    send.add_argument("--case", required=True, metavar="ID", help="case id")
    send.add_argument("--matter", required=True, metavar="CODE", help="matter code")
    send.add_argument("--action", required=True, help="action, e.g. submit")
    send.add_argument(
        "--mode", default="proxy_receipt", help="service mode (default proxy_receipt)"
    )
    send.add_argument("--content", required=True, metavar="FILE.json", help="business content")
    send.add_argument("--attach", action="append", default=[], metavar="FILE")
    send.set_defaults(handler=_send)

    inbox = subparsers.add_parser("inbox", help="list accepted incoming packets")
    _common(inbox)
    inbox.add_argument("--case", metavar="ID", help="only this case")
    inbox.add_argument("--json", action="store_true", help="print the API's JSON")
    inbox.set_defaults(handler=_inbox)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the node's node.toml")
    parser.add_argument("--token", help="staff bearer token (default: minted from the node key)")


def _client(args: argparse.Namespace, role: StaffRole) -> StaffClient:
    try:
        config: NodeConfig = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    token = args.token
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise CliError("usage", "--token must be a staff token (printable ASCII, no spaces)")
    if token is None:
        try:
            key = load_or_create_token_key(config.staff.token_key)
        except TokenKeyError as exc:
            raise CliError("staff-key", str(exc)) from None
        token = issue_token(
            key,
            node_id=config.node_id,
            subject=f"cli:{getpass.getuser()}",
            roles=[role],
            now=datetime.now(UTC),
            ttl=_CLI_TOKEN_TTL,
        )
    try:
        return StaffClient.for_config(config, token)
    except OSError as exc:
        raise CliError("file-unreadable", f"cannot read the trust bundle: {exc}") from None


def _api_error(exc: StaffApiError) -> CliError:
    return CliError(exc.code, exc.detail, 2 if exc.status == 0 or exc.status >= 500 else 1)


def _send(args: argparse.Namespace) -> int:
    try:
        content = json.loads(read_bytes(args.content, "content file"))
    except ValueError:
        raise CliError("bad-json", f"content file {args.content} is not valid JSON") from None
    if not isinstance(content, dict):
        raise CliError("bad-json", f"content file {args.content} must hold a JSON object")
    attachments = [Path(a) for a in args.attach]
    for path in attachments:
        if path.is_dir():
            raise CliError("file-not-found", f"attachment {path} is a directory, not a file")
        if not path.is_file():
            raise CliError("file-not-found", f"attachment {path} does not exist")
        try:
            path.open("rb").close()
        except OSError as exc:
            message = f"cannot read attachment {path}: {exc.strerror}"
            raise CliError("file-unreadable", message) from None
    request: dict[str, Any] = {
        "to": args.to,
        "case_id": args.case,
        "matter": args.matter,
        "action": args.action,
        "mode": args.mode,
        "content": content,
    }
    client = _client(args, StaffRole.CLERK)
    try:
        result = asyncio.run(client.send(request, attachments))
    except StaffApiError as exc:
        raise _api_error(exc) from None
    sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return 0


def _inbox(args: argparse.Namespace) -> int:
    client = _client(args, StaffRole.READER)
    params = {"case_id": args.case} if args.case else None
    try:
        result = asyncio.run(client.get("/staff/v1/inbox", params))
    except StaffApiError as exc:
        raise _api_error(exc) from None
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        return 0
    for item in result.get("items", []):
        p = item["packet"]
        files = len(p.get("attachments", []))
        sys.stdout.write(
            f"{item['received_at']}  {p['packet_id']}  case {p['case_id']} #{p['seq']}  "
            f"{p['from']}→{p['to']}  {p['matter']}/{p['action']}  {files} attachment(s)\n"
        )
    return 0
