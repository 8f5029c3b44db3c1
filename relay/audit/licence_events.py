"""The ``licence-event`` leaf of a licence issued or changed in status (pure).

``id`` is the licence number (the credential's ``jti``), ``credential_digest`` the
lowercase hex SHA-256 of the licence token's ASCII bytes, ``status_index`` the
licence's index in its issuer's revocation status list (else its first status entry's
index, else ``null``), ``case`` the case the licence was issued in when known.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from relay.audit.leaves import AuditLeaf, LeafKind, LicenceEvent, LicenceEventLeaf, encode_leaf
from signing.licence import parse_licence
from signing.status_list import StatusPurpose

__all__ = ["licence_leaf"]


def licence_leaf(
    token: str, event: LicenceEvent, *, node_id: str, case_id: str | None, at: datetime
) -> bytes:
    """The leaf bytes; raises :class:`signing.errors.MalformedInput` for a bad token."""
    licence = parse_licence(token)
    entries = sorted(licence.status, key=lambda e: e.purpose is not StatusPurpose.REVOCATION)
    body = LicenceEventLeaf(
        id=licence.number,
        case=case_id,
        event=event.value,
        credential_digest=hashlib.sha256(token.encode("ascii")).hexdigest(),
        status_index=entries[0].index if entries else None,
    )
    return encode_leaf(AuditLeaf(LeafKind.LICENCE_EVENT, node_id, int(at.timestamp()), body))
