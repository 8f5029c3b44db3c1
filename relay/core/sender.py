"""The outbox executor: applies :mod:`relay.core.outbox` policy through the store and
the link. One pass = dead-letter what expired, then for every destination that is due
send one batch of case heads (uploading their attachment blobs first) and apply the
receipts.

Receipts are verified (signature by the destination's seal, our packet's digest and
id, addressed to us) before they change anything; a receipt that does not verify is
treated like no answer. Every verified receipt is kept with its packet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Sequence
from datetime import datetime

from relay.audit.leaves import Direction
from relay.core import blobs
from relay.core.errors import MalformedPacket, PeerUnavailable
from relay.core.leaves import receipt_leaf
from relay.core.model import OutboxState
from relay.core.outbox import (
    RETRYABLE_REASONS,
    Batch,
    OutboxPolicy,
    OutboxRow,
    PeerBackoff,
    backoff_delay,
    blocked_successors,
    due_batches,
    expired,
)
from relay.core.ports import BundleSource, Clock, PeerLink
from relay.core.receipts import Receipt, ReceiptStatus, verify_receipt
from relay.core.store import OutboxUpdate, Outgoing, RelayStore
from signing.errors import SigningError

__all__ = ["Sender"]

_log = logging.getLogger("tongban.relay")


class Sender:
    def __init__(
        self,
        *,
        me: str,
        bundle: BundleSource,
        store: RelayStore,
        link: PeerLink,
        clock: Clock,
        rng: random.Random,
        policy: OutboxPolicy,
    ) -> None:
        self._me = me
        self._bundle = bundle
        self._store = store
        self._link = link
        self._clock = clock
        self._rng = rng
        self._policy = policy

    async def deliver_once(self) -> int:
        at = self._clock()
        rows = self._store.open_rows()
        settled = self._expire(rows, at)
        if settled:
            rows = self._store.open_rows()
        batches = due_batches(rows, self._store.peer_backoffs(), self._policy, at)
        # destinations are served concurrently: one slow partner does not hold up others
        sent = await asyncio.gather(*(self._send(batch, rows) for batch in batches))
        return settled + sum(sent)

    def _expire(self, rows: Sequence[OutboxRow], at: datetime) -> int:
        dead = set(expired(rows, self._policy, at))
        updates = [OutboxUpdate(pid, OutboxState.DEAD, reason="expired") for pid in sorted(dead)]
        for row in rows:
            if row.packet_id in dead:
                for succ in blocked_successors(rows, row):
                    if succ not in dead:
                        dead.add(succ)
                        updates.append(
                            OutboxUpdate(succ, OutboxState.DEAD, reason="predecessor-dead")
                        )
        if updates:
            self._store.update_outbox(updates)
            _log.warning("dead-lettered %d packets", len(updates))
        return len(updates)

    async def _send(self, batch: Batch, rows: Sequence[OutboxRow]) -> int:
        outgoing: list[Outgoing] = []
        for pid in batch.packet_ids:
            out = self._store.outgoing(pid)
            assert out is not None
            outgoing.append(out)
        try:
            await self._upload_attachments(batch.peer, outgoing)
            self._store.update_outbox(
                [
                    OutboxUpdate(o.item.summary.packet_id, OutboxState.IN_FLIGHT, attempted=True)
                    for o in outgoing
                ]
            )
            receipts = await self._link.deliver(batch.peer, [o.token for o in outgoing])
            if len(receipts) != len(outgoing):
                raise PeerUnavailable("the peer answered with the wrong number of receipts")
        except PeerUnavailable as exc:
            self._peer_failed(batch.peer, exc)
            return 0
        if batch.peer in self._store.peer_backoffs():
            self._store.set_peer_backoff(batch.peer, PeerBackoff())  # reachable again
        at = self._clock()
        updates: list[OutboxUpdate] = []
        settled = 0
        by_id = {r.packet_id: r for r in rows}
        for out, token in zip(outgoing, receipts, strict=True):
            s = out.item.summary
            receipt = self._check_receipt(token, out, batch.peer)
            if receipt is None:
                retry = at + backoff_delay(self._policy, out.item.attempts + 1, self._rng.random())
                updates.append(OutboxUpdate(s.packet_id, OutboxState.QUEUED, retry, "bad-receipt"))
                continue
            leaf = receipt_leaf(Direction.RECEIVED, receipt, token, node=self._me, at=at)
            if receipt.status is ReceiptStatus.ACCEPTED:
                updates.append(
                    OutboxUpdate(s.packet_id, OutboxState.DELIVERED, receipt=token, audit_leaf=leaf)
                )
                settled += 1
            elif receipt.reason in RETRYABLE_REASONS:
                retry = at + backoff_delay(self._policy, out.item.attempts + 1, self._rng.random())
                updates.append(
                    OutboxUpdate(
                        s.packet_id,
                        OutboxState.QUEUED,
                        retry,
                        receipt.reason,
                        token,
                        audit_leaf=leaf,
                    )
                )
            else:
                # the receiver's "expired" makes a dead letter; any other reason a rejection
                final = OutboxState.DEAD if receipt.reason == "expired" else OutboxState.REJECTED
                updates.append(
                    OutboxUpdate(
                        s.packet_id,
                        final,
                        None,
                        receipt.reason,
                        token,
                        audit_leaf=leaf,
                    )
                )
                settled += 1
                why = "predecessor-dead" if final is OutboxState.DEAD else "predecessor-rejected"
                for succ in blocked_successors(rows, by_id[s.packet_id]):
                    updates.append(OutboxUpdate(succ, OutboxState.DEAD, reason=why))
                    settled += 1
        self._store.update_outbox(updates)
        return settled

    def _check_receipt(self, token: str, out: Outgoing, peer: str) -> Receipt | None:
        s = out.item.summary
        try:
            r = verify_receipt(token, self._bundle(), at=self._clock(), expected_from=peer)
        except (SigningError, MalformedPacket) as exc:
            _log.warning("receipt from %s for %s does not verify: %s", peer, s.packet_id, exc)
            return None
        if r.packet_digest != s.digest or r.to != self._me or r.packet_id != s.packet_id:
            _log.warning("receipt from %s does not name packet %s", peer, s.packet_id)
            return None
        return r

    def _peer_failed(self, peer: str, exc: Exception) -> None:
        previous = self._store.peer_backoffs().get(peer, PeerBackoff())
        failures = previous.failures + 1
        delay = backoff_delay(self._policy, failures, self._rng.random())
        self._store.set_peer_backoff(peer, PeerBackoff(failures, self._clock() + delay))
        _log.info("peer %s unavailable (%s); retry in %.1fs", peer, exc, delay.total_seconds())

    async def _upload_attachments(self, peer: str, outgoing: Sequence[Outgoing]) -> None:
        for out in outgoing:
            for a in out.item.summary.attachments:
                if self._store.uploaded(peer, a.digest):
                    continue
                open_at = functools.partial(blobs.read_from, self._store.blob_path(a.digest))
                await self._link.upload_attachment(peer, a.digest, a.size, open_at)
                self._store.mark_uploaded(peer, a.digest)
