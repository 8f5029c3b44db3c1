"""Issue 12: after each federation batch the survey layer looks only at the packets
that batch accepted (those carrying files), not at the whole inbox, which grows with
history; at start it looks at the inbox after its cursor (what arrived since the last
start), a page at a time, and the cursor never passes a packet it failed to collect."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relay.core.model import AttachmentInfo, InboxItem, PacketSummary
from relay.core.ports import OpenedPacket, ReceivedBatch
from relay.http.survey_cases import CURSOR_FILE, SETTLE, _CollectingCore, collect_reports

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


def with_action(packet_id: str, action: str) -> PacketSummary:
    return dataclasses.replace(summary(packet_id, 1), action=action)


class Inbox:
    """A core's inbox as the catch-up reads it (``inbox_after``), numbered from 1;
    ``read_packet`` opens a packet as carrying no report (a marker is written), or
    raises for the packets in ``broken``."""

    def __init__(self, packets: Sequence[PacketSummary], received: datetime = AT) -> None:
        self.items = [InboxItem(p, received, "receipt", None) for p in packets]
        self.reads: list[tuple[int, int]] = []
        self.opened: list[str] = []
        self.broken: set[str] = set()

    def inbox_after(self, after: int, limit: int) -> list[tuple[int, InboxItem]]:
        self.reads.append((after, limit))
        numbered = list(enumerate(self.items, start=1))
        return [(n, item) for n, item in numbered if n > after][:limit]

    def read_packet(self, packet_id: str) -> object:
        self.opened.append(packet_id)
        if packet_id in self.broken:
            raise OSError("disk read error")
        content = {"format": "other"}  # not a case event: collected as nothing
        return type("Opened", (), {"content": content, "summary": summary(packet_id, 1)})()


async def start(core: Inbox, root: Path, at: datetime = AT + SETTLE) -> list[object]:
    """The catch-up of a start (a new process: nothing seen yet)."""
    return await collect_reports(
        core, root, me="420106", bundle=None, at=at, database=None, seen=set(),  # type: ignore[arg-type]
    )  # fmt: skip


async def test_at_start_nothing_of_history_is_opened_that_cannot_be_a_report(tmp_path) -> None:
    """A packet is opened (verified and decrypted) only when its routing facts say it
    may carry a survey report not looked at yet: a submission with files or a report
    whose marker says it was collected is not, and a packet opened once and found to
    carry no report is marked so and never again."""
    packets = [with_action("p-submit", "submit"), with_action("p-done", "survey-report"),
               with_action("p-new", "survey-report")]  # fmt: skip
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / ".p-done.done").write_text("session\n")
    core = Inbox(packets)
    seen: set[str] = set()
    done = await collect_reports(
        core,
        tmp_path,
        me="420106",
        bundle=None,
        at=AT + SETTLE,
        database=None,
        seen=seen,  # type: ignore[arg-type]
    )
    assert done == []
    assert core.opened == ["p-new"]
    assert seen == {"p-new"}  # what was opened only: not every packet of the inbox
    # it carried no report: marked so, a later start (a new process) opens nothing
    assert (tmp_path / "case" / ".p-new.done").read_text() == "\n"
    (tmp_path / CURSOR_FILE).unlink()  # even when it looks at the whole inbox again
    again = Inbox(packets)
    assert await start(again, tmp_path) == []
    assert again.opened == []


async def test_a_start_reads_only_what_arrived_since_the_last_one(tmp_path: Path) -> None:
    packets = [with_action(f"p{i}", "survey-report") for i in range(1, 4)]
    first = Inbox(packets)
    await start(first, tmp_path)
    assert first.opened == ["p1", "p2", "p3"]
    assert (tmp_path / CURSOR_FILE).read_text() == "3 p3\n"

    later = Inbox([*packets, with_action("p4", "survey-report")])
    await start(later, tmp_path)
    assert later.opened == ["p4"]
    # the cursor's packet checked where it should be, then only what follows it
    assert later.reads == [(2, 1), (3, 512), (4, 512)]
    assert (tmp_path / CURSOR_FILE).read_text() == "4 p4\n"


async def test_a_long_history_is_read_a_page_at_a_time(tmp_path: Path) -> None:
    core = Inbox([with_action(f"p{i}", "submit") for i in range(1, 1201)])
    await start(core, tmp_path)
    assert core.reads == [(0, 512), (512, 512), (1024, 512), (1200, 512)]
    assert (tmp_path / CURSOR_FILE).read_text() == "1200 p1200\n"


async def test_a_packet_not_collected_holds_the_cursor_until_a_start_collects_it(
    tmp_path: Path,
) -> None:
    packets = [with_action(f"p{i}", "survey-report") for i in range(1, 4)]
    core = Inbox(packets)
    core.broken = {"p2"}
    await start(core, tmp_path)
    assert core.opened == ["p1", "p2", "p3"]
    assert (tmp_path / CURSOR_FILE).read_text() == "1 p1\n"  # p3 looked at, p2 not

    again = Inbox(packets)  # the disk is back
    await start(again, tmp_path)
    assert again.opened == ["p2"]  # p3 has its marker
    assert (tmp_path / CURSOR_FILE).read_text() == "3 p3\n"


async def test_the_cursor_stops_before_packets_still_settling(tmp_path: Path) -> None:
    """On PostgreSQL a packet numbered lower may still be committing in another worker:
    the cursor passes only packets accepted at least ``SETTLE`` ago."""
    old = [with_action("p1", "survey-report")]
    core = Inbox(old)
    core.items.append(InboxItem(with_action("p2", "survey-report"), AT + SETTLE, "r", None))
    await start(core, tmp_path, at=AT + SETTLE + timedelta(seconds=1))
    assert core.opened == ["p1", "p2"]  # both collected all the same
    assert (tmp_path / CURSOR_FILE).read_text() == "1 p1\n"


async def test_a_cursor_the_inbox_does_not_match_means_the_whole_inbox(
    tmp_path: Path,
) -> None:
    """After a restore (another database), the cursor's number may name another packet,
    or none: the start then looks at the whole inbox (markers keep it from opening
    twice what it collected)."""
    (tmp_path / CURSOR_FILE).write_text("2 p-gone\n")
    core = Inbox([with_action("p1", "survey-report"), with_action("p2", "survey-report")])
    await start(core, tmp_path)
    assert core.opened == ["p1", "p2"]
    assert (tmp_path / CURSOR_FILE).read_text() == "2 p2\n"

    (tmp_path / CURSOR_FILE).write_text("not a cursor")
    again = Inbox([with_action("p1", "survey-report"), with_action("p3", "survey-report")])
    await start(again, tmp_path)
    assert again.opened == ["p3"]
    assert again.reads[0] == (0, 512)


async def test_a_cursor_that_cannot_be_written_costs_only_a_longer_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "reports"
    blocked.write_text("a file where the folder should be")
    core = Inbox([with_action("p1", "submit")])
    assert await start(core, blocked) == []
    assert "cursor not written" in caplog.text
    assert blocked.read_text() == "a file where the folder should be"
