"""Issue 12: after each federation batch the survey layer looks only at the packets
that batch accepted (those carrying files), not at the whole inbox, which grows with
history; at start it still collects from the whole inbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from relay.core.model import AttachmentInfo, PacketSummary
from relay.core.ports import OpenedPacket, ReceivedBatch
from relay.http.survey_cases import _CollectingCore

AT = datetime(2026, 12, 1, tzinfo=UTC)


def summary(packet_id: str, files: int) -> PacketSummary:
    attachments = tuple(
        AttachmentInfo("a" * 63 + str(i), 10, "video/webm", f"f{i}") for i in range(files)
    )
    return PacketSummary(packet_id, "d" * 64, "case", "320982", "420106", "m",
                         "survey-report", "online", 1, AT, AT, attachments)  # fmt: skip


class Core:
    """A core that accepted ``accepted`` in its batch; counts whole-inbox reads."""

    def __init__(self, accepted: Sequence[OpenedPacket]) -> None:
        self.accepted = tuple(accepted)
        self.inbox_reads = 0

    async def receive_batch_opened(self, peer_id: str, packets: Sequence[str]) -> ReceivedBatch:
        return ReceivedBatch(tuple(f"receipt-{p}" for p in packets), self.accepted, AT)

    def list_inbox(self, *, case_id: str | None = None) -> list[object]:
        self.inbox_reads += 1
        return []


async def test_a_batch_collects_only_its_own_packets_with_files() -> None:
    calls: list[list[str]] = []

    async def collect(only: Sequence[PacketSummary]) -> list[object]:
        calls.append([s.packet_id for s in only])
        return []

    with_files, plain = summary("p-files", 2), summary("p-plain", 0)
    inner = Core([OpenedPacket(with_files, {}), OpenedPacket(plain, {})])
    core = _CollectingCore(inner, collect)
    assert await core.receive_batch("320982", ["t1", "t2"]) == ["receipt-t1", "receipt-t2"]
    assert calls == [["p-files"]]
    assert inner.inbox_reads == 0

    inner.accepted = (OpenedPacket(plain, {}),)
    await core.receive_batch("320982", ["t3"])
    assert calls == [["p-files"]]  # nothing with files: nothing to collect
