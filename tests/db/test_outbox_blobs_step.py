"""Step 5 of the relay schema (``outbox_blobs``): the packets queued before it name
their attachments' blobs after it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json

from dbkit import Database

from relay.core.sqlite_schema import MIGRATIONS
from relay.db.migrations import migrate, schema_version


def test_step_5_names_the_blobs_of_the_packets_written_before_it(database: Database) -> None:
    conn = database.connect()
    migrate(conn, "relay", MIGRATIONS[:4])
    summaries = {
        "two": {"attachments": [{"digest": "b1", "size": 1}, {"digest": "b2", "size": 2}]},
        "same": {"attachments": [{"digest": "b1", "size": 1}]},
        "none": {"attachments": []},
        "older": {},  # a summary from before attachments were listed
    }
    conn.execute("BEGIN")
    for packet, summary in summaries.items():
        conn.execute(
            "INSERT INTO outbox (packet_id, peer, case_id, seq, digest, summary, state,"
            " expires) VALUES (?, '320982', ?, 1, 'd', ?, 'delivered', 0)",
            (packet, packet, json.dumps(summary)),
        )
    conn.execute("COMMIT")
    migrate(conn, "relay", MIGRATIONS)
    assert schema_version(conn, "relay") == len(MIGRATIONS)
    rows = conn.execute("SELECT digest, packet_id FROM outbox_blobs").fetchall()
    assert sorted(tuple(r) for r in rows) == [("b1", "same"), ("b1", "two"), ("b2", "two")]
