"""Partner directory: verified node descriptors by node id, with key rotation.

A descriptor is accepted only after :func:`signing.descriptor.verify_descriptor`
checked its seal signature and certificate paths against the trust bundle. A node may
hold several descriptors at once: when a newer one (later ``issued_at``) arrives, the
older ones stay usable until ``newer.issued_at + overlap`` so packets sealed to the old
HPKE keys, or already queued, still open at the partner. Senders seal to the newest
descriptor's preferred key: the partner's key type decides — an SM-profile partner
offers an ``sm2-sm4gcm`` key and gets SM2 + SM4-GCM; a default partner gets the
post-quantum hybrid when offered, else X25519. The same newest descriptor names the
partner's cryptographic profile (:meth:`Directory.profile`, from its seal certificate)
that agreements may restrict.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

from relay.core.errors import UnknownNode
from signing.certificates import TrustBundle
from signing.descriptor import NodeDescriptor, verify_descriptor
from signing.hpke import HpkePublicKey, HpkeSuite
from signing.profiles import Profile

__all__ = ["DEFAULT_OVERLAP", "Directory"]

DEFAULT_OVERLAP = timedelta(days=14)
_SUITE_PREFERENCE = (HpkeSuite.SM2_SM4GCM, HpkeSuite.MLKEM768_X25519, HpkeSuite.X25519)


class Directory:
    """Verified descriptors of partner nodes (and of this node itself)."""

    def __init__(self, bundle: TrustBundle, *, overlap: timedelta = DEFAULT_OVERLAP) -> None:
        self._bundle = bundle
        self._overlap = overlap
        self._by_node: dict[str, list[NodeDescriptor]] = {}

    def add(self, data: bytes, *, at: datetime) -> NodeDescriptor:
        """Verify ``node.json`` bytes at time ``at`` and add the descriptor.

        Raises ``signing.errors.InvalidSignature`` / ``CertificateRejected`` as
        :func:`signing.descriptor.verify_descriptor` does; nothing is added then.
        """
        descriptor = verify_descriptor(data, self._bundle, at=at)
        self._insert(descriptor)
        return descriptor

    def add_verified(self, descriptor: NodeDescriptor) -> None:
        """Add a descriptor already verified elsewhere (e.g. this node's own, loaded
        with its keys)."""
        self._insert(descriptor)

    def add_all(self, items: Iterable[bytes], *, at: datetime) -> None:
        for data in items:
            self.add(data, at=at)

    def _insert(self, descriptor: NodeDescriptor) -> None:
        held = self._by_node.setdefault(descriptor.node_id, [])
        if any(d.issued_at == descriptor.issued_at for d in held):
            return
        held.append(descriptor)
        held.sort(key=lambda d: d.issued_at)

    def knows(self, node_id: str) -> bool:
        return node_id in self._by_node

    def node_ids(self) -> list[str]:
        return sorted(self._by_node)

    def current(self, node_id: str) -> NodeDescriptor:
        """The newest descriptor of ``node_id``; raises :class:`UnknownNode`."""
        held = self._by_node.get(node_id)
        if not held:
            raise UnknownNode(node_id)
        return held[-1]

    def valid(self, node_id: str, *, at: datetime) -> tuple[NodeDescriptor, ...]:
        """Descriptors usable at ``at``: the newest, plus older ones inside the overlap."""
        held = self._by_node.get(node_id)
        if not held:
            raise UnknownNode(node_id)
        usable = [held[-1]]
        for older, newer in itertools.pairwise(held):
            if at < newer.issued_at + self._overlap:
                usable.append(older)
        return tuple(usable)

    def sealing_key(self, node_id: str) -> HpkePublicKey:
        """The HPKE public key to seal new packets to ``node_id`` with."""
        descriptor = self.current(node_id)
        for suite in _SUITE_PREFERENCE:
            keys = descriptor.keys_for(suite)
            if keys:
                return keys[0]
        return descriptor.hpke_keys[0]

    def profile(self, node_id: str) -> Profile:
        """The cryptographic profile of ``node_id``: that of its newest descriptor's seal
        certificate (an SM2 seal is the SM profile, whose descriptor offers the
        ``sm2-sm4gcm`` key :meth:`sealing_key` picks). Raises :class:`UnknownNode`."""
        return self.current(node_id).profile

    def hpke_keys(self, node_id: str, *, at: datetime) -> tuple[HpkePublicKey, ...]:
        """Every HPKE public key of ``node_id`` valid at ``at`` (for checking a kid)."""
        return tuple(k for d in self.valid(node_id, at=at) for k in d.hpke_keys)
