"""The sample packet facts the crypto baselines build (not a benchmark itself)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
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
