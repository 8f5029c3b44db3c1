"""``tongban`` imports the module of the command it runs, and no other.

Each command module imports what its command needs, up to the whole node; importing all
of them made ``tongban --help`` take 0.8 s (``python -m bench cli_start``). The table of
commands in :mod:`relay.cli` lists each command's name, module and help line so that the
others can be listed without importing them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from relay.cli import _COMMANDS, _Parser, build_parser, main

MODULES = sorted({module for module, _ in _COMMANDS.values()})


def registered_by(module: str) -> list[tuple[str, str | None]]:
    """(name, help) of the commands ``module`` registers, in its order."""
    sub = _Parser(prog="tongban").add_subparsers(parser_class=_Parser)
    importlib.import_module(module).register(sub)
    return [(action.dest, action.help) for action in sub._choices_actions]


@pytest.mark.parametrize("module", MODULES)
def test_the_table_names_what_each_module_registers(module: str) -> None:
    listed = [(name, help_line) for name, (m, help_line) in _COMMANDS.items() if m == module]
    assert registered_by(module) == listed


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [(action.dest, action.help) for action in sub._choices_actions]


def test_every_way_of_building_the_parser_lists_the_same_commands_in_order() -> None:
    full = subcommands(build_parser())
    assert full == [(name, help_line) for name, (_, help_line) in _COMMANDS.items()]
    for argv in ([], ["--help"], ["serve", "--help"], ["verify", "x"], ["nosuch"]):
        assert subcommands(build_parser(argv)) == full, argv


_PROBE = """
import json, sys
from relay.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({
    "code": code,
    "modules": sorted(n for n in sys.modules if n.startswith("relay.cli.")),
    "aiohttp": "aiohttp" in sys.modules,
    "cryptography": "cryptography" in sys.modules,
}))
"""


def imported_after(argv: list[str]) -> dict[str, object]:
    """Run ``tongban ARGV`` in a fresh interpreter: its exit status, the command modules
    it imported, and whether it imported aiohttp and cryptography."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen = dict(json.loads(done.stdout.splitlines()[-1]))
    seen["modules"] = [m for m in seen["modules"] if m in MODULES]
    return seen


def test_the_list_of_commands_imports_none_of_them() -> None:
    seen = imported_after(["--help"])
    assert seen == {"code": 0, "modules": [], "aiohttp": False, "cryptography": False}


def test_no_command_or_an_unknown_one_is_a_usage_error_without_imports() -> None:
    assert imported_after([]) == {
        "code": 2, "modules": [], "aiohttp": False, "cryptography": False
    }  # fmt: skip
    assert imported_after(["nosuch", "--flag"])["modules"] == []


@pytest.mark.parametrize(("argv", "module"), [
    (["pki", "--help"], "relay.cli.pki"),
    (["verify", "--help"], "relay.cli.files"),
    (["serve", "--help"], "relay.cli.serve"),
    (["restore", "--help"], "relay.cli.backup"),
])  # fmt: skip
def test_a_command_imports_its_own_module_alone(argv: list[str], module: str) -> None:
    seen = imported_after(argv)
    assert seen["code"] == 0
    assert [m for m in seen["modules"] if m in MODULES] == [module]


def test_the_command_given_is_parsed_with_its_own_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tongban verify [-h] --sig SIG --trust TRUST file" in err
    assert "error[usage]: the following arguments are required: file, --sig, --trust" in err


def test_the_signing_package_imports_none_of_its_modules() -> None:
    """A command that needs one of them (``tongban verify``: the JWS and certificates)
    does not load the others (tink, the licence forms, every sealing suite)."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, signing; print(sorted(m for m in sys.modules if m.startswith('signing.')))"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
