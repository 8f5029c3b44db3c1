"""Ports for local federations: parallel test workers draw from disjoint slices."""

from __future__ import annotations

import pytest

from relay import loopback


def test_parallel_workers_draw_ports_from_disjoint_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        drawn[worker] = {p for _ in range(5) for p in loopback.free_ports(8)}
    middle = (loopback._LOW + loopback._HIGH) // 2
    assert all(loopback._LOW <= p < middle for p in drawn["gw0"])
    assert all(middle <= p < loopback._HIGH for p in drawn["gw1"])


def test_outside_parallel_tests_the_whole_range_is_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert loopback._slice() == (loopback._LOW, loopback._HIGH)
    ports = loopback.free_ports(4)
    assert len(set(ports)) == 4
    assert all(loopback._LOW <= p < loopback._HIGH for p in ports)


def test_a_port_handed_out_is_not_handed_out_again_before_it_is_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Callers draw in several calls before binding (``free_ports(3), free_ports(3)``):
    eight one-port draws from eight free ports give eight different ports (without the
    reservation they repeat all but 0.24% of the time; the split-view test hit it)."""
    monkeypatch.setattr(loopback, "_slice", lambda: (19000, 19008))
    monkeypatch.setattr(loopback, "_handed_out", {})
    drawn = [p for _ in range(8) for p in loopback.free_ports(1)]
    assert sorted(drawn) == list(range(19000, 19008))
    with pytest.raises(OSError, match="no 1 free ports"):
        loopback.free_ports(1)
