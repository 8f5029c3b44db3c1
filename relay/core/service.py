"""``RelayNode``: the relay core composed — packets, outbox, inbox, receipts, attachments.

The HTTP shell (``relay.http``) only decodes requests, calls these methods and encodes
results; nothing here knows about HTTP. Every method that returns an acknowledgement
returns it only after the store committed what it acknowledges; packets created in the
same event-loop turn, or while the previous group commits, share one commit
(:mod:`relay.core.group_commit`; on SQLite in a worker thread, off the event loop).

Federation side (called with the mTLS-authenticated peer id):
    ``receive_batch``, ``blob_offset``, ``write_blob``, ``open_blob``.
Staff side:
    ``create_packet``, ``resend`` (a dead letter), ``list_outbox``, ``list_inbox``,
    ``read_packet``,
    ``attachment_offset``, ``write_attachment``, ``open_attachment``.
Background:
    ``run_outbox`` (or ``deliver_once`` step by step in tests).
Application above (the case layer):
    ``unsettled_inbox``, ``settle_inbox`` (accepted packets it has not recorded yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from typing import Any

from relay.core import ids
from relay.core.attachments import AttachmentVault, info_of, key_by_kid
from relay.core.directory import Directory
from relay.core.errors import (
    MalformedPacket,
    NotAuthorized,
    NotFound,
    PacketTooLarge,
    StoreError,
)
from relay.core.fields import format_time
from relay.core.group_commit import GroupCommit
from relay.core.helper import CryptoHelper
from relay.core.helper_worker import sign_outer
from relay.core.inbox import Inbox, summary_of
from relay.core.model import (
    AttachmentInfo,
    InboxItem,
    OutboxItem,
    OutboxState,
    PacketContent,
    PacketSummary,
)
from relay.core.outbox import OutboxPolicy, OutboxRow
from relay.core.packets import (
    AttachmentKey,
    AttachmentRef,
    RoutingFacts,
    check_new_packet,
    key_ring,
    open_content,
    seal_content,
    seal_own_copy,
    verify_packet,
)
from relay.core.ports import (
    AuthorizationRequest,
    Authorizer,
    BundleSource,
    Clock,
    ContentCheck,
    PeerLink,
    ReceivedBatch,
)
from relay.core.receiver import standard_pipeline
from relay.core.sender import Sender
from relay.core.store import NewOutgoing, RelayStore
from relay.db.open import storage_errors
from signing.at_rest import AtRest, open_at_rest
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode
from signing.errors import SigningError
from signing.hpke import HpkePrivateKey, hpke_open, seal_info
from signing.nodedir import NodeKeys
from signing.profiles import certificate_profile

__all__ = ["RelayNode"]

_log = logging.getLogger("tongban.relay")

_LAST_QUEUED = 4096
"""Cases whose last queued packet a node remembers (:meth:`RelayNode._expected_next`)."""

COMMIT_LINGER = 0.002
"""The longest a group of new packets waits for the creations still sealing (seconds):
they then share its commit (:class:`relay.core.group_commit.GroupCommit`), whose fixed
cost is then paid once. A creator alone never waits. Measured with ``bench relay_http``
against the code without it, alternating in the same hour: 16 clients create 1,117-1,161
packets/s instead of 1,050-1,104, at 1.01-1.07 ms of CPU per packet instead of
1.09-1.15; the p99 at half that rate stayed as it was (29-41 ms against 21-44). Waiting
3 or 5 ms gave a little more at full rate but a longer tail at half rate (p99 above
50 ms in some runs). On PostgreSQL (``bench pg_relay``) one worker went from 442 to
607-623 packets/s."""

_AT_REST = {c.value: c for c in AtRest}
"""Own copies sealed with :mod:`signing.at_rest` are ``<cipher>.<kid>.<b64url>``:
``r1`` AES-256-GCM, ``r2`` SM4-GCM (an SM-profile node's copies since issue 19)."""


class RelayNode:
    """One node's relay: create, send, receive, receipt and store case packets."""

    def __init__(
        self,
        *,
        node_id: str,
        keys: NodeKeys,
        bundle: TrustBundle | BundleSource,
        directory: Directory,
        authorizer: Authorizer,
        store: RelayStore,
        link: PeerLink,
        clock: Clock,
        rng: random.Random,
        policy: OutboxPolicy | None = None,
        new_id: Callable[[], str] = ids.packet_id,
        content_check: ContentCheck | None = None,
        crypto_helper: bool = False,
        seal_inline_up_to: int = 0,
    ) -> None:
        """``keys`` gives the seal signer and HPKE private keys (current first, then
        previous ones still inside the rotation overlap); ``bundle`` the trust bundle,
        or a callable returning the one in force (so fresh CRLs apply without a
        restart); ``rng`` the retry jitter; ``policy`` the outbox's retry, batch and
        expiry settings; ``new_id`` makes packet ids (UUIDs of version 7, their random
        bits from the OS, :mod:`relay.core.ids`: they must stay unique across restarts,
        which a seeded ``rng`` would not give);
        ``content_check`` the application's check of incoming content (see
        :meth:`install_content_check`); ``crypto_helper``: examine incoming batches and
        seal new packets in a helper process (:mod:`relay.core.helper`; stop it with
        :meth:`aclose`), the latter only while more than ``seal_inline_up_to`` packets
        are being created at once (see :meth:`create_packet`)."""
        self.node_id = node_id
        self._signer = keys.seal
        self.profile = certificate_profile(keys.seal.leaf)  # of the seal: signing.profiles
        self._hpke: tuple[HpkePrivateKey, ...] = tuple(keys.hpke_keys)
        if not self._hpke:
            raise ValueError("a node needs at least one HPKE private key")
        self._bundle: BundleSource = bundle if callable(bundle) else (lambda: bundle)
        self._directory = directory
        self._authorizer = authorizer
        self._store = store
        self._clock = clock
        self._rng = rng
        self._new_id = new_id
        self._policy = policy or OutboxPolicy()
        self._wake = asyncio.Event()
        self._asleep_until: datetime | None = None  # the outbox's next pass, while it waits
        self._held_until: dict[str, datetime | None] = {}  # backoffs read in this sleep
        self.outbox_passes = 0
        """Passes :meth:`run_outbox` has made so far (for tests)."""
        # the SQLite store commits new packets through a connection of its own: off the loop
        self._commits = GroupCommit(
            store, off_loop=getattr(store, "NEW_PACKETS_OFF_LOOP", False), linger=COMMIT_LINGER
        )
        self._content_check = content_check
        self._helper = CryptoHelper(self._hpke, node_id, keys.seal) if crypto_helper else None
        self.seal_inline_up_to = seal_inline_up_to
        self._creating = 0  # create_packet calls in progress
        # creations under an id the caller chose, while they run (the same id twice at
        # once makes one packet)
        self._in_creation: dict[str, asyncio.Future[PacketSummary]] = {}
        # (destination, case) -> (seq, digest) of the last packet queued, oldest first
        self._last_queued: dict[tuple[str, str], tuple[int, str]] = {}
        self._inbox = Inbox(
            me=node_id,
            signer=keys.seal,
            bundle=self._bundle,
            directory=directory,
            keys=key_ring(self._hpke),
            pipeline=standard_pipeline(authorizer, content_check, profile=self.profile),
            store=store,
            clock=clock,
            examiner=self._helper,
        )
        self._vault = AttachmentVault(store, self._hpke, self._incoming_keys)
        self._ring = key_ring(self._hpke)
        self._own_kid = self._hpke[0].public_key().kid
        self._sender = Sender(
            me=node_id,
            bundle=self._bundle,
            store=store,
            link=link,
            clock=clock,
            rng=rng,
            policy=self._policy,
        )

    # -- federation side -------------------------------------------------------------

    async def receive_batch(self, peer_id: str, packets: Sequence[str]) -> list[str]:
        """Run every packet through the acceptance pipeline; return one signed receipt
        (compact JWS, typ ``tongban-receipt+jws``) per packet, in order.

        ``peer_id`` is the node id from the peer's path-validated TLS client
        certificate. Accepted packets are committed (with their receipts) before this
        returns; a duplicate packet id gets the original receipt back.
        """
        return await self._inbox.receive_batch(peer_id, packets)

    @property
    def helper(self) -> CryptoHelper | None:
        """The node's crypto helper process, if it has one."""
        return self._helper

    async def aclose(self) -> None:
        """Stop what the node runs beside its event loop (the crypto helper)."""
        if self._helper is not None:
            await self._helper.aclose()

    async def receive_batch_opened(self, peer_id: str, packets: Sequence[str]) -> ReceivedBatch:
        """:meth:`receive_batch` that also hands over the packets it accepted with their
        opened content (for the case layer: no second verify and decrypt). Returns
        after the commit, with nothing awaited in between: batches come back in commit
        order."""
        return await self._inbox.receive_batch_opened(peer_id, packets)

    def install_content_check(self, check: ContentCheck) -> None:
        """Have the application judge the content of incoming packets from now on
        (docs/protocol.md §8.5 step 9): a packet ``check`` refuses gets a signed
        ``rejected`` receipt ``content-refused:<code>`` and is not stored.

        For an application that needs the node itself (to read stored packets), so
        cannot hand its check to the constructor. One check per node: raises
        :class:`RuntimeError` when one is installed already."""
        if self._content_check is not None:
            raise RuntimeError("this node has a content check already")
        self._content_check = check
        self._inbox.use_pipeline(standard_pipeline(self._authorizer, check, profile=self.profile))

    def blob_offset(self, digest: str) -> int:
        """How many bytes of the sealed blob ``digest`` this node holds (its size when
        complete, 0 when unknown). Used by a peer's resumable upload."""
        return self._vault.blob_offset(digest)

    async def write_blob(
        self, peer_id: str, digest: str, size: int, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """Append a peer's upload of sealed blob ``digest`` at ``offset``; return the new
        offset. On reaching ``size`` the SHA-256 is checked and the blob published in
        the content-addressed directory (raises :class:`AttachmentError` on mismatch)."""
        return await self._vault.write_blob(peer_id, digest, size, offset, chunks)

    def open_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a complete sealed blob from ``offset`` (what an upload sends)."""
        return self._vault.open_blob(digest, offset)

    # -- staff side ------------------------------------------------------------------

    async def create_packet(
        self,
        *,
        to: str,
        case_id: str,
        matter: str,
        action: str,
        mode: str,
        content: Mapping[str, Any],
        attachments: Sequence[str] = (),
        expires_in: timedelta | None = None,
        audit: Sequence[bytes] = (),
        packet_id: str | None = None,
    ) -> PacketSummary:
        """Check the agreement, seal and sign a packet and queue it for ``to``;
        ``audit``: leaves logged in the transaction that queues it, after its
        ``packet-sent`` leaf. ``packet_id``: the id the caller chose (a UUID of version
        7, :func:`relay.core.ids.packet_id`) and recorded before asking: when this node
        queued a packet under that id already, that packet is answered and nothing is
        queued (the caller sending again what a stop may have interrupted).

        With a crypto helper, the content is sealed there while more than
        ``seal_inline_up_to`` creations are in progress (by default always: the event
        loop stays free for the requests, and the round trip costs a lone creation
        0.4-1 ms); fewer, and it is sealed here. The helper also signs
        the routing facts, for the sequence number and ``prev`` the case is expected to
        get (:meth:`_expected_next`); the group commit keeps that signature when it
        allots the same, and signs again here otherwise.

        ``attachments`` are plaintext SHA-256 digests (hex) of attachments staged with
        :meth:`write_attachment`. Raises :class:`NotAuthorized` (the agreement does not
        grant it), :class:`UnknownNode`, :class:`NotFound` (attachment not staged),
        :class:`MalformedPacket` (content or routing strings are not tongban JSON values,
        protocol.md "Conventions", or ``case_id`` is not 1-128 characters),
        :class:`PacketTooLarge` (over ``policy.max_packet_bytes``; nothing is queued).
        """
        if packet_id is not None:
            if (known := self._store.outgoing(packet_id)) is not None:
                return known.item.summary  # queued before: by the request a stop interrupted
            if (pending := self._in_creation.get(packet_id)) is not None:
                return await asyncio.shield(pending)  # the same id twice at once: one packet
        creating = self._create_packet(
            to, case_id, matter, action, mode, content, attachments, expires_in, audit,
            packet_id or self._new_id(),
        )  # fmt: skip
        return await (creating if packet_id is None else self._shared(packet_id, creating))

    async def _shared(
        self, packet_id: str, creating: Coroutine[Any, Any, PacketSummary]
    ) -> PacketSummary:
        """Await ``creating``, its outcome given to whoever asks for ``packet_id``
        meanwhile (:attr:`_in_creation`)."""
        pending = self._in_creation[packet_id] = asyncio.get_running_loop().create_future()
        try:
            made = await creating
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            pending.set_result(made)
            return made
        finally:
            del self._in_creation[packet_id]

    async def _create_packet(
        self,
        to: str,
        case_id: str,
        matter: str,
        action: str,
        mode: str,
        content: Mapping[str, Any],
        attachments: Sequence[str],
        expires_in: timedelta | None,
        audit: Sequence[bytes],
        packet_id: str,
    ) -> PacketSummary:
        with self._one_creation_more():
            check_new_packet(case_id, matter, action, mode, content)
            at = self._clock()
            recipient = self._directory.sealing_key(to)  # UnknownNode first
            request = AuthorizationRequest(
                self.node_id, to, matter, action, mode, None,
                sender_profile=self.profile, receiver_profile=self._directory.profile(to),
            )  # fmt: skip
            decision = self._authorizer(request, at)
            if not decision.allowed or decision.agreement is None:
                raise NotAuthorized(decision.reason or "no-agreement", decision.detail)
            staged = await self._vault.for_recipient(
                self._vault.staged(attachments), recipient.suite
            )
            keys = [key for _, key in staged]
            refs = [
                AttachmentRef(s.blob_digest, s.blob_size, s.media_type, s.name) for s, _ in staged
            ]
            infos = [info_of(s) for s, _ in staged]
            agreement = decision.agreement
            expires = at + (expires_in or self._policy.default_ttl)

            def facts_of(seq: int, prev: str | None) -> dict[str, Any]:
                return {
                    "v": 1,
                    "id": packet_id,
                    "case": case_id,
                    "from": self.node_id,
                    "to": to,
                    "matter": matter,
                    "action": action,
                    "mode": mode,
                    "agreement": {
                        "id": agreement.id,
                        "version": agreement.version,
                        "digest": agreement.digest,
                    },
                    "seq": seq,
                    "prev": prev,
                    "created": format_time(at),
                    "expires": format_time(expires),
                    "attachments": [r.to_json() for r in refs],
                }

            def outgoing(token: str, digest: str, leaf: bytes, parsed: RoutingFacts) -> NewOutgoing:
                most = self._policy.max_packet_bytes
                if most is not None and len(token) > most:
                    raise PacketTooLarge(len(token), most)
                summary = summary_of(parsed, digest, infos)
                return NewOutgoing(summary, token, own_copy, leaf, also_logged=tuple(audit))

            # the costly half (inner JWS, HPKE seal, own copy) needs no sequence number: done
            # here, per request, so a group's transaction only signs the routing facts; the
            # helper signs those too, for the number and prev this case is expected to get
            made = expected = None
            if self._helper is not None and self._creating > self.seal_inline_up_to:
                expected = self._expected_next(to, case_id)
                with self._commits.coming():  # a group forming now waits for this one
                    made = await self._helper.seal(
                        packet_id, case_id, to, content, keys, recipient=recipient, at=at,
                        facts=facts_of(*expected),
                    )  # fmt: skip
            ready: NewOutgoing | None = None
            if made is not None:
                sealed, own_copy, signed = made
                if signed is not None:
                    with contextlib.suppress(PacketTooLarge):  # said by the build, as ever
                        ready = outgoing(*signed)
            else:  # no helper, or it could not: here (raising what the helper did not say)
                try:
                    inner, sealed = seal_content(
                        packet_id, case_id, self.node_id, to, content, keys,
                        signer=self._signer, recipient=recipient, at=at,
                    )  # fmt: skip
                except MalformedPacket as exc:
                    raise NotAuthorized(f"malformed: {exc}") from exc
                own_copy = self._own_copy(inner, packet_id)

            def build(seq: int, prev: str | None) -> NewOutgoing:
                if ready is not None and self._helper is not None:
                    kept = (seq, prev) == expected
                    self._helper.presigned["kept" if kept else "signed_again"] += 1
                    if kept:
                        return ready
                facts = facts_of(seq, prev)
                return outgoing(*sign_outer(facts, sealed, self._signer, self.node_id, at))

            try:
                new = await self._commits.enqueue(to, case_id, build)
            except MalformedPacket as exc:
                raise NotAuthorized(f"malformed: {exc}") from exc
            self._queued_last(new.summary)
            self._wake_for(new.summary)
            return new.summary

    def _expected_next(self, peer: str, case_id: str) -> tuple[int, str | None]:
        """The sequence number and ``prev`` the next packet of ``case_id`` to ``peer`` is
        expected to get: after the last one this node queued there, when it is among the
        :data:`_LAST_QUEUED` cases queued to most recently; the first of its case
        otherwise (a new case, as most are). Only a guess, never read from the store:
        the group commit allots the real ones, and a packet signed ahead with others is
        signed again (``CryptoHelper.presigned``)."""
        last = self._last_queued.get((peer, case_id))
        return (1, None) if last is None else (last[0] + 1, last[1])

    def _queued_last(self, summary: PacketSummary) -> None:
        """Remember ``summary`` as the last packet queued in its case (for
        :meth:`_expected_next`), unless a later one of the case already is."""
        key = (summary.receiver, summary.case_id)
        last = (summary.seq, summary.digest)
        known = self._last_queued.pop(key, None)
        self._last_queued[key] = last if known is None or known[0] < last[0] else known
        if len(self._last_queued) > _LAST_QUEUED:
            del self._last_queued[next(iter(self._last_queued))]

    @contextlib.contextmanager
    def _one_creation_more(self) -> Iterator[None]:
        """Count a :meth:`create_packet` in progress (see ``seal_inline_up_to``)."""
        self._creating += 1
        try:
            yield
        finally:
            self._creating -= 1

    def _wake_for(self, queued: PacketSummary) -> None:
        """Wake the outbox for a packet just queued, unless its sleep already ends
        before the packet can go: its destination in backoff (a partner down) until
        after the planned pass, and its expiry plus the grace later too. A wake that
        sends nothing cost a whole pass per created group.

        A destination's backoff is read once per sleep (a pass changes it, and a pass
        ends the sleep): a backoff that another worker process clears during the sleep
        is seen at the planned pass, at the latest when the backoff read would end.

        The sleep is a timer (monotonic), ``until`` a reading of the clock: once the
        clock stands past it (stepped forward, or an injected clock moved) the planned
        pass is no measure of when the sleep ends, and the packet wakes the outbox."""
        until = self._asleep_until
        now = self._clock()
        if self._sender.serving(queued.receiver):
            return  # its partner's task takes it, or wakes the outbox when it ends
        if until is not None and not self._wake.is_set() and now < until:
            peer = queued.receiver
            if peer not in self._held_until:
                backoff = self._store.peer_backoffs().get(peer)
                self._held_until[peer] = backoff.next_attempt_at if backoff else None
            held = self._held_until[peer]
            due = now if held is None else max(now, held)
            if min(due, queued.expires + self._policy.expiry_grace) >= until:
                return
        self._wake.set()

    def _own_copy(self, inner: str, packet_id: str) -> str:
        """The inner JWS sealed at rest for this node alone: ``r1.<kid>.<b64url>``
        (``r2`` with SM4-GCM on an SM-profile node), under a key derived from our current
        HPKE private key (:mod:`signing.at_rest`; copies made before are
        ``<kid>.<b64url>``, HPKE-sealed to our own public key)."""
        return seal_own_copy(inner, packet_id, self._hpke[0], self._own_kid)

    def _open_own_copy(self, own_copy: str, packet_id: str) -> str:
        info = seal_info("packet-copy", {"id": packet_id})
        marker, _, rest = own_copy.partition(".")
        if marker in _AT_REST:
            kid, _, ct = rest.partition(".")
            plain = open_at_rest(
                b64url_decode(ct), key_by_kid(self._ring, kid), info=info, cipher=_AT_REST[marker]
            )
        else:  # HPKE-sealed to our own public key
            kid, _, ct = own_copy.partition(".")
            plain = hpke_open(b64url_decode(ct), key_by_kid(self._ring, kid), info=info)
        return plain.decode("ascii")

    async def resend(self, packet_id: str, *, expires_in: timedelta | None = None) -> PacketSummary:
        """Staff's action on a dead letter or a rejected packet: send the same step again
        as a new packet (next sequence number of its case, fresh expiry), with the same
        content and attachments, after checking the agreement again. Its id is derived
        from the refused packet's (:func:`relay.core.ids.resent_id`): asked twice (a
        double click, a retried request), it is sent once and answered twice. Raises
        :class:`NotFound` (no such outgoing packet) or :class:`NotAuthorized` (the
        packet is not dead or rejected: ``not-settled-as-failed``)."""
        outgoing = self._store.outgoing(packet_id)
        if outgoing is None:
            raise NotFound(f"no outgoing packet {packet_id}")
        if outgoing.item.state not in (OutboxState.DEAD, OutboxState.REJECTED):
            raise NotAuthorized("not-settled-as-failed")
        s = outgoing.item.summary
        return await self.create_packet(
            to=s.receiver,
            case_id=s.case_id,
            matter=s.matter,
            action=s.action,
            mode=s.mode,
            content=self.read_packet(packet_id).content,
            attachments=[a.plain_digest for a in s.attachments if a.plain_digest],
            expires_in=expires_in,
            packet_id=ids.resent_id(packet_id),  # asked twice (a retried request): sent once
        )

    def partner_reachable(self, peer: str) -> None:
        """``peer`` has just made an authenticated request to us: if the outbox is
        waiting out a backoff of it, try it now (:meth:`Sender.partner_reachable`)."""
        if self._sender.partner_reachable(peer):
            self._held_until.pop(peer, None)
            self._wake.set()

    def unreachable_partners(self) -> dict[str, datetime]:
        """Partners the outbox could not deliver to since when (consecutive failures)."""
        return self._sender.failing_since()

    def partners_lacking_agreements(self) -> dict[str, tuple[int, datetime]]:
        """Partners that have not loaded the agreement version some of our packets name:
        how many cases wait for it, and the latest such refusal."""
        return self._sender.agreement_unknown(self._clock())

    @property
    def outbox_policy(self) -> OutboxPolicy:
        return self._policy

    def set_outbox_policy(self, policy: OutboxPolicy) -> None:
        """Use ``policy`` from the next outbox pass on (a reload of ``[outbox]``): batch
        size and backoff of the next attempts; backoffs already scheduled stand."""
        self._policy = policy
        self._sender.set_policy(policy)
        self._wake.set()

    def announce_partner_limits(self, limits: Mapping[str, Mapping[str, int]]) -> None:
        """The limits partners announce in their directory entries (node id ->
        ``max_batch_size`` / ``max_body_bytes``): batches to them are cut to these
        from the first one on (see :class:`relay.core.sender.Sender`)."""
        self._sender.announce_limits(limits)

    def outbox_depth(self) -> dict[str, tuple[int, datetime]]:
        """Partner → (packets queued or in flight, creation of the oldest), for metrics."""
        return self._store.outbox_depth()

    def unconfirmed_packets(self, now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Packets sent but never answered, past their expiry and its grace: the partner
        may hold them, so they stay in flight and are sent again until it answers (an
        indexed read of at most ``limit``)."""
        return self._store.unconfirmed_rows(now - self._policy.expiry_grace, limit)

    def parked_packets(self) -> list[OutboxItem]:
        """Dead letters (parked or expired) not sent again since, newest first: what
        staff must act on (an indexed read, not the outbox)."""
        return self._store.parked()

    def standing_rejections(self) -> list[OutboxItem]:
        """Packets partners rejected and not sent again since (no later packet of the
        case queued to that partner), newest first: an indexed read, not the outbox."""
        return self._store.standing_rejections()

    def unnoticed_refusals(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` packets refused for good (rejected, or dead) not yet passed
        to :meth:`notice_refusals`, oldest first."""
        return self._store.unnoticed_refusals(limit)

    def notice_refusals(self, packet_ids: Sequence[str]) -> None:
        """The integration scan recorded the events of these refusals."""
        self._store.notice_refusals(packet_ids)

    def list_outbox(
        self,
        *,
        state: OutboxState | None = None,
        peer: str | None = None,
        case_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]:
        """Outgoing packets in creation order (``newest_first``: the reverse), optionally
        filtered (``dead`` = dead letters), at most ``limit`` of them."""
        return self._store.list_outbox(state, peer, case_id, limit=limit, newest_first=newest_first)

    def list_inbox(
        self, *, case_id: str | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[InboxItem]:
        """Accepted incoming packets in arrival order (``newest_first``: the reverse), at
        most ``limit`` of them."""
        return self._store.list_inbox(case_id, limit=limit, newest_first=newest_first)

    def inbox_after(self, after: int, limit: int) -> list[tuple[int, InboxItem]]:
        """At most ``limit`` accepted packets numbered after ``after`` (0: from the
        first), in arrival order, with their numbers: a reader keeping the last number
        it handled reads each packet once, and each read costs its page only."""
        return self._store.inbox_after(after, limit)

    def unsettled_inbox(self, *, case_id: str | None = None) -> list[InboxItem]:
        """Accepted packets (of ``case_id``) the application above has not settled yet
        (:meth:`settle_inbox`), in arrival order. Every packet it has not applied is
        among them, and the read costs what is in progress, not the inbox."""
        return self._store.unsettled_inbox(case_id)

    def settle_inbox(self, packet_ids: Sequence[str]) -> None:
        """The application has recorded what these accepted packets made; call it after
        that record committed (settling early would hide a packet not yet applied)."""
        self._store.settle_inbox(packet_ids)

    def read_packet(self, packet_id: str) -> PacketContent:
        """Open an incoming or outgoing packet: content, inner JWS, outer JWS, receipt."""
        incoming = self._store.incoming(packet_id)
        if incoming is not None:
            at = incoming.item.received_at
            packet = verify_packet(incoming.token, self._bundle(), at=at)
            content = open_content(packet.facts, self._ring, self._bundle(), at=at)
            infos = [
                AttachmentInfo(a.digest, a.size, a.media_type, a.name, k.plain_digest, k.plain_size)
                for a in packet.facts.attachments
                for k in content.attachment_keys
                if k.digest == a.digest
            ]
            summary = summary_of(packet.facts, packet.digest, infos)
            return PacketContent(
                summary, content.body, content.jws, incoming.token, incoming.item.receipt
            )
        outgoing = self._store.outgoing(packet_id)
        if outgoing is None:
            raise NotFound(f"no packet {packet_id}")
        inner = self._open_own_copy(outgoing.own_copy, packet_id)
        payload = json.loads(b64url_decode(inner.split(".")[1]))
        return PacketContent(
            outgoing.item.summary, payload["body"], inner, outgoing.token, outgoing.item.receipt
        )

    def attachment_offset(self, digest: str) -> int:
        """How many plaintext bytes of a staff upload of ``digest`` are held (its size
        once complete)."""
        return self._vault.attachment_offset(digest)

    async def write_attachment(
        self,
        digest: str,
        size: int,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str = "application/octet-stream",
        name: str = "",
    ) -> AttachmentInfo | None:
        """Stage a plaintext attachment (streamed, constant memory, resumable by
        ``offset``), sealed at rest as it arrives (``relay.core.staging``). On
        completion the SHA-256 is checked; returns its info then, None while incomplete."""
        return await self._vault.write_attachment(
            digest, size, offset, chunks, media_type=media_type, name=name
        )

    def open_attachment(self, digest: str) -> AsyncIterator[bytes]:
        """Stream the plaintext of a staged or received attachment (plaintext digest
        or blob digest); decrypted segment by segment, authenticated."""
        return self._vault.open_attachment(digest)

    def _incoming_keys(self, packet_id: str) -> tuple[AttachmentKey, ...]:
        incoming = self._store.incoming(packet_id)
        if incoming is None:
            raise NotFound(f"no packet {packet_id}")
        at = incoming.item.received_at
        try:
            facts = verify_packet(incoming.token, self._bundle(), at=at).facts
            return open_content(facts, self._ring, self._bundle(), at=at).attachment_keys
        except SigningError as exc:
            raise NotFound(f"packet {packet_id} no longer opens") from exc

    # -- background ------------------------------------------------------------------

    async def deliver_once(self) -> int:
        """One outbox pass: expire, upload attachments, send due batches, apply receipts.

        Returns how many packets got settled (delivered, rejected or dead) in this pass.
        """
        return await self._sender.deliver_once()

    @property
    def next_outbox_pass(self) -> datetime | None:
        """When :meth:`run_outbox`, waiting, plans its next pass; ``None`` while a pass
        runs or is about to (woken), or no outbox task runs."""
        return None if self._wake.is_set() else self._asleep_until

    async def run_outbox(self, stop: asyncio.Event) -> None:
        """Run outbox passes until ``stop`` is set, sleeping until the next due attempt
        (or until a packet is queued that can go before it: not one for a partner in
        backoff, see :meth:`_wake_for`)."""
        try:
            await self._outbox_loop(stop)
        finally:
            await self._sender.stop_serving()

    async def _outbox_loop(self, stop: asyncio.Event) -> None:
        """Each pass starts a task per due partner (:meth:`Sender.start_pass`) and sleeps:
        a partner's task that ends wakes the loop for the next pass."""
        while not stop.is_set():
            self._wake.clear()
            self._asleep_until = None  # a packet queued during the pass wakes the next one
            self._held_until.clear()
            try:
                self._raise_lane_errors()
                self.outbox_passes += 1
                self._sender.start_pass(self._wake.set)
                now = self._clock()
                wake = self._sender.next_wakeup(now)
                delay = max((wake - now).total_seconds(), 0.0)
                self._asleep_until = wake
            except storage_errors(StoreError) as exc:
                # a storage fault (full disk, I/O error, a lost or deadlocked PostgreSQL
                # transaction) must not end delivery for good:
                # the pass is retried once the fault may be gone, nothing was committed
                delay = self._policy.max_delay.total_seconds()
                _log.error("outbox pass failed on storage (%s); retrying in %.0fs", exc, delay)
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            self._asleep_until = None
            for task in pending:
                task.cancel()

    def _raise_lane_errors(self) -> None:
        """Raise the first error a partner's task of the last passes ended with (a
        storage fault is then retried after a while, as a failed pass)."""
        failed = self._sender.failed_lanes
        if failed:
            first = failed[0]
            failed.clear()
            raise first
