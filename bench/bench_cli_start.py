"""How long ``tongban`` takes to start: each command line run in a fresh interpreter,
``ROUNDS`` times in turn, the median wall time of each reported.

Baselines in the same run: the bare interpreter (``python -c pass``), and the parser with
every command module imported (``build_parser()`` without arguments: how every command
started before ``tongban`` imported only the module of the command given). A command's
own start-up (its module's imports) comes on top of the list of commands; ``--help``
stops there, so the rows are the floor of each command's run time.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

ROUNDS = 7

_MAIN = "import sys; from relay.cli import main; sys.exit(main(sys.argv[1:]))"

LINES: tuple[tuple[str, list[str]], ...] = (
    ("baseline: python -c pass", ["-c", "pass"]),
    (
        "baseline: every command module imported (as before)",
        ["-c", "from relay.cli import build_parser; build_parser()"],
    ),
    ("tongban --help", ["-c", _MAIN, "--help"]),
    ("tongban init --help", ["-c", _MAIN, "init", "--help"]),
    ("tongban verify --help", ["-c", _MAIN, "verify", "--help"]),
    ("tongban pki --help", ["-c", _MAIN, "pki", "--help"]),
    ("tongban send --help", ["-c", _MAIN, "send", "--help"]),
    ("tongban serve --help", ["-c", _MAIN, "serve", "--help"]),
)


def _seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def run() -> list[dict[str, object]]:
    times: dict[str, list[float]] = {what: [] for what, _ in LINES}
    for _ in range(ROUNDS):  # in turn: a machine that slows down favours no line
        for what, args in LINES:
            times[what].append(_seconds(args))
    medians = {what: statistics.median(t) for what, t in times.items()}
    bare = medians[LINES[0][0]]
    every = medians[LINES[1][0]]
    return [
        {
            "measure": what,
            "ms": seconds * 1000,
            "vs bare python": seconds / bare,
            "vs every module": seconds / every,
        }
        for what, seconds in medians.items()
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
