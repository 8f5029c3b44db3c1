"""Packet ids (relay.core.ids): UUIDs of version 7, lowercase and hyphenated, in the
order they were made from one millisecond to the next, unique."""

from __future__ import annotations

import re
import time
import uuid

from relay_core_support import DAFENG, WUCHANG, Federation, drain, send

from relay.core.ids import packet_id

_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_an_id_is_a_version_7_uuid_as_the_protocol_writes_it() -> None:
    made = packet_id()
    assert _FORM.fullmatch(made), made
    parsed = uuid.UUID(made)  # the standard library as the judge
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == made


def test_ids_carry_the_millisecond_they_were_made_first() -> None:
    before = time.time_ns() // 1_000_000
    made = packet_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(made).int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_and_none_repeats() -> None:
    first = [packet_id() for _ in range(1000)]
    time.sleep(0.002)
    later = [packet_id() for _ in range(1000)]
    assert max(first) < min(later)
    assert len(set(first + later)) == 2000


async def test_a_node_names_its_packets_so_and_its_partner_takes_them(
    federation: Federation,
) -> None:
    federation.start(WUCHANG)
    federation.start(DAFENG)
    ids = await send(federation, WUCHANG, DAFENG, "c", n=3)
    assert all(_FORM.fullmatch(i) for i in ids), ids
    await drain(federation, WUCHANG)
    assert [i.summary.packet_id for i in federation.nodes[DAFENG].list_inbox()] == ids
