"""The ``tongban`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; the
handler it sets returns the process exit code. Conventions for every command:

- exit 0: success (for checks: valid / permitted);
- exit 1: the thing checked is invalid or denied (the reason on stderr);
- exit 2: usage error, unreadable input, bad configuration.

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

# Command modules, in the order they appear in ``tongban --help``.
_COMMAND_MODULES: tuple[str, ...] = (
    # one line per command module; keep this list sorted by help order
    "relay.cli.pki",
    "relay.cli.agreement",
    "relay.cli.files",
    "relay.cli.sealing",
    "relay.cli.init",
    "relay.cli.serve",
    "relay.cli.casework",
    "relay.cli.cases",
    "relay.cli.calendar",
    "relay.cli.staff",
    "relay.cli.licence",
    "relay.cli.survey",
    "relay.cli.demo",
    "relay.cli.audit",
    "relay.cli.backup",
    "relay.cli.dossier",
    "relay.cli.db",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"tongban: error[usage]: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tongban", description="通办 tongban — cross-province case relay")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as exc:
        return fail(exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
