"""What several benchmarks share (not a benchmark itself): the sample packet facts the
crypto baselines build, and two in-process relay nodes on real SQLite files."""

from __future__ import annotations

import random
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def sample_facts(i: int, at: datetime, sender: str, recipient: str) -> dict[str, Any]:
    """The outer facts of packet ``i`` (a case of its own, first of its case) from
    ``sender`` to ``recipient``, created at ``at`` and valid for a day."""
    from relay.core.fields import format_time

    return {
        "v": 1, "id": str(uuid.uuid4()), "case": f"case-{i}", "from": sender, "to": recipient,
        "matter": "food-business-licence", "action": "submit", "mode": "proxy_receipt",
        "agreement": {"id": "x", "version": 1, "digest": "a" * 64}, "seq": 1,
        "prev": None, "created": format_time(at),
        "expires": format_time(at + timedelta(days=1)), "attachments": [],
    }  # fmt: skip


def two_node_federation(base: Path) -> Any:
    """The test kit's in-process federation (tests/relay_core) under ``base``: fake
    clock and agreement, a fake network with a fixed seed, batches of 64; the caller
    starts the nodes it needs and closes it."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "relay_core"))
    from relay_core_support import (
        FakeAgreement,
        FakeClock,
        Federation,
        make_pki,
    )

    from relay.core.fakes import FakeNetwork
    from relay.core.outbox import OutboxPolicy

    return Federation(
        pki=make_pki(base / "pki"), root=base, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)), policy=OutboxPolicy(batch_size=64),
    )  # fmt: skip
