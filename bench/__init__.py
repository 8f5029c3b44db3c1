"""Benchmarks (``make bench`` = ``python -m bench``); not tests, never part of ``make test``.

Each ``bench/bench_*.py`` module exposes ``run() -> list[dict]``; every row names what
was measured, and speed rows carry a ratio against a baseline measured in the same run.
"""
