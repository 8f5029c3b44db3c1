"""The accepted packets the application has not settled yet (issue 12): entered in the
transaction that accepts them, left when the application settles them, read by case
through an index; a store migrated from step 1 counts every packet accepted before as
unsettled. On both backends."""

from __future__ import annotations

from relay_core_support import DAFENG, WUCHANG, Federation, drain, send, undo_outbox_bodies


def unsettled(fed: Federation, case_id: str | None = None) -> list[str]:
    return [i.summary.packet_id for i in fed.nodes[DAFENG].unsettled_inbox(case_id=case_id)]


async def test_accepted_packets_wait_until_the_application_settles_them(
    federation: Federation,
) -> None:
    fed = federation
    first = await send(fed, WUCHANG, DAFENG, "case-a", n=3)
    other = await send(fed, WUCHANG, DAFENG, "case-b", n=2)
    assert unsettled(fed) == []  # nothing accepted yet
    await drain(fed, WUCHANG)
    assert unsettled(fed, "case-a") == first  # in arrival order, by case
    assert unsettled(fed, "case-b") == other
    assert sorted(unsettled(fed)) == sorted(first + other)

    fed.nodes[DAFENG].settle_inbox([*first[:2], "no-such-packet"])
    assert unsettled(fed, "case-a") == first[2:]
    fed.nodes[DAFENG].settle_inbox(first[2:] + other)
    assert unsettled(fed) == []
    assert len(fed.nodes[DAFENG].list_inbox()) == 5  # the inbox itself keeps them

    fed.start(DAFENG)  # what is settled stays settled
    assert unsettled(fed) == []


async def test_a_store_from_before_counts_every_accepted_packet_as_unsettled(
    federation: Federation,
) -> None:
    fed = federation
    ids = await send(fed, WUCHANG, DAFENG, "case-a", n=2)
    await drain(fed, WUCHANG)
    fed.nodes[DAFENG].settle_inbox(ids)
    conn = fed.stores[DAFENG].connection  # back to the schema of step 1
    undo_outbox_bodies(conn)
    conn.execute("DROP TABLE inbox_unsettled")
    conn.execute("UPDATE schema_versions SET version = 1 WHERE component = 'relay'")
    fed.start(DAFENG)  # migrates to step 2
    assert unsettled(fed, "case-a") == ids
    later = await send(fed, WUCHANG, DAFENG, "case-a")
    await drain(fed, WUCHANG)
    assert unsettled(fed, "case-a") == ids + later
