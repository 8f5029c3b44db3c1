"""Building packets by hand (bypassing the sender's own checks) for refusal tests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from conftest import ACTION, AGREEMENT, MATTER, MODE, Federation

from relay.core.fields import format_time
from relay.core.packets import AttachmentKey, build_packet
from signing.nodedir import NodeKeys


def facts(
    fed: Federation, sender: str, to: str, *, seq: int = 1, prev: str | None = None, **over: Any
) -> dict[str, Any]:
    at = fed.clock()
    obj: dict[str, Any] = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "case": "case-forged",
        "from": sender,
        "to": to,
        "matter": MATTER,
        "action": ACTION,
        "mode": MODE,
        "agreement": {"id": AGREEMENT.id, "version": AGREEMENT.version, "digest": AGREEMENT.digest},
        "seq": seq,
        "prev": prev,
        "created": format_time(at),
        "expires": format_time(at + timedelta(days=1)),
        "attachments": [],
    }
    obj.update(over)
    return obj


def forge(
    fed: Federation,
    signer: NodeKeys,
    to: str,
    obj: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    keys: list[AttachmentKey] | None = None,
) -> str:
    recipient = fed.pki.keys[to].hpke_keys[0].public_key()
    token, _, _ = build_packet(
        obj, body or {"forged": True}, keys or [], signer=signer.seal, recipient=recipient,
        at=fed.clock(),
    )  # fmt: skip
    return token
