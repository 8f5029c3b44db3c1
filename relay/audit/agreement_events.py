"""The ``agreement-event`` leaves a node owes for the agreement files it loads (pure).

Every verified party signature (event ``sign``) and every lifecycle event that the
agreement's replay applied (``activate``, ``suspend``, ...) is one leaf. Each is keyed
by its ``event_digest``: lowercase hex SHA-256 of the signature's detached compact JWS
or of the event's compact JWS (ASCII bytes). The node appends the leaves it has not
logged before (:meth:`relay.core.sqlite_store.SqliteStore.audit_append_once`), so a
restart or reload adds nothing twice while a newly added signature or event is logged
the next time the files are loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from agreements.errors import AgreementError
from agreements.events import document_digest
from agreements.signatures import verify_event
from agreements.signed import Evaluation, SignedAgreement
from relay.audit.leaves import AgreementEventLeaf, AuditLeaf, LeafKind, encode_leaf
from signing.certificates import TrustBundle

__all__ = ["SIGN_EVENT", "agreement_event_leaves"]

SIGN_EVENT = "sign"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def agreement_event_leaves(
    loaded: Iterable[tuple[SignedAgreement, Evaluation]],
    bundle: TrustBundle,
    *,
    node_id: str,
    at: datetime,
) -> list[tuple[str, bytes]]:
    """``(event_digest, leaf bytes)`` for every signature and applied event, file order."""
    out: list[tuple[str, bytes]] = []
    for signed, evaluation in loaded:
        agreement = signed.agreement
        facts = (agreement.id, agreement.version, document_digest(agreement), node_id, at)
        for sig in signed.signatures:
            if sig.party in evaluation.status.signed:
                out.append(_leaf(facts, SIGN_EVENT, sig.party, _digest(sig.jws)))
        applied = set(evaluation.events)
        for token in signed.events:
            try:
                event = verify_event(token, agreement, bundle)
            except AgreementError:
                continue
            if event in applied:
                out.append(_leaf(facts, event.kind.value, event.party, _digest(token)))
    return out


def _leaf(
    facts: tuple[str, int, str, str, datetime], event: str, party: str, digest: str
) -> tuple[str, bytes]:
    agreement_id, version, doc, node_id, at = facts
    body = AgreementEventLeaf(
        id=agreement_id, version=version, document_sha256=doc, event=event, party=party,
        event_digest=digest,
    )  # fmt: skip
    leaf = AuditLeaf(LeafKind.AGREEMENT_EVENT, node_id, int(at.timestamp()), body)
    return digest, encode_leaf(leaf)
