"""The received survey report's leaf (``relay.http.survey_cases``) is appended once per
packet on both backends: a second collection of the same packet (after a stop between
the leaf and the copy's folder) appends nothing, and another packet appends its own."""

from __future__ import annotations

from dbkit import Database

from relay.audit.store import AuditStore
from relay.db.components import migrate_all
from relay.http.survey_cases import _append_leaf_once, _received_key


def test_a_received_reports_leaf_is_appended_once_per_packet(database: Database) -> None:
    migrate_all(database.connect())
    once = _received_key("pkt-1")
    assert _append_leaf_once(database.connect, once, b"leaf of pkt-1")
    assert not _append_leaf_once(database.connect, once, b"leaf of pkt-1, collected again")
    assert _append_leaf_once(database.connect, _received_key("pkt-2"), b"leaf of pkt-2")
    log = AuditStore(database.connect())
    assert log.size() == 2
    assert [log.leaf(0), log.leaf(1)] == [b"leaf of pkt-1", b"leaf of pkt-2"]
