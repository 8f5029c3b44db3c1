"""Run every ``bench/bench_*.py`` module (or those named on the command line).

Usage: ``python -m bench [NAME ...]`` where NAME is a module suffix, e.g. ``sealing``.
Each module's ``run()`` returns rows (dicts); they are printed as one table per module.
Exit status 1 if any module raised.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    status = 0
    names = discover(argv)
    if not names:
        print(f"no benchmark modules match {list(argv)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            rows = importlib.import_module(f"bench.{name}").run()
        except Exception:
            traceback.print_exc()
            status = 1
            continue
        print(format_table(rows))
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
