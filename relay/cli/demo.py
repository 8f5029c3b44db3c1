"""``tongban demo``: a local three-province federation, scripted, then left running."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay.cli._common import CliError
from relay.db.settings import DatabaseUrlError, check_url
from relay.demo.errors import NotADemoDatabase, NotADemoFolder
from relay.demo.offices import OFFICES
from relay.demo.report import Reporter

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the demo: three offices, PKI, agreement, nodes, cases",
        description="Create a development federation of three offices (420106 Wuchang, "
        "320982 Dafeng, 371422 Ningjin) in a fresh work folder, run the scripted "
        "scenario printing what each step proved, then keep the nodes running until "
        "Ctrl-C. Exit 0 when every step held, 1 otherwise.",
    )
    demo.add_argument(
        "--dir",
        default="demo-data",
        help="work folder, recreated on each run (only deleted if the demo created it; "
        "default ./demo-data)",
    )
    demo.add_argument(
        "--once", action="store_true", help="exit after the scripted part (for scripts and CI)"
    )
    demo.add_argument(
        "--sm-province",
        action="append",
        default=[],
        choices=[o.federation.lower() for o in OFFICES],
        help="run this province in the SM (national cryptography) profile: SM2 root and "
        "seals, SM2SM3 signatures, SM2 + SM4-GCM sealing (repeatable; default: none)",
    )
    demo.add_argument(
        "--database",
        metavar="URL",
        help="play the demo on PostgreSQL (postgresql://user@host:port/dbname): each "
        "office gets its own schema tongban_demo_<node id> there, recreated on each run "
        "(default: each node's embedded SQLite file)",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    # here, not at the top: the scenario's survey participant loads aiortc and PyAV
    # (some 28 MiB), which every other command, `tongban serve` first, can do without
    from relay.demo.runner import run_demo

    out = Reporter(sys.stdout)
    sm = frozenset(o.federation for o in OFFICES if o.federation.lower() in args.sm_province)
    if args.database is not None:
        try:
            check_url(args.database)
        except DatabaseUrlError as exc:
            raise CliError("demo-database", f"--database {exc}", 2) from None
    try:
        ok = asyncio.run(
            run_demo(Path(args.dir), out, once=args.once, sm_federations=sm, database=args.database)
        )
    except NotADemoFolder as exc:
        raise CliError("demo-dir", str(exc), 2) from None
    except NotADemoDatabase as exc:
        raise CliError("demo-database", str(exc), 2) from None
    return 0 if ok else 1
