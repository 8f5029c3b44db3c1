"""``bench node_memory``: two real nodes, packets passed in rounds, each node's memory
read after each round."""

from __future__ import annotations

import pytest

import bench.bench_node_memory as node_memory


def test_node_memory_reads_both_real_nodes_after_each_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_memory, "ROUNDS", 4)
    monkeypatch.setattr(node_memory, "PER_ROUND", 40)
    monkeypatch.setattr(node_memory, "QUIET", 0.2)
    rows = node_memory.run()
    assert [row["packets passed"] for row in rows] == [
        "40",
        "80",
        "120",
        "160",
        "growth, round 3 to 4",
    ]
    for row in rows[:-1]:
        for node in ("A", "B"):
            rss, anon = row[f"{node} MiB"], row[f"{node} anon MiB"]
            assert isinstance(rss, float)
            assert isinstance(anon, float)
            assert 20 < anon < rss < 400  # a real serve process, its private part inside
    assert rows[0]["A vs first"] == 1.0
    assert str(rows[-1]["A anon MiB"]).endswith(" bytes/packet")
