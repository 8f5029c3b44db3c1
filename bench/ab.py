"""Compare a change with a base revision on a noisy machine: alternating runs of a bench.

Usage::

    python -m bench.ab NAME MEASURE [--base REV] [--pairs N] [--column per_s]
                       [--note REGEX] [--lower]

Runs the benchmark NAME (``python -m bench NAME``) in a worktree of REV (default
``HEAD``) and in the working tree (the change, committed or not), ``N`` times each
(default 6), in ABBA order: base then change, change then base, and so on, so that a
machine that speeds up or slows down over the minutes favours neither side. From every
run it takes the ``per_s`` (or ``--column``, higher is better) of the row whose
``measure`` starts with MEASURE, and prints each figure, the median of each side and of
the pairs' ratios (change / base), and in how many pairs the change was ahead.
``--note REGEX`` takes the figure from the row's note instead (the regular expression's
first group, e.g. ``'its process ([0-9.]+)'`` for node A's CPU per created packet, which
a busy host disturbs less than the rate); ``--lower`` when less is better (a CPU, a
latency): each ratio is then base / change, so a ratio over 1 still means the change is
better.
Environment variables (``BENCH_ONLY``, ``BENCH_PACKETS`` …) reach both sides.

Why: on a 2-core machine two runs of the same code a minute apart differ by up to 25%
(``bench relay_http``). Three pairs once showed a change 16% faster, each pair run in
the same order; seven more pairs, alternated, showed it no faster at all (issue 12's
notes). A difference is worth believing when the change is ahead in nearly every pair
and the median ratio stands clear of the pairs' spread.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    base: float
    change: float
    lower: bool = False  # less is better: the ratio is base / change

    @property
    def ratio(self) -> float:
        """Over 1 when the change is better."""
        return self.base / self.change if self.lower else self.change / self.base


def abba(pairs: int) -> list[str]:
    """The order of the runs: ``base``/``change`` for pair 0, the other way for pair 1…"""
    order: list[str] = []
    for i in range(pairs):
        order += ["base", "change"] if i % 2 == 0 else ["change", "base"]
    return order


def parse_tables(text: str) -> list[dict[str, str]]:
    """The rows of every table ``python -m bench`` printed (:func:`bench.__main__.
    format_table`, of any revision): the rule of dashes under the header gives each
    column's span."""
    lines = text.splitlines()
    rows: list[dict[str, str]] = []
    for i, rule in enumerate(lines[1:], start=1):
        if not rule.startswith("-") or set(rule) - {"-", " "}:
            continue
        spans, start = [], 0
        for dashes in rule.split("  "):
            spans.append((start, start + len(dashes)))
            start += len(dashes) + 2
        names = [lines[i - 1][a:b].strip() for a, b in spans]
        for line in lines[i + 1 :]:
            if not line.strip() or line.startswith("("):
                break
            rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
    return rows


def figure(
    rows: Sequence[dict[str, str]], measure: str, column: str = "per_s", note: str | None = None
) -> float:
    """``column`` of the one row whose ``measure`` starts with ``measure``; with ``note``
    (a regular expression), its first group in that row's note."""
    found = [row for row in rows if row.get("measure", "").startswith(measure)]
    if len(found) != 1:
        names = [row.get("measure", "") for row in rows]
        raise ValueError(f"{len(found)} rows start with {measure!r}; the rows: {names}")
    if note is not None:
        match = re.search(note, found[0].get("note", ""))
        if match is None:
            raise ValueError(f"the note of {found[0]['measure']!r} does not match {note!r}")
        return float(match.group(1).replace(",", ""))
    try:
        return float(found[0].get(column, "").replace(",", ""))
    except ValueError:
        raise ValueError(f"the row {found[0]['measure']!r} has no {column} figure") from None


def summary(pairs: Sequence[Pair]) -> str:
    ratios = [p.ratio for p in pairs]
    ahead = sum(1 for r in ratios if r > 1)  # a ratio over 1: the change is better
    return (
        f"median base {statistics.median(p.base for p in pairs):,.1f}, change "
        f"{statistics.median(p.change for p in pairs):,.1f}; change / base: median "
        f"{statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}); "
        f"the change ahead in {ahead} of {len(pairs)} pairs"
    )


def _run(tree: Path, name: str, measure: str, column: str, note: str | None) -> float:
    """One run of the bench in ``tree`` (its own ``bench`` and ``relay``: the current
    directory comes first on ``python -m``'s path). Its errors reach the terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", name], cwd=tree, check=True, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return figure(parse_tables(done.stdout), measure, column, note)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the benchmark, as for python -m bench (e.g. relay_http)")
    parser.add_argument("measure", help="the start of the row's measure (e.g. 'create 10000')")
    parser.add_argument("--base", default="HEAD", help="the revision to compare with")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--column", default="per_s", help="the column compared (higher is better)")
    parser.add_argument("--note", help="a regular expression: its first group in the row's note")
    parser.add_argument("--lower", action="store_true", help="less is better (a CPU, a latency)")
    args = parser.parse_args(argv)
    here = Path(subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip())
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base],
                       cwd=here, check=True)  # fmt: skip
        try:
            got: dict[str, list[float]] = {"base": [], "change": []}
            for side in abba(args.pairs):
                tree = base if side == "base" else here
                got[side].append(_run(tree, args.name, args.measure, args.column, args.note))
                what = args.column if args.note is None else args.note
                print(f"{side:6} {got[side][-1]:12,.3f} {what}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=here)
    pairs = [Pair(b, c, args.lower) for b, c in zip(got["base"], got["change"], strict=True)]
    print(summary(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
