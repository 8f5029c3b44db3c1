"""The witnessing exchange's JSON messages (docs/protocol.md §7.5), both sides.

Server side (the origin answering a partner), reading its :class:`AuditStore`:
:func:`checkpoint_answer`, :func:`consistency_answer`, :func:`inclusion_answer` and
:func:`accept_cosigned` (``POST cosign``). Client side (the witness): the ``parse_*``
functions check an answer's shape and that it is the answer to the question asked, so
the witness core only ever sees well-formed values. The HTTP layer maps
:class:`~relay.audit.errors.LogStoreError` to the problem ``audit-range`` and
:class:`~relay.audit.errors.CheckpointError` to ``audit-cosignature``; nothing here
knows about HTTP.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from relay.audit.checkpoint import NoteKey, SignedCheckpoint, open_checkpoint
from relay.audit.errors import AuditError, CheckpointError
from relay.audit.leaves import (
    AgreementEventLeaf,
    AuditLeaf,
    PacketLeaf,
    ReceiptLeaf,
    SurveyReportLeaf,
    decode_leaf,
)
from relay.audit.merkle import HASH_SIZE
from relay.audit.store import AuditStore

__all__ = [
    "accept_cosigned",
    "checkpoint_answer",
    "consistency_answer",
    "inclusion_answer",
    "leaf_names",
    "parse_checkpoint_answer",
    "parse_consistency_answer",
    "parse_inclusion_answer",
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def leaf_names(leaf: AuditLeaf) -> frozenset[str]:
    """The node ids a leaf names (besides the logging node)."""
    body = leaf.body
    if isinstance(body, PacketLeaf | ReceiptLeaf):
        return frozenset({body.from_node, body.to_node})
    if isinstance(body, AgreementEventLeaf):
        return frozenset({body.party})
    if isinstance(body, SurveyReportLeaf):
        return frozenset({body.surveyor, body.requested_by})
    return frozenset()


def checkpoint_answer(note: bytes) -> dict[str, Any]:
    """``GET checkpoint``: ``{"checkpoint": note text}``."""
    return {"checkpoint": note.decode()}


def consistency_answer(store: AuditStore, old: int, new: int) -> dict[str, Any]:
    """``GET consistency?from=&to=``; :class:`LogStoreError` when out of range."""
    proof = store.consistency_proof(old, new)
    return {"from": old, "to": new, "proof": [_b64(h) for h in proof]}


def inclusion_answer(store: AuditStore, index: int, size: int, requester: str) -> dict[str, Any]:
    """``GET inclusion?index=&size=``; the leaf bytes only if the leaf names ``requester``."""
    proof = store.inclusion_proof(index, size)
    data = store.leaf(index)
    try:
        disclose = requester in leaf_names(decode_leaf(data))
    except AuditError:
        disclose = False
    return {
        "index": index,
        "size": size,
        "proof": [_b64(h) for h in proof],
        "leaf": _b64(data) if disclose else None,
    }


def accept_cosigned(note: bytes, *, own_key: NoteKey, witness_key: NoteKey) -> SignedCheckpoint:
    """``POST cosign``: our own checkpoint carrying a valid cosignature by the requester."""
    opened = open_checkpoint(note, own_key, [witness_key])
    if not opened.cosignatures:
        raise CheckpointError(f"no cosignature by {witness_key.name} on the checkpoint")
    return opened


def _field(obj: object, key: str) -> object:
    if not isinstance(obj, Mapping) or key not in obj:
        raise AuditError(f"answer has no {key!r}")
    return obj[key]


def _hashes(value: object) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 64:
        raise AuditError("proof must be a list of at most 64 hashes")
    out = []
    for item in value:
        try:
            raw = base64.b64decode(str(item), validate=True)
        except binascii.Error as exc:
            raise AuditError("proof hash is not base64") from exc
        if len(raw) != HASH_SIZE or not isinstance(item, str):
            raise AuditError("proof hash is not 32 bytes")
        out.append(raw)
    return out


def parse_checkpoint_answer(obj: object) -> bytes:
    note = _field(obj, "checkpoint")
    if not isinstance(note, str):
        raise AuditError("checkpoint must be the signed note text")
    return note.encode()


def parse_consistency_answer(obj: object, old: int, new: int) -> list[bytes]:
    """The proof, if ``obj`` answers exactly ``from=old&to=new``."""
    if _field(obj, "from") != old or _field(obj, "to") != new:
        raise AuditError("consistency answer is for other sizes")
    return _hashes(_field(obj, "proof"))


def parse_inclusion_answer(obj: object, index: int, size: int) -> tuple[list[bytes], bytes | None]:
    """(proof, leaf bytes or None), if ``obj`` answers exactly ``index=&size=``."""
    if _field(obj, "index") != index or _field(obj, "size") != size:
        raise AuditError("inclusion answer is for another position")
    leaf = _field(obj, "leaf")
    if leaf is not None and not isinstance(leaf, str):
        raise AuditError("leaf must be base64 or null")
    try:
        data = None if leaf is None else base64.b64decode(leaf, validate=True)
    except binascii.Error as exc:
        raise AuditError("leaf is not base64") from exc
    return _hashes(_field(obj, "proof")), data
