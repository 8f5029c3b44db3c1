"""Offline proof bundles: show one leaf to anyone who holds the trust bundle.

A bundle is a JSON object (all binary values standard base64, like ``x5c``)::

    {"format": "tongban-audit-proof/1",
     "leaf": b64(leaf bytes), "index": 17, "size": 20,
     "inclusion": [b64(hash), ...],               # RFC 9162 PATH(index, D[0:size])
     "checkpoint": "<signed note text>",          # origin tongban.node/<id>, size, root
     "seal_chain": [b64(DER), ...],               # the origin's seal certificate, leaf first
     "cosigners": [[b64(DER), ...], ...]}         # optional: witnesses' seal chains

:func:`verify_bundle` validates the seal chain for purpose SEAL and the node id named by
the checkpoint origin (:func:`signing.certificates.validate_path`), verifies the
checkpoint's note signature with that certificate's key (Ed25519, or SM2 for an
SM-profile node whose log hashes with SM3), checks ``size`` equals the checkpoint size
and the inclusion proof of ``leaf`` at ``index`` under its root with the log's hash,
and reports which listed cosigners (validated the same way) cosigned the checkpoint.
Every failure is one :class:`~relay.audit.errors.BundleError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from relay.audit.checkpoint import (
    Checkpoint,
    KeyType,
    NoteKey,
    node_id_of_origin,
    open_checkpoint,
    origin_for,
)
from relay.audit.errors import AuditError, BundleError
from relay.audit.merkle import verify_inclusion
from relay.audit.store import AuditStore
from signing.certificates import Identity, Purpose, TrustBundle, validate_path
from signing.errors import SigningError

__all__ = ["BUNDLE_FORMAT", "VerifiedBundle", "build_bundle", "bundle_from_store", "verify_bundle"]

BUNDLE_FORMAT = "tongban-audit-proof/1"
_KEYS = {"format", "leaf", "index", "size", "inclusion", "checkpoint", "seal_chain", "cosigners"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(cert: x509.Certificate) -> str:
    return _b64(cert.public_bytes(Encoding.DER))


def build_bundle(
    leaf: bytes,
    index: int,
    inclusion: Sequence[bytes],
    checkpoint_note: bytes,
    seal_chain: Sequence[x509.Certificate],
    cosigner_chains: Sequence[Sequence[x509.Certificate]] = (),
) -> dict[str, Any]:
    """Assemble a bundle (no verification: see :func:`verify_bundle`)."""
    size = Checkpoint.parse(checkpoint_note[: checkpoint_note.rfind(b"\n\n") + 1]).size
    return {
        "format": BUNDLE_FORMAT,
        "leaf": _b64(leaf),
        "index": index,
        "size": size,
        "inclusion": [_b64(h) for h in inclusion],
        "checkpoint": checkpoint_note.decode(),
        "seal_chain": [_der(c) for c in seal_chain],
        "cosigners": [[_der(c) for c in chain] for chain in cosigner_chains],
    }


def bundle_from_store(
    store: AuditStore,
    index: int,
    checkpoint_note: bytes,
    seal_chain: Sequence[x509.Certificate],
    cosigner_chains: Sequence[Sequence[x509.Certificate]] = (),
) -> dict[str, Any]:
    """A bundle for leaf ``index`` under a checkpoint this node signed from ``store``."""
    size = Checkpoint.parse(checkpoint_note[: checkpoint_note.rfind(b"\n\n") + 1]).size
    return build_bundle(
        store.leaf(index),
        index,
        store.inclusion_proof(index, size),
        checkpoint_note,
        seal_chain,
        cosigner_chains,
    )


@dataclass(frozen=True)
class VerifiedBundle:
    leaf: bytes
    index: int
    checkpoint: Checkpoint
    signer: Identity  # the origin node's seal certificate identity
    cosigned_by: tuple[str, ...]  # node ids of listed cosigners whose cosignature verified


def _decode_b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise BundleError(f"{what} is not base64") from exc


def _chain(value: object, what: str) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(f"{what} must be a non-empty list of certificates")
    try:
        return tuple(x509.load_der_x509_certificate(_decode_b64(v, what)) for v in value)
    except ValueError as exc:
        raise BundleError(f"{what} holds an unparsable certificate") from exc


def _index(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"{key} must be a non-negative integer")
    return value


def verify_bundle(
    bundle: Mapping[str, Any] | bytes, trust: TrustBundle, *, at: datetime
) -> VerifiedBundle:
    """Verify a proof bundle offline with only ``trust``, certificates checked at ``at``."""
    obj = bundle
    if isinstance(bundle, bytes):
        try:
            obj = json.loads(bundle)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError("proof bundle is not JSON") from exc
    if not isinstance(obj, Mapping) or obj.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    if not set(obj) <= _KEYS or not (_KEYS - {"cosigners"}) <= set(obj):
        raise BundleError("proof bundle has missing or unknown keys")
    leaf = _decode_b64(obj["leaf"], "leaf")
    index, size = _index(obj, "index"), _index(obj, "size")
    inclusion = obj["inclusion"]
    if not isinstance(inclusion, list):
        raise BundleError("inclusion must be a list")
    proof = [_decode_b64(h, "inclusion proof") for h in inclusion]
    note = obj["checkpoint"]
    if not isinstance(note, str):
        raise BundleError("checkpoint must be the signed note text")
    seal_chain = _chain(obj["seal_chain"], "seal_chain")
    cosigner_chains = obj.get("cosigners", [])
    if not isinstance(cosigner_chains, list):
        raise BundleError("cosigners must be a list of certificate chains")
    try:
        text = note.encode()
        checkpoint = Checkpoint.parse(text[: text.rfind(b"\n\n") + 1])
        node_id = node_id_of_origin(checkpoint.origin)
        signer = validate_path(seal_chain, trust, purpose=Purpose.SEAL, at=at, node_id=node_id)
        origin_key = NoteKey.from_certificate(checkpoint.origin, signer.certificate)
        cosigners: dict[str, NoteKey] = {}
        for chain in cosigner_chains:
            witness = validate_path(_chain(chain, "cosigners"), trust, purpose=Purpose.SEAL, at=at)
            key = NoteKey.from_certificate(
                origin_for(witness.node_id), witness.certificate, KeyType.COSIGNATURE_V1
            )
            cosigners[witness.node_id] = key
        opened = open_checkpoint(text, origin_key, list(cosigners.values()))
        if opened.checkpoint.size != size:
            raise BundleError("bundle size is not the checkpoint's size")
        tree = opened.checkpoint.tree_hash  # the origin key's (open_checkpoint checks)
        verify_inclusion(
            tree.leaf(leaf), index, size, proof, opened.checkpoint.root_hash, tree_hash=tree
        )
    except (AuditError, SigningError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"proof bundle rejected: {exc}") from exc
    return VerifiedBundle(
        leaf=leaf,
        index=index,
        checkpoint=opened.checkpoint,
        signer=signer,
        cosigned_by=tuple(node_id_of_origin(c.key.name) for c in opened.cosignatures),
    )
