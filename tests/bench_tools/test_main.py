"""python -m bench: several benchmarks run each in an interpreter of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bench.__main__ as bench_main


def _record(monkeypatch: pytest.MonkeyPatch, failing: set[str]) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(args: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 1 if args[-1] in failing else 0)

    monkeypatch.setattr(bench_main.subprocess, "run", run)
    return calls


def test_several_benchmarks_run_each_in_a_fresh_interpreter(monkeypatch) -> None:
    calls = _record(monkeypatch, failing=set())
    assert bench_main.main(["verify", "sealing"]) == 0
    assert calls == [
        [sys.executable, "-m", "bench", "bench_sealing"],
        [sys.executable, "-m", "bench", "bench_verify"],
    ]


def test_a_failing_benchmark_fails_the_run_and_the_others_still_run(monkeypatch) -> None:
    calls = _record(monkeypatch, failing={"bench_sealing"})
    assert bench_main.main(["verify", "sealing", "survey"]) == 1
    assert [c[-1] for c in calls] == ["bench_sealing", "bench_survey", "bench_verify"]


def test_a_child_runs_its_one_benchmark_by_its_module_name() -> None:
    assert bench_main.discover(["bench_verify"]) == ["bench_verify"]


def test_no_match_is_an_error(capsys) -> None:
    assert bench_main.main(["no-such-benchmark"]) == 2
    assert "no benchmark modules match" in capsys.readouterr().err
