"""Check that a partner logged every packet we exchanged with it (``tongban audit verify``).

For partner P we take the latest checkpoint of P we cosigned (so P's signature and its
consistency with everything we cosigned before are already established) and, for every
packet P must have logged — the packets P sent us, and the packets we sent that P
accepted (:meth:`relay.audit.state.AuditState.exchanged_with`) — ask P for the
inclusion proof of its own leaf of that packet under that checkpoint's size. A packet
is *included* when P discloses a leaf that is P's ``packet-received`` (for ours) or
``packet-sent`` (for P's) leaf of exactly that packet id and digest, and the RFC 9162
inclusion proof of that leaf verifies under the cosigned root.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from relay.audit.checkpoint import NoteKey, open_checkpoint, origin_for
from relay.audit.errors import AuditError, ProofError
from relay.audit.leaves import LeafKind, PacketLeaf, decode_leaf
from relay.audit.merkle import TreeHash, verify_inclusion
from relay.audit.service import AuditPeer, LeafNotFound, PeerUnavailable, RangeRefused
from relay.audit.state import AuditState, PacketEntry

__all__ = ["PacketCheck", "PartnerReport", "Verdict", "verify_partner"]


class Verdict(StrEnum):
    INCLUDED = "included"
    MISSING = "missing"  # the partner has no leaf for it under the cosigned size
    BAD_PROOF = "bad-proof"  # a leaf or proof came back but does not verify
    UNAVAILABLE = "unavailable"  # the partner could not be asked


@dataclass(frozen=True)
class PacketCheck:
    entry: PacketEntry
    verdict: Verdict
    index: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class PartnerReport:
    partner: str
    size: int
    checks: tuple[PacketCheck, ...]

    @property
    def failures(self) -> tuple[PacketCheck, ...]:
        return tuple(c for c in self.checks if c.verdict is not Verdict.INCLUDED)


_EXPECTED = {
    LeafKind.PACKET_SENT: LeafKind.PACKET_RECEIVED,
    LeafKind.PACKET_RECEIVED: LeafKind.PACKET_SENT,
}


async def _check(
    entry: PacketEntry, partner: str, peer: AuditPeer, size: int, root: bytes, tree: TreeHash
) -> PacketCheck:
    try:
        index, proof, data = await peer.inclusion_of_packet(entry.digest, size)
    except (LeafNotFound, RangeRefused) as exc:
        return PacketCheck(entry, Verdict.MISSING, detail=str(exc))
    except PeerUnavailable as exc:
        return PacketCheck(entry, Verdict.UNAVAILABLE, detail=str(exc))
    if data is None:
        return PacketCheck(entry, Verdict.BAD_PROOF, index, "the partner withheld the leaf")
    try:
        leaf = decode_leaf(data)
        body = leaf.body
        if (
            leaf.node != partner
            or leaf.kind is not _EXPECTED[entry.kind]
            or not isinstance(body, PacketLeaf)
            or body.digest != entry.digest
            or body.id != entry.packet_id
        ):
            return PacketCheck(entry, Verdict.BAD_PROOF, index, "the leaf is not this packet's")
        verify_inclusion(tree.leaf(data), index, size, proof, root, tree_hash=tree)
    except ProofError as exc:
        return PacketCheck(entry, Verdict.BAD_PROOF, index, str(exc))
    except AuditError as exc:
        return PacketCheck(entry, Verdict.BAD_PROOF, index, f"malformed leaf: {exc}")
    return PacketCheck(entry, Verdict.INCLUDED, index)


async def verify_partner(
    state: AuditState, partner: str, peer: AuditPeer, origin_key: NoteKey
) -> PartnerReport:
    """Check every packet exchanged with ``partner`` against its latest cosigned log.

    Raises :class:`AuditError` when we hold no cosigned checkpoint of ``partner``.
    """
    held = state.partner(origin_for(partner)).cosigned
    if held is None:
        raise AuditError(f"no checkpoint of node {partner} has been cosigned yet")
    checkpoint = open_checkpoint(held, origin_key).checkpoint
    checks = [
        await _check(
            entry, partner, peer, checkpoint.size, checkpoint.root_hash, checkpoint.tree_hash
        )
        for entry in state.exchanged_with(partner)
    ]
    return PartnerReport(partner, checkpoint.size, tuple(checks))
