"""Issue 14: the parts of relay.metrics with fakes around them: the metered peer link,
failing and cached gauge sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.core import GaugeMetricFamily

from relay.core.errors import PeerRefused, PeerUnavailable
from relay.metrics import MeteredLink, NodeMetrics, cached, gauge

NOW = datetime.now(UTC)


class _Link:
    def __init__(self) -> None:
        self.refusal: PeerUnavailable = PeerUnavailable("down")

    async def deliver(self, peer: str, packets: list[str]) -> list[str]:
        raise self.refusal

    async def upload_attachment(self, peer, digest, size, open_at) -> None:  # type: ignore[no-untyped-def]
        async for _ in open_at(100):
            pass


async def _chunks(offset: int) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"x" * 50


async def test_the_link_counts_failures_and_the_bytes_it_sends() -> None:
    metrics = NodeMetrics(lambda: NOW)
    inner = _Link()
    link = MeteredLink(inner, metrics)
    with pytest.raises(PeerUnavailable):
        await link.deliver("320982", ["p"])
    inner.refusal = PeerRefused("no", status=403, code="peer-not-partner")
    with pytest.raises(PeerRefused):
        await link.deliver("320982", ["p"])
    inner.refusal = PeerRefused("no", status=502)
    with pytest.raises(PeerRefused):
        await link.deliver("320982", ["p"])
    await link.upload_attachment("320982", "d" * 64, 250, _chunks)
    reg = metrics.registry
    down = {"partner": "320982", "reason": "unavailable"}
    assert reg.get_sample_value("tongban_delivery_failures_total", down) == 1
    for reason in ("peer-not-partner", "http-502"):
        refused = {"partner": "320982", "reason": reason}
        assert reg.get_sample_value("tongban_delivery_failures_total", refused) == 1
    bytes_out = {"direction": "out", "partner": "320982"}
    assert reg.get_sample_value("tongban_attachment_bytes_total", bytes_out) == 150


def test_a_failing_source_is_counted_and_hides_nothing() -> None:
    metrics = NodeMetrics(lambda: NOW)

    def broken(now: datetime) -> list[GaugeMetricFamily]:
        raise OSError("unreadable")

    metrics.add_gauges("broken", broken)
    metrics.add_gauges("fine", gauge("tongban_test_value", "A value", lambda now: 7))
    text = metrics.exposition().decode()
    assert "tongban_test_value 7.0" in text
    assert 'tongban_metrics_source_errors_total{source="broken"} 1.0' in text
    with pytest.raises(ValueError, match="registered already"):
        metrics.add_gauges("fine", broken)


def test_a_cached_source_is_recomputed_only_after_its_interval() -> None:
    calls: list[datetime] = []

    def source(now: datetime) -> list[GaugeMetricFamily]:
        calls.append(now)
        return [GaugeMetricFamily("tongban_test_calls", "Calls", value=len(calls))]

    once_a_minute = cached(source, timedelta(minutes=1))
    once_a_minute(NOW)
    once_a_minute(NOW + timedelta(seconds=59))
    assert len(calls) == 1
    once_a_minute(NOW + timedelta(seconds=61))
    assert len(calls) == 2
    once_a_minute(NOW - timedelta(hours=1))  # the clock went back: recompute
    assert len(calls) == 3
