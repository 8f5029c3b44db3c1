"""Run every ``bench/bench_*.py`` module (or those named on the command line).

Usage: ``python -m bench [NAME ...]`` where NAME is a module suffix, e.g. ``sealing``.
Each module's ``run()`` returns rows (dicts); they are printed as one table per module.
Exit status 1 if any module raised.

Several modules run one after the other, each in a fresh interpreter: in one process,
what the earlier ones left (a heap of millions of objects after ``flat_costs``, caches,
imports) made the later ones measure the harness. ``relay_http``'s clients and its probe
of node A's event loop live in this process; after the others, its full garbage
collections took 50-150 ms (13-18 ms alone), and the half-rate p99 it printed for node A
was 154-161 ms, against 17-55 ms when it ran alone.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path


def discover(selected: Sequence[str] = ()) -> list[str]:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_")
    )
    if selected:
        names = [n for n in names if n.removeprefix("bench_") in selected or n in selected]
    return names


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def format_table(rows: Sequence[dict[str, object]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            v.rjust(w) if v[:1].isdigit() or (v[:1] == "-" and v[1:2].isdigit()) else v.ljust(w)
            for v, w in zip(r, widths, strict=True)
        )
        for r in cells
    ]
    return "\n".join([line, rule, *body])


def main(argv: Sequence[str]) -> int:
    names = discover(argv)
    if not names:
        print(f"no benchmark modules match {list(argv)}", file=sys.stderr)
        return 2
    if len(names) > 1:
        return run_apart(names)
    return run_here(names[0])


def run_apart(names: Sequence[str]) -> int:
    """Each module in an interpreter of its own (``python -m bench NAME``), in order;
    1 if any of them failed."""
    status = 0
    for name in names:
        sys.stdout.flush()
        if subprocess.run([sys.executable, "-m", "bench", name], check=False).returncode:
            status = 1
    return status


def run_here(name: str) -> int:
    """The module ``name`` in this process: its table, or its traceback and 1."""
    print(f"\n== {name} ==", flush=True)
    started = time.perf_counter()
    try:
        rows = importlib.import_module(f"bench.{name}").run()
    except Exception:
        traceback.print_exc()
        return 1
    print(format_table(rows))
    print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
