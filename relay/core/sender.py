"""The outbox executor: applies :mod:`relay.core.outbox` policy through the store and
the link. One pass = dead-letter what expired, then for every destination that is due
send up to ``batches_in_flight`` batches at once (uploading their attachment blobs
first) and apply the receipts. The running outbox serves each destination in a task of
its own (:meth:`Sender.start_pass`): a destination whose batch takes long, a large
attachment on a slow line, holds no other destination and no later pass. A batch holds,
per case, the head and the due packets after it in sequence (the receiver admits them in
order within the batch); a case is in one batch in flight only, so batches in flight
never race within a case.

**Pipelining.** The running outbox (``deliver_once(refill=True)``) keeps each of those
``batches_in_flight`` lanes busy: when a lane's batch comes back and its receipts are
applied, the lane takes the next due batch of cases no other lane holds and sends it,
while the other lanes' batches are still at the partner. Through a backlog the partner
always has a batch to verify while we apply the receipts of another (without it, each
pass waited for its slowest batch and the two nodes took turns). A pass ends after a
bounded number of refills, so a partner whose packets were queued meanwhile is not kept
waiting; no refill while the destination is being probed or after a failure.

Every read is of what is due (:meth:`RelayStore.due_rows`, ``expired_rows``,
``open_after``): a pass costs the same with ten or ten thousand packets queued.

Batches fit the partner's limits (``max_batch_size``, ``max_body_bytes``): those its
federation directory entry announces (:meth:`Sender.announce_limits`, from the start)
and, tighter where they are, those its 413 refusals state (learned, kept in memory).

Receipts are verified (signature by the destination's seal, our packet's digest and
id, addressed to us) before they change anything; a receipt that does not verify is
treated like no answer. Every verified receipt is kept with its packet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from relay.audit.leaves import Direction
from relay.core import blobs
from relay.core.errors import (
    MalformedPacket,
    PeerRefused,
    PeerUnavailable,
    PeerUnreachable,
    StoreError,
)
from relay.core.leaves import receipt_leaf
from relay.core.model import OutboxState
from relay.core.outbox import (
    BATCH_ENVELOPE_BYTES,
    PER_PACKET_BYTES,
    RETRYABLE_REASONS,
    OutboxPolicy,
    OutboxRow,
    PeerBackoff,
    Refusal,
    backoff_delay,
    classify_refusal,
)
from relay.core.ports import BundleSource, Clock, PeerLink
from relay.core.receipts import Receipt, ReceiptStatus, verify_receipt
from relay.core.store import OutboxUpdate, Outgoing, RelayStore
from relay.db.open import storage_errors
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["Sender"]

_EXPIRE_PER_PASS = 1000
"""Most expired packets dead-lettered in one pass (the next pass takes the rest)."""

_REFILLS_PER_LANE = 8
"""Batches a lane sends after its first in one pass of the running outbox: enough to
keep both nodes busy through a backlog, few enough that a pass (and so the first send
to a partner whose packets were queued meanwhile) ends within a few seconds."""

_LIMIT_NAMES = ("max_batch_size", "max_body_bytes")

_CALM_BATCHES = 64
"""Batches a partner takes without a 429 before it gets back one lane taken away."""

AGREEMENT_UNKNOWN_STANDS = timedelta(minutes=15)
"""A case refused as ``agreement-unknown`` counts for the staff alert this long after its
last refusal, or three times the policy's ``max_delay`` when that is longer (its
retries come at most ``max_delay`` apart)."""
_AGREEMENT_UNKNOWN_KEPT = 4096

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
        self._limits: dict[str, dict[str, int]] = {}  # learned from refusals
        self._announced: dict[str, dict[str, int]] = {}  # from directory entries
        self._failing_since: dict[str, datetime] = {}
        self._backing_off: set[str] | None = None  # partners with a backoff (lazily read)
        self._nudged: dict[str, datetime] = {}  # when partner_reachable last cut a backoff
        # cases whose blob upload found the partner away: its probe tries another case
        # first, as the blob, not the partner, may be what fails (kept until it answers)
        self._suspects: dict[str, set[str]] = {}
        self._serving: dict[str, asyncio.Task[int]] = {}  # start_pass's tasks, by partner
        # lanes a partner takes at once, learned from its 429s (fewer than the policy's),
        # and the batches it took since without one (a while of them gives a lane back)
        self._lanes: dict[str, int] = {}
        self._calm: dict[str, int] = {}
        self.failed_lanes: list[BaseException] = []  # their errors, for the outbox loop
        # cases a partner refused as "agreement-unknown" (it has not loaded the version),
        # by (partner, case): when last; an accepted packet of the case ends it
        self._agreement_unknown: dict[tuple[str, str], datetime] = {}

    async def deliver_once(self, *, refill: bool = False) -> int:
        """One pass, every due partner served before it returns. With ``refill`` a
        batch that comes back is followed at once by the next due batch of other cases,
        up to :data:`_REFILLS_PER_LANE` times, while the other batches are still out:
        the partner verifies one batch while we apply the receipts of another, instead
        of both sides waiting for the slowest batch of the pass."""
        at = self._clock()
        settled = self._expire(at)
        work, backoffs = self._work(at)
        # destinations are served concurrently: one slow partner does not hold up others
        sent = await asyncio.gather(
            *(
                self._serve(peer, batches, refill and not self._probing(peer, backoffs))
                for peer, batches in work.items()
            )
        )
        return settled + sum(sent)

    def start_pass(self, done: Callable[[], None]) -> int:
        """The running outbox's pass (see :meth:`deliver_once`, with refills): each due
        partner is served in a task of its own that this does not wait for, so a partner
        whose batch takes long (a large attachment on a slow link) holds neither the
        next pass nor any other partner. A partner still being served is left out of the
        pass (its expiries too, which its lane may be delivering) until its task ends;
        the end calls ``done``. Returns the packets dead-lettered by expiry."""
        at = self._clock()
        busy = frozenset(self._serving)
        settled = self._expire(at, skip=busy)
        work, backoffs = self._work(at, skip=busy)
        for peer, batches in work.items():
            refill = not self._probing(peer, backoffs)
            task = asyncio.create_task(self._serve(peer, batches, refill), name=f"outbox {peer}")
            self._serving[peer] = task
            task.add_done_callback(functools.partial(self._served, peer, done))
        return settled

    def _served(self, peer: str, done: Callable[[], None], task: asyncio.Task[int]) -> None:
        """A partner's task ended. A storage fault goes to the outbox loop (the pass is
        tried again after a while); anything else (a partner's answer no check foresaw,
        a fault of ours) is that partner's failure: logged and backed off, never the end
        of delivery to every partner."""
        self._serving.pop(peer, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            if isinstance(exc, storage_errors(StoreError)):
                self.failed_lanes.append(exc)
            else:
                _log.error("delivery to %s failed", peer, exc_info=exc)
                try:
                    self._peer_failed(peer, exc)
                except storage_errors(StoreError) as fault:
                    self.failed_lanes.append(fault)
        done()

    def serving(self, peer: str) -> bool:
        """Whether a task of :meth:`start_pass` serves ``peer`` now."""
        return peer in self._serving

    async def stop_serving(self) -> None:
        """Cancel the tasks of :meth:`start_pass` still running and wait for them (a
        batch cut off is as after a crash: in flight, sent again, deduplicated)."""
        tasks = list(self._serving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _work(
        self, at: datetime, skip: frozenset[str] = frozenset()
    ) -> tuple[dict[str, list[list[OutboxRow]]], Mapping[str, PeerBackoff]]:
        """The due batches of every partner not in ``skip`` whose backoff is over."""
        backoffs = self._store.peer_backoffs()
        work: dict[str, list[list[OutboxRow]]] = {}
        for peer in self._store.open_peers():
            if peer in skip:
                continue
            backoff = backoffs.get(peer)
            if backoff and backoff.next_attempt_at and backoff.next_attempt_at > at:
                continue
            # several batches at once, each case in one of them only: per-case order holds;
            # one packet as a probe while the destination is failing (see outbox "Probe")
            batches, size = (
                (1, 1)
                if self._probing(peer, backoffs)
                else (self._lanes_for(peer), self._policy.batch_size)
            )
            busy: set[str] = set()
            for _ in range(batches):
                rows = self._store.due_rows(peer, at, size, busy)
                if size == 1 and rows and rows[0].case_id in self._suspects.get(peer, ()):
                    rows = self._store.due_rows(peer, at, size, self._suspects[peer]) or rows
                if not rows:
                    break
                busy.update(r.case_id for r in rows)
                work.setdefault(peer, []).append(rows)
        return work, backoffs

    @staticmethod
    def _probing(peer: str, backoffs: Mapping[str, PeerBackoff]) -> bool:
        backoff = backoffs.get(peer)
        return backoff is not None and backoff.failures > 0

    def next_wakeup(self, at: datetime) -> datetime:
        """When the next pass has something to do (at the latest ``at + idle_poll``):
        the earliest due case head of a destination whose backoff elapsed, or the
        earliest expiry plus the grace. Indexed reads only."""
        wake = at + self._policy.idle_poll
        # a partner being served is left out: its expiries wait for its task, whose end
        # wakes the outbox (counted in, a past one would wake it at once, again and again)
        soonest = self._store.earliest_expiry(skip=frozenset(self._serving))
        if soonest is not None:
            wake = min(wake, soonest + self._policy.expiry_grace)
        backoffs = self._store.peer_backoffs()
        for peer in self._store.open_peers():
            if peer in self._serving:
                continue  # its task calls the outbox back when it ends
            has_open, due = self._store.head_due(peer)
            if not has_open:
                continue
            when = due or at
            backoff = backoffs.get(peer)
            if backoff and backoff.next_attempt_at:
                when = max(when, backoff.next_attempt_at)
            wake = min(wake, when)
        return max(wake, at)

    def _expire(self, at: datetime, skip: frozenset[str] = frozenset()) -> int:
        rows = self._store.expired_rows(at - self._policy.expiry_grace, _EXPIRE_PER_PASS)
        rows = [r for r in rows if r.peer not in skip]
        dead = {r.packet_id for r in rows}
        updates = [OutboxUpdate(r.packet_id, OutboxState.DEAD, reason="expired") for r in rows]
        for row in rows:
            for succ in self._store.open_after(row.peer, row.case_id, row.seq):
                if succ not in dead:
                    dead.add(succ)
                    updates.append(OutboxUpdate(succ, OutboxState.DEAD, reason="predecessor-dead"))
        if updates:
            self._store.update_outbox(updates)
            _log.warning("dead-lettered %d packets", len(updates))
        return len(updates)

    async def _serve(
        self, peer: str, batches: Sequence[Sequence[OutboxRow]], refill: bool = False
    ) -> int:
        """Send ``batches`` (disjoint cases) to ``peer`` concurrently, each in its own
        lane; with ``refill`` a lane whose batch came back sends the next due batch of
        cases no other lane holds (so a case is in one batch in flight only, and its
        next packets go once its batch is settled). One backoff step however many lanes
        found the partner unavailable; after a failure no lane sends again."""
        failures: list[Exception] = []
        busy = {r.case_id for rows in batches for r in rows}

        async def lane(rows: Sequence[OutboxRow]) -> int:
            settled = 0
            for turn in range(_REFILLS_PER_LANE + 1 if refill else 1):
                if turn:
                    at = self._clock()
                    rows = self._store.due_rows(peer, at, self._policy.batch_size, busy)
                    if not rows:
                        break
                    busy.update(r.case_id for r in rows)
                try:
                    settled += await self._send(peer, rows, failures)
                finally:
                    busy.difference_update(r.case_id for r in rows)
                if failures:
                    break
            return settled

        sent = await asyncio.gather(*(lane(rows) for rows in batches))
        if failures:
            self._peer_failed(peer, failures[0])
        return sum(sent)

    async def _send(self, peer: str, rows: Sequence[OutboxRow], failures: list[Exception]) -> int:
        outgoing: list[Outgoing] = []
        for row in rows:
            out = self._store.outgoing(row.packet_id)
            assert out is not None
            outgoing.append(out)
        parked: list[OutboxUpdate] = []
        waiting: list[OutboxUpdate] = []  # packets whose blob failed: each backs off alone
        try:
            ready = await self._upload_attachments(peer, outgoing, parked, waiting)
        except PeerUnavailable as exc:
            later = self._retrying(outgoing, parked + waiting, exc)
            self._store.update_outbox(parked + waiting + later)
            failures.append(exc)
            return len(parked)
        self._store.update_outbox(parked + waiting)
        settled = len(parked)
        gone = {u.packet_id for u in parked}  # dead-lettered during this send
        for chunk in self._fit(peer, ready):
            done = await self._deliver(peer, chunk, failures, gone)
            if done is None:
                break  # the partner is unavailable: the rest waits for the backoff
            settled += done
        return settled

    def set_policy(self, policy: OutboxPolicy) -> None:
        """Use ``policy`` from the next pass on."""
        self._policy = policy

    def announce_limits(self, limits: Mapping[str, Mapping[str, int]]) -> None:
        """Take the limits partners announce (node id -> ``max_batch_size`` and/or
        ``max_body_bytes``), replacing those announced before: a partner no longer
        listed keeps only what its refusals taught."""
        self._announced = {
            peer: {
                name: value
                for name in _LIMIT_NAMES
                if isinstance(value := stated.get(name), int) and value > 0
            }
            for peer, stated in limits.items()
        }

    def limits(self, peer: str) -> dict[str, int]:
        """The limits batches to ``peer`` are cut to: the tighter of announced and learned."""
        out = dict(self._announced.get(peer, {}))
        for name, value in self._limits.get(peer, {}).items():
            out[name] = min(value, out.get(name, value))
        return out

    def _fit(self, peer: str, outgoing: Sequence[Outgoing]) -> list[list[Outgoing]]:
        """Split ``outgoing`` into batches within the partner's :meth:`limits`."""
        limits = self.limits(peer)
        most = limits.get("max_batch_size", len(outgoing) or 1)
        room = limits.get("max_body_bytes")
        chunks: list[list[Outgoing]] = []
        size = 0
        for out in outgoing:
            cost = len(out.token) + PER_PACKET_BYTES
            if (
                not chunks
                or len(chunks[-1]) >= most
                or (room is not None and size + cost > room - BATCH_ENVELOPE_BYTES)
            ):
                chunks.append([])
                size = 0
            chunks[-1].append(out)
            size += cost
        return chunks

    async def _deliver(
        self,
        peer: str,
        outgoing: Sequence[Outgoing],
        failures: list[Exception],
        gone: set[str],
    ) -> int | None:
        """Send one batch and apply its receipts; ``None`` when the partner is
        unavailable (the failure appended to ``failures``). A refusal that is not
        "later" is split until it can be pinned on one packet, which is then parked.
        Packets in ``gone`` (dead-lettered behind a predecessor during this send) are
        left out; those this call dead-letters are added to it."""
        outgoing = [o for o in outgoing if o.item.summary.packet_id not in gone]
        if not outgoing:
            return 0
        try:
            self._store.update_outbox(
                [
                    OutboxUpdate(o.item.summary.packet_id, OutboxState.IN_FLIGHT, attempted=True)
                    for o in outgoing
                ]
            )
            receipts = await self._link.deliver(peer, [o.token for o in outgoing])
            if len(receipts) != len(outgoing):
                raise PeerUnavailable("the peer answered with the wrong number of receipts")
        except PeerRefused as exc:
            verdict = classify_refusal("batch", exc.status, exc.code)
            if exc.status == 429:  # too many of our requests at once: one lane fewer
                self._lanes[peer] = max(1, self._lanes_for(peer) - 1)
                self._calm[peer] = 0
            if verdict is Refusal.RETRY:
                door = exc.status in _AT_THE_DOOR
                self._store.update_outbox(
                    self._retrying(outgoing, [], exc, sent=True, refused_at_door=door)
                )
                failures.append(exc)
                return None
            self._learn(peer, exc)
            if len(outgoing) > 1:
                settled = 0
                half = len(outgoing) // 2
                for part in (outgoing[:half], outgoing[half:]):
                    done = await self._deliver(peer, part, failures, gone)
                    if done is None:
                        return None  # unavailable: what settled before is stored already
                    settled += done
                return settled
            [out] = outgoing
            why = "packet-too-large" if exc.status == 413 else _refusal_reason("refused", exc)
            parked = self._park(out, why)
            self._store.update_outbox(parked)
            gone.update(u.packet_id for u in parked)
            _log.warning("parked packet %s for %s: %s", out.item.summary.packet_id, peer, exc)
            return len(parked)
        except PeerUnreachable as exc:  # not sent: as it was (its attempt counted)
            self._store.update_outbox(
                [
                    OutboxUpdate(o.item.summary.packet_id, _unsent(o), None, "peer-unavailable")
                    for o in outgoing
                ]
            )
            failures.append(exc)
            return None
        except PeerUnavailable as exc:  # the partner may hold the batch: in flight
            self._store.update_outbox(self._retrying(outgoing, [], exc, sent=True))
            failures.append(exc)
            return None
        self._failing_since.pop(peer, None)
        self._suspects.pop(peer, None)
        self._took_a_batch(peer)
        if self._backing_off is not None:
            self._backing_off.discard(peer)
        if peer in self._store.peer_backoffs():
            self._store.set_peer_backoff(peer, PeerBackoff())  # reachable again
        at = self._clock()
        bundle = self._bundle()  # the one in force when the answer came, for all its receipts
        updates: list[OutboxUpdate] = []
        settled = 0
        for out, token in zip(outgoing, receipts, strict=True):
            s = out.item.summary
            receipt = self._check_receipt(token, out, peer, bundle, at)
            if s.packet_id in gone and (
                receipt is None or receipt.status is not ReceiptStatus.ACCEPTED
            ):
                continue  # already dead-lettered behind its refused predecessor
            if receipt is None:  # counts as no answer (§8.7): the partner may hold it
                retry = at + backoff_delay(self._policy, out.item.attempts + 1, self._rng.random())
                updates.append(
                    OutboxUpdate(s.packet_id, OutboxState.IN_FLIGHT, retry, "bad-receipt")
                )
                continue
            leaf = receipt_leaf(Direction.RECEIVED, receipt, token, node=self._me, at=at)
            if receipt.status is ReceiptStatus.ACCEPTED:
                updates.append(
                    OutboxUpdate(s.packet_id, OutboxState.DELIVERED, receipt=token, audit_leaf=leaf)
                )
                settled += 1
                if self._agreement_unknown:
                    self._agreement_unknown.pop((peer, s.case_id), None)
            elif receipt.reason in RETRYABLE_REASONS:
                if receipt.reason == "attachment-missing":  # whatever we noted: ask again
                    self._store.unmark_uploaded(peer, [a.digest for a in s.attachments])
                elif receipt.reason == "agreement-unknown":
                    self._note_agreement_unknown(peer, s.case_id, at)
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
                for succ in self._store.open_after(peer, s.case_id, s.seq):
                    if succ not in gone:
                        gone.add(succ)
                        updates.append(OutboxUpdate(succ, OutboxState.DEAD, reason=why))
                        settled += 1
        self._store.update_outbox(updates)
        return settled

    def _lanes_for(self, peer: str) -> int:
        """Batches sent to ``peer`` at once: the policy's, or fewer after its 429s."""
        return min(self._policy.batches_in_flight, self._lanes.get(peer, 1 << 30))

    def _took_a_batch(self, peer: str) -> None:
        """A lane taken away by a 429 comes back after :data:`_CALM_BATCHES` batches
        the partner took without one (its limit may have been raised, or its load gone)."""
        if peer not in self._lanes:
            return
        calm = self._calm.get(peer, 0) + 1
        if calm < _CALM_BATCHES:
            self._calm[peer] = calm
            return
        self._calm[peer] = 0
        self._lanes[peer] += 1
        if self._lanes[peer] >= self._policy.batches_in_flight:
            del self._lanes[peer], self._calm[peer]

    def _learn(self, peer: str, exc: PeerRefused) -> None:
        """Remember the limits a partner's refusal states (e.g. ``max_batch_size``)."""
        known = self._limits.setdefault(peer, {})
        for name in _LIMIT_NAMES:
            value = exc.limits.get(name)
            if isinstance(value, int) and value > 0:
                known[name] = value

    def _park(self, out: Outgoing, why: str) -> list[OutboxUpdate]:
        """Dead-letter ``out`` with reason ``why`` and its open case successors."""
        s = out.item.summary
        updates = [OutboxUpdate(s.packet_id, OutboxState.DEAD, reason=why)]
        updates += [
            OutboxUpdate(succ, OutboxState.DEAD, reason="predecessor-dead")
            for succ in self._store.open_after(s.receiver, s.case_id, s.seq)
        ]
        return updates

    def _retrying(
        self,
        outgoing: Sequence[Outgoing],
        parked: Sequence[OutboxUpdate],
        exc: Exception,
        *,
        sent: bool = False,
        refused_at_door: bool = False,
    ) -> list[OutboxUpdate]:
        """Record why the attempt failed on packets that stay open: ``in_flight`` when
        the batch was ``sent`` (the partner may hold it; attempt already counted),
        else ``queued`` with one more attempt. A batch ``refused_at_door`` (the partner
        answered before taking any packet: 401, 403, 429...) leaves each packet as it
        was: ``queued`` unless an earlier sending of it is unanswered (so a packet only
        ever refused expires as any queued one, never in flight for ever)."""
        gone = {u.packet_id for u in parked}
        why = _refusal_reason("http", exc) if isinstance(exc, PeerRefused) else "peer-unavailable"
        updates = []
        for o in outgoing:
            if o.item.summary.packet_id in gone:
                continue
            state = _unsent(o) if refused_at_door or not sent else OutboxState.IN_FLIGHT
            updates.append(
                OutboxUpdate(o.item.summary.packet_id, state, None, why, attempted=not sent)
            )
        return updates

    def _check_receipt(
        self, token: str, out: Outgoing, peer: str, bundle: TrustBundle, at: datetime
    ) -> Receipt | None:
        s = out.item.summary
        try:
            r = verify_receipt(token, bundle, at=at, expected_from=peer)
        except (SigningError, MalformedPacket) as exc:
            _log.warning("receipt from %s for %s does not verify: %s", peer, s.packet_id, exc)
            return None
        if r.packet_digest != s.digest or r.to != self._me or r.packet_id != s.packet_id:
            _log.warning("receipt from %s does not name packet %s", peer, s.packet_id)
            return None
        return r

    def _note_agreement_unknown(self, peer: str, case_id: str, at: datetime) -> None:
        self._agreement_unknown.pop((peer, case_id), None)
        self._agreement_unknown[(peer, case_id)] = at  # last: the oldest come first
        if len(self._agreement_unknown) > _AGREEMENT_UNKNOWN_KEPT:
            del self._agreement_unknown[next(iter(self._agreement_unknown))]

    def agreement_unknown(self, now: datetime) -> dict[str, tuple[int, datetime]]:
        """Partners that refused packets as ``agreement-unknown`` (they have not loaded
        the agreement version the packets name) in the last
        :data:`AGREEMENT_UNKNOWN_STANDS`: how many cases wait, and the latest refusal
        (kept in memory: after a restart the packets' retries bring it back)."""
        standing: dict[str, tuple[int, datetime]] = {}
        window = max(AGREEMENT_UNKNOWN_STANDS, 3 * self._policy.max_delay)
        for (peer, _), at in list(self._agreement_unknown.items()):
            if now - at > window:
                continue
            count, latest = standing.get(peer, (0, at))
            standing[peer] = (count + 1, max(latest, at))
        return standing

    def failing_since(self) -> dict[str, datetime]:
        """Partners whose every request failed (retry-later) since when, by node id
        (kept in memory: a restart starts the count again)."""
        return dict(self._failing_since)

    def partner_reachable(self, peer: str) -> bool:
        """``peer`` has just reached us (an authenticated request): if it is in backoff,
        make its next attempt due now — the failures are kept, so that attempt is the
        one-packet probe — and say so. A partner back from an outage is thus served at
        once instead of at the end of a backoff of up to ``max_delay``. At most once per
        ``base_delay`` per partner, so a partner we cannot reach although it reaches us
        is not probed at the rate of its requests. Reads the store only for a partner
        in backoff."""
        if self._backing_off is None:
            self._backing_off = set(self._store.peer_backoffs())
        if peer not in self._backing_off:
            return False
        now = self._clock()
        last = self._nudged.get(peer)
        if last is not None and now - last < self._policy.base_delay:
            return False
        backoff = self._store.peer_backoffs().get(peer)
        if backoff is None:
            self._backing_off.discard(peer)
            return False
        if backoff.next_attempt_at is None or backoff.next_attempt_at <= now:
            return False
        self._nudged[peer] = now
        self._store.set_peer_backoff(peer, PeerBackoff(backoff.failures, now))
        _log.info("partner %s reached us: retrying it now", peer)
        return True

    def _peer_failed(self, peer: str, exc: BaseException) -> None:
        self._failing_since.setdefault(peer, self._clock())
        if self._backing_off is not None:
            self._backing_off.add(peer)
        previous = self._store.peer_backoffs().get(peer, PeerBackoff())
        failures = previous.failures + 1
        delay = backoff_delay(self._policy, failures, self._rng.random())
        asked = exc.retry_after if isinstance(exc, PeerRefused) else None
        if asked is not None:  # the partner said when (429, 503): not before, within reason
            cap = self._policy.max_delay.total_seconds()  # bounded before a timedelta is
            delay = max(delay, timedelta(seconds=min(asked, cap)))  # made of 10**20 seconds
        self._store.set_peer_backoff(peer, PeerBackoff(failures, self._clock() + delay))
        _log.info("peer %s unavailable (%s); retry in %.1fs", peer, exc, delay.total_seconds())

    async def _upload_attachments(
        self,
        peer: str,
        outgoing: Sequence[Outgoing],
        parked: list[OutboxUpdate],
        waiting: list[OutboxUpdate],
    ) -> list[Outgoing]:
        """Upload the blobs of ``outgoing``; the packets whose blobs are all there are
        returned. A packet whose blob the partner refuses for good, or whose blob this
        node no longer holds whole, is parked (its updates appended to ``parked``). A
        packet whose upload failed otherwise backs off on its own (appended to
        ``waiting``), so that the next try of the partner, a one-packet probe, is
        another case's: one bad blob never holds the partner's other cases. When the
        failure says the partner itself is unavailable (no answer, 429, 502-504) it is
        raised, and the packets after it wait for the partner's backoff; otherwise the
        others go on."""
        ready: list[Outgoing] = []
        held: set[str] = set()  # cases whose packet waits: the later ones wait behind it
        for out in outgoing:
            pid = out.item.summary.packet_id
            if any(u.packet_id == pid for u in parked):
                continue  # parked behind its predecessor earlier in this batch
            if out.item.summary.case_id in held:
                continue
            try:
                for a in out.item.summary.attachments:
                    if self._store.uploaded(peer, a.digest):
                        continue
                    path = self._store.blob_path(a.digest)
                    if not _holds(path, a.size):
                        parked += self._park(out, "attachment-lost")
                        _log.error(
                            "parked packet %s: its attachment %s is missing or damaged here",
                            pid, path,
                        )  # fmt: skip
                        break
                    open_at = functools.partial(blobs.read_from, path)
                    await self._link.upload_attachment(peer, a.digest, a.size, open_at)
                    self._store.mark_uploaded(peer, a.digest)
                else:
                    ready.append(out)
            except PeerRefused as exc:
                if classify_refusal(exc.kind, exc.status, exc.code) is Refusal.PERMANENT:
                    parked += self._park(out, _refusal_reason("attachment", exc))
                    _log.warning("parked packet %s: %s refused its attachment: %s", pid, peer, exc)
                    continue
                waiting.append(self._waits(out, _refusal_reason("attachment", exc)))
                held.add(out.item.summary.case_id)
                if exc.status in _PARTNER_WIDE:
                    self._suspects.setdefault(peer, set()).add(out.item.summary.case_id)
                    raise
                _log.info("packet %s waits: %s answered about its attachment: %s", pid, peer, exc)
            except PeerUnavailable:
                waiting.append(self._waits(out, "peer-unavailable"))
                self._suspects.setdefault(peer, set()).add(out.item.summary.case_id)
                raise
        return ready

    def _waits(self, out: Outgoing, why: str) -> OutboxUpdate:
        """``out`` queued again after a backoff of its own (one attempt more)."""
        delay = backoff_delay(self._policy, out.item.attempts + 1, self._rng.random())
        return OutboxUpdate(
            out.item.summary.packet_id, OutboxState.QUEUED, self._clock() + delay, why,
            attempted=True,
        )  # fmt: skip


def _unsent(out: Outgoing) -> OutboxState:
    """The state of a packet this attempt did not deliver (nothing reached the partner,
    or it was refused before it took any): ``queued``, unless an earlier sending of it
    went unanswered; then the partner may hold it, and it stays in flight (taken for
    queued, it would expire and give its sequence number to the next packet)."""
    return OutboxState.IN_FLIGHT if out.item.state is OutboxState.IN_FLIGHT else OutboxState.QUEUED


_AT_THE_DOOR = frozenset({401, 403, 404, 405, 408, 425, 429})
"""Answers to a batch given before any packet of it was taken: authentication, the
partner relation, the request's pace (a 5xx may come after a commit: the partner may
hold the packets)."""

_PARTNER_WIDE = frozenset({429, 502, 503, 504})
"""Answers to a blob request that say the partner as a whole is busy or away."""


def _holds(path: Path, size: int) -> bool:
    """Whether this node holds the blob at ``path`` whole (its sealed size)."""
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _refusal_reason(prefix: str, exc: PeerRefused) -> str:
    """A stable reason for the outbox: ``<prefix>-<problem code>`` or ``<prefix>-<status>``."""
    return f"{prefix}-{exc.code}" if exc.code else f"{prefix}-{exc.status}"
