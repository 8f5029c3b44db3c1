"""Issue 12: after each federation batch the survey layer looks only at the packets
that batch accepted (those carrying files), not at the whole inbox, which grows with
history; at start it still collects from the whole inbox."""

from __future__ import annotations

import dataclasses
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


async def test_at_start_nothing_of_history_is_opened_that_cannot_be_a_report(tmp_path) -> None:
    """At start the whole inbox is listed; a packet is opened (verified and decrypted)
    only when its routing facts say it may carry a survey report not looked at yet: a
    submission with files or a report whose marker says it was collected is not, and a
    packet opened once and found to carry no report is marked so and never again."""
    from relay.http.survey_cases import collect_reports

    def with_action(packet_id: str, action: str) -> PacketSummary:
        return dataclasses.replace(summary(packet_id, 1), action=action)

    class Listed:
        def __init__(self) -> None:
            self.opened: list[str] = []

        def list_inbox(self, *, case_id: str | None = None) -> list[object]:
            packets = [with_action("p-submit", "submit"), with_action("p-done", "survey-report"),
                       with_action("p-new", "survey-report")]  # fmt: skip
            return [type("Item", (), {"summary": p})() for p in packets]

        def read_packet(self, packet_id: str) -> object:
            self.opened.append(packet_id)
            content = {"format": "other"}  # not a case event: collected as nothing
            return type("Opened", (), {"content": content, "summary": summary(packet_id, 1)})()

    (tmp_path / "case").mkdir()
    (tmp_path / "case" / ".p-done.done").write_text("session\n")
    core = Listed()
    seen: set[str] = set()
    done = await collect_reports(
        core,
        tmp_path,
        me="420106",
        bundle=None,
        at=AT,
        database=None,
        seen=seen,  # type: ignore[arg-type]
    )
    assert done == []
    assert core.opened == ["p-new"]
    assert seen == {"p-new"}  # what was opened only: not every packet of the inbox
    # it carried no report: marked so, a later start (a new process) opens nothing
    assert (tmp_path / "case" / ".p-new.done").read_text() == "\n"
    again = Listed()
    assert await collect_reports(
        again, tmp_path, me="420106", bundle=None, at=AT, database=None, seen=set(),  # type: ignore[arg-type]
    ) == []  # fmt: skip
    assert again.opened == []
