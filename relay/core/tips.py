"""Where each case's chain of sent packets ends, as this process last saw it.

A packet's outer JWS signs its ``seq`` and ``prev`` (the digest of the case's previous
packet towards the same node, protocol.md *Per-case order*), which the store allocates
in the transaction that queues it (:meth:`relay.core.store.RelayStore.enqueue_many`).
Signing there puts the signature in the one serial section of creation: one group
commits at a time. :class:`CaseTips` lets :meth:`relay.core.service.RelayNode.create_packet`
guess the allocation beforehand, so that the outer JWS is signed with the content (in
the crypto helper under load), and the transaction only checks the guess: a packet
built for another ``(seq, prev)`` than the one allocated is built again there, as it
always was. A wrong guess costs time, never order: the store stays the only judge.

A guess is the tip this process last allocated in the case (its digest once that
packet is signed), else the tip the store holds (:meth:`RelayStore.last_sent`, read on
a miss). While the last allocation's packet is not signed yet, there is no guess (the
next packet's ``prev`` is unknown) and the packet is built in the transaction. Each
packet's outcome settles its own allocation: committed, the tip becomes what the store
allocated it; failed, the tip goes back to the one before. Only the latest
allocation of a case is kept, and at most :data:`KEPT` cases (least recently used
first out): the memory is bounded, whatever the history.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KEPT", "CaseTips", "Guess"]

KEPT = 8192
"""Cases whose tip is kept (a miss costs one indexed read of the store)."""

Key = tuple[str, str]
"""(destination node id, case id)."""


@dataclass(frozen=True)
class Guess:
    """The allocation guessed for one new packet."""

    seq: int
    prev: str | None


@dataclass
class _Tip:
    seq: int
    digest: str | None  # None: its packet is not signed yet
    packet_id: str | None  # the packet this process allocated it to; None: read
    before: _Tip | None = None  # the tip it replaced (without its own), if it failed


class CaseTips:
    """Guesses of each case's next ``(seq, prev)``, settled by what the store did."""

    def __init__(self, read: Callable[[str, str], tuple[int, str | None]], *, kept: int = KEPT):
        """``read(peer, case_id)``: the store's last ``(seq, digest)`` of the case
        towards ``peer``, ``(0, None)`` when it has none."""
        self._read = read
        self._kept = kept
        self._tips: OrderedDict[Key, _Tip] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tips)

    def claim(self, key: Key, packet_id: str) -> Guess | None:
        """The guess for ``packet_id``, the next packet of ``key``, now allocated to it;
        None while the case's last allocated packet is not signed yet."""
        tip = self._tips.get(key)
        if tip is None:
            seq, digest = self._read(*key)
            tip = _Tip(seq, digest, None)
        elif tip.digest is None:
            return None
        guess = Guess(tip.seq + 1, tip.digest)
        self._keep(key, _Tip(guess.seq, None, packet_id, _Tip(tip.seq, tip.digest, tip.packet_id)))
        return guess

    def signed(self, key: Key, packet_id: str, digest: str) -> None:
        """``packet_id``, built for its guess, has ``digest``: the next guess chains to it."""
        tip = self._tips.get(key)
        if tip is not None and tip.packet_id == packet_id:
            tip.digest = digest

    def committed(self, key: Key, packet_id: str, seq: int, digest: str) -> None:
        """The store queued ``packet_id`` as ``seq`` with ``digest``: when it holds the
        case's last allocation, that is the tip (a wrong guess is corrected here)."""
        tip = self._tips.get(key)
        if tip is not None and tip.packet_id == packet_id:
            tip.seq, tip.digest, tip.before = seq, digest, None

    def failed(self, key: Key, packet_id: str) -> None:
        """``packet_id`` was not queued (or its creator went away before it knew): when
        it holds the case's last allocation, the tip is the one before it again (unknown
        when there was none: the store is read at the next claim)."""
        tip = self._tips.get(key)
        if tip is not None and tip.packet_id == packet_id:
            if tip.before is None:
                del self._tips[key]
            else:
                self._tips[key] = tip.before

    def _keep(self, key: Key, tip: _Tip) -> None:
        self._tips[key] = tip
        self._tips.move_to_end(key)
        while len(self._tips) > self._kept:
            self._tips.popitem(last=False)
