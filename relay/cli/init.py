"""``tongban init``: a node folder and node.toml from the node's directory entry."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from relay.cli._common import CliError, whole_number

__all__ = ["register"]


def _init(args: argparse.Namespace) -> int:
    from relay.federation.bootstrap import InitError, init_node

    try:
        entry = init_node(
            directory=Path(args.directory),
            trust_bundle=Path(args.trust),
            key_dir=Path(args.key_dir),
            out=Path(args.out),
            now=datetime.now(UTC),
            own=args.own,
            sources=args.source or (),
            listen=args.listen,
            staff_port=args.staff_port,
        )
    except InitError as exc:
        raise CliError("init", str(exc), 2) from None
    print(
        f"node {entry.node_id} ({entry.name_zh}) set up in {args.out}: put the signed "
        f"agreements into {args.out}/agreements, then: tongban serve --config "
        f"{args.out}/node.toml"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser(
        "init", help="set up a node folder and node.toml from its federation directory entry"
    )
    init.add_argument("--directory", required=True, help="the province's signed directory")
    init.add_argument("--trust", required=True, help="the federation trust bundle (PEM)")
    init.add_argument("--key-dir", required=True, help="the node's key folder (node.json...)")
    init.add_argument("--out", required=True, help="new node folder")
    init.add_argument(
        "--own",
        action="store_true",
        help="this node publishes the province's directory (serves the file given)",
    )
    init.add_argument(
        "--source",
        action="append",
        help="a URL serving directories (repeat; default: three other members)",
    )
    init.add_argument(
        "--listen",
        default="0.0.0.0",  # noqa: S104 - partners reach the node from other hosts
        help="address of the federation and public listeners",
    )
    init.add_argument(
        "--staff-port", type=whole_number, default=8445, help="staff API port (loopback)"
    )
    init.set_defaults(handler=_init)
