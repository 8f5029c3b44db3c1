"""``python -m bench.ab``, the alternating comparison of a change with a base revision:
its run order cancels a drift of the machine, and it reads the figure it compares from
the tables ``python -m bench`` prints."""

from __future__ import annotations

import pytest

from bench.__main__ import format_table
from bench.ab import Pair, abba, figure, parse_tables, summary


def test_runs_alternate_in_abba_order_so_a_drift_favours_neither_side() -> None:
    order = abba(4)
    assert order == ["base", "change", "change", "base", "base", "change", "change", "base"]
    # a machine getting faster run after run: each side gets the same sum of positions
    assert sum(i for i, side in enumerate(order) if side == "base") == sum(
        i for i, side in enumerate(order) if side == "change"
    )


def test_the_figure_is_read_from_the_printed_table_by_the_start_of_its_measure() -> None:
    rows = [
        {"measure": "create 10000 packets at A, 16 clients", "seconds": 9.5, "per_s": 1052.6,
         "note": "p50 14.2 ms,  p99 26.2 ms"},
        {"measure": "baseline: the same requests", "seconds": 0.9, "per_s": 11608.69},
        {"measure": "a row without a rate", "note": "1.00 of it"},
    ]  # fmt: skip
    text = "\n== bench_relay_http ==\n" + format_table(rows) + "\n(29.6 s)\n"
    parsed = parse_tables(text)
    assert [r["measure"] for r in parsed] == [str(r["measure"]) for r in rows]
    assert parsed[0]["note"] == "p50 14.2 ms,  p99 26.2 ms"
    assert figure(parsed, "create 10000") == pytest.approx(1052.6)
    assert figure(parsed, "baseline") == pytest.approx(11608.69)
    with pytest.raises(ValueError, match="0 rows start with 'catch-up'"):
        figure(parsed, "catch-up")
    with pytest.raises(ValueError, match="2 rows start with ''"):
        figure(parsed[:2], "")
    with pytest.raises(ValueError, match="has no per_s figure"):
        figure(parsed, "a row without")
    assert figure(parsed, "create", note=r"p99 ([0-9.]+) ms") == pytest.approx(26.2)
    with pytest.raises(ValueError, match="does not match"):
        figure(parsed, "baseline", note=r"p99 ([0-9.]+) ms")


def test_the_summary_gives_medians_the_ratio_spread_and_the_pairs_the_change_led() -> None:
    pairs = [Pair(1000, 1100), Pair(900, 990), Pair(1100, 1045)]
    text = summary(pairs)
    assert "median base 1,000.0, change 1,045.0" in text
    assert "median 1.100 (pairs 0.950-1.100)" in text
    assert text.endswith("the change ahead in 2 of 3 pairs")


def test_when_less_is_better_a_ratio_over_one_still_means_the_change_is_better() -> None:
    pairs = [Pair(0.80, 0.70, lower=True), Pair(0.75, 0.72, lower=True), Pair(0.7, 0.8, lower=True)]
    text = summary(pairs)
    assert "median 1.042 (pairs 0.875-1.143)" in text
    assert text.endswith("the change ahead in 2 of 3 pairs")
