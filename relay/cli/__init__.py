"""The ``tongban`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; the
handler it sets returns the process exit code. Conventions for every command:

- exit 0: success (for checks: valid / permitted);
- exit 1: the thing checked is invalid or denied (the reason on stderr);
- exit 2: usage error, unreadable input, bad configuration; also, as a last net, input
  too deeply nested or too large (``input-too-large``) and a file that cannot be read
  or written where no command said so itself (``file-error``).

Errors are printed on stderr as ``tongban: error[CODE]: human sentence`` so scripts
can match the stable code and people can read the sentence.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from relay.cli._common import CliError, fail

__all__ = ["main"]

# The commands, in the order of ``tongban --help``: each with the module that registers it
# (``register(subparsers)``, which may add several commands) and its line of help. Only
# the module of the command given is imported: the modules import what their commands
# need, up to the whole node (``tongban --help`` took 0.8 s when every module was
# imported). tests/operations/test_cli_start.py holds these lines to what the modules
# register.
_COMMANDS: dict[str, tuple[str, str]] = {
    "pki": ("relay.cli.pki", "development PKI: roots, node certificates, CRLs"),
    "agreement": ("relay.cli.agreement", "draft, sign, verify and check multilateral agreements"),
    "sign": ("relay.cli.files", "sign a file with this node's seal (detached JWS)"),
    "verify": ("relay.cli.files", "verify a detached file signature"),
    "seal": ("relay.cli.sealing", "encrypt a file to a node's HPKE keys"),
    "open": ("relay.cli.sealing", "decrypt a sealed file with this node's keys"),
    "init": (
        "relay.cli.init",
        "set up a node folder and node.toml from its federation directory entry",
    ),
    "serve": ("relay.cli.serve", "run a node (federation, public and staff listeners, outbox)"),
    "send": ("relay.cli.casework", "create a case packet (with attachments) through the staff API"),
    "inbox": ("relay.cli.casework", "list accepted incoming packets"),
    "cases": (
        "relay.cli.cases",
        "list, open and advance cases; --overdue lists yellow and red cases",
    ),
    "calendar": (
        "relay.cli.calendar",
        "working-day calendar: import an official holiday notice, show a year",
    ),
    "staff": ("relay.cli.staff", "staff API credentials"),
    "licence": ("relay.cli.licence", "issue and verify e-licences (电子证照)"),
    "survey": ("relay.cli.survey", "remote site surveys"),
    "demo": ("relay.cli.demo", "run the demo: three offices, PKI, agreement, nodes, cases"),
    "audit": ("relay.cli.audit", "the node's audit log: checkpoints and proofs"),
    "backup": (
        "relay.cli.backup",
        "copy a node's data while it runs (database snapshot, blobs, manifest)",
    ),
    "restore": (
        "relay.cli.backup",
        "restore a node's data from a backup (the node must be stopped)",
    ),
    "dossier": ("relay.cli.dossier", "case dossiers: export a case's evidence, verify it offline"),
    "db": ("relay.cli.db", "the node's database: schema migrations"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"tongban: error[usage]: {message}\n")
        raise SystemExit(2)


def _modules_for(argv: Sequence[str] | None) -> set[str]:
    """The command modules to import for ``argv``: every one for None; else the module of
    the command it names (its first word not an option: ``tongban`` itself takes only
    ``-h``), or none for no command or an unknown one."""
    if argv is None:
        return {module for module, _ in _COMMANDS.values()}
    command = next((word for word in argv if not word.startswith("-")), None)
    known = _COMMANDS.get(command) if command is not None else None
    return set() if known is None else {known[0]}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``tongban``: every command in full for ``argv`` None; for ``argv``,
    the command it names in full and every other one by its name and help alone."""
    parser = _Parser(prog="tongban", description="通办 tongban — cross-province case relay")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = _modules_for(argv)
    for name, (module, help_line) in _COMMANDS.items():
        if name in sub.choices:  # registered with another command of its module
            continue
        if module in modules:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_line)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as exc:
        return fail(exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    # the last net for input no command foresaw (each should say more itself)
    except (RecursionError, OverflowError, MemoryError) as exc:
        return fail(
            "input-too-large",
            "the input is nested too deeply, or holds a number or a size larger than can "
            f"be handled ({type(exc).__name__})",
            2,
        )
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fail("file-error", f"{where}{exc.strerror or exc}", 2)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
