"""The witnessing state (our checkpoints, partners' cosignatures, the partners we
witness, fork alerts) shared by two workers, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dbkit import Database

from relay.audit.state import AuditState
from relay.audit.witness import ForkEvidence, ForkReason, PartnerState, PartnerStatus

AT = datetime.now(UTC)
ORIGIN = "tongban.node/320982"


def test_two_workers_share_one_witnessing_state(database: Database, tmp_path: Path) -> None:
    def worker() -> AuditState:  # its own connection to the node's tables
        return AuditState(database.connect() if database.postgresql else tmp_path / "relay.sqlite3")

    one, two = worker(), worker()
    try:
        one.put_checkpoint(5, b"signed first", AT)
        two.put_checkpoint(5, b"signed second", AT)  # the same size: the first note stays
        two.put_checkpoint(9, b"nine", AT)
        assert one.checkpoint(5) == two.checkpoint(5) == b"signed first"
        assert one.latest_checkpoint() == b"nine"
        assert one.checkpoint_covering(6) == b"nine"

        one.put_cosignature(9, ORIGIN, b"cosigned once", AT)
        two.put_cosignature(9, ORIGIN, b"cosigned again", AT)  # latest wins
        assert one.cosignatures(9) == {ORIGIN: b"cosigned again"}
        assert two.latest_cosigned_size(ORIGIN) == 9
        assert one.last_cosignature_at() is not None

        one.put_partner(PartnerState(ORIGIN))
        two.put_partner(PartnerState(ORIGIN, cosigned=b"their note"))
        assert one.partner(ORIGIN).cosigned == b"their note"

        evidence = ForkEvidence(ORIGIN, ForkReason.SAME_SIZE_DIFFERENT_ROOT, b"a", b"b")
        halted = PartnerState(ORIGIN, PartnerStatus.HALTED, b"their note", evidence)
        first = one.halt_partner(halted, "two roots for one size", AT)
        second = two.halt_partner(halted, "seen again", AT)
        assert second.id > first.id
        assert [a.detail for a in one.alerts()] == ["two roots for one size", "seen again"]
        assert two.partner(ORIGIN).status is PartnerStatus.HALTED
    finally:
        one.close()
        two.close()
