"""A node's crypto helper process (:mod:`relay.core.helper_worker`).

The costly, pure part of a packet — on receipt the outer JWS, certificate path, HPKE
open and inner JWS of each packet (:func:`relay.core.receiver.examine`), on creation the
inner JWS, the HPKE seal to the recipient, the node's own copy and the outer JWS — holds the
interpreter lock for most of its time, so in threads it competes with the event loop
that decides, stores and answers. :class:`CryptoHelper` does it in one helper process
instead and gives back the same results. Nothing the helper answers is trusted more
than the in-process result would be: it is the node's own code, started by the node, on
a pipe only the two of them hold.

Every decision that depends on the store, time or the agreements stays in the node:
for examining, the helper gets the trust bundle in force (its fingerprint with every
batch, its PEM when it changes, so a fresh CRL applies from the next batch) and the
batch's ``at``. The outer JWS of a new packet needs its sequence number and ``prev``,
which only the group commit allots: the helper signs it with the ones the node expects,
and the node keeps that signature only when the commit allots the same (it signs the
packet itself otherwise).

When the helper cannot answer — not started yet, ended, killed, or a request it failed
on — :meth:`CryptoHelper.examine` and :meth:`CryptoHelper.seal` return None and the node
does the work itself, as without a helper; a helper that ended is started again at the
earliest :data:`RESTART_AFTER` seconds later. The helper ends when the node closes its
stdin, and on its own when the node dies (the pipe's other end closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from cryptography import x509

from relay.core.fields import time_micros
from relay.core.helper_worker import Packed, Signed, frame
from relay.core.packets import VerifiedPacket
from relay.core.receiver import Examined
from signing.certificates import Identity, Purpose, TrustBundle
from signing.hpke import HpkePrivateKey, HpkePublicKey
from signing.keys import Signer

__all__ = ["ANSWER_WITHIN", "RESTART_AFTER", "CryptoHelper"]

_log = logging.getLogger("tongban.relay.helper")

RESTART_AFTER = 30.0
"""Seconds after a helper's end before another is started (meanwhile the node does the
work itself)."""

ANSWER_WITHIN = 30.0
"""Seconds the helper has to answer a request (a batch takes milliseconds); a helper
that does not is taken for hung: it is killed, the node does the work itself and
starts another helper :data:`RESTART_AFTER` seconds later."""

_IDENTITIES = 256


_GONE = object()
"""The answer of the requests pending when the helper ended."""


class _Pipes(asyncio.SubprocessProtocol):
    """The node's end of one helper process. Its answers are read off stdout as they
    arrive, in this callback (no reader task, no stream buffer: a task's wake-up and
    two stream reads per answer were 5-10 us of the ~155 us the node's side of a seal
    took), and each is handed to ``answered``; ``ended`` is called once, when its
    stdout closes (the helper ended, or was killed)."""

    def __init__(
        self, answered: Callable[[object], None], ended: Callable[[_Pipes, str], None]
    ) -> None:
        self._answered = answered
        self._ended = ended
        self._held = b""  # the start of a frame whose rest has not arrived
        self._garbled = False  # an answer did not read: nothing more is
        self._transport: asyncio.SubprocessTransport | None = None
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.stdout_closed: asyncio.Future[None] = loop.create_future()

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.get_pid()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def write(self, data: bytes) -> None:
        """Send ``data`` on the helper's stdin; :class:`ConnectionError` once it is closed."""
        stdin = None if self._transport is None else self._transport.get_pipe_transport(0)
        if stdin is None or stdin.is_closing():
            raise ConnectionError("the crypto helper's stdin is closed")
        cast(asyncio.WriteTransport, stdin).write(data)

    def close_stdin(self) -> None:
        """The helper ends when it has answered what it was sent."""
        stdin = None if self._transport is None else self._transport.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()

    def kill(self) -> None:
        """Kill the helper unless asyncio has seen it end (killing one that has ended
        would reap it behind asyncio's back: ``Popen.send_signal`` polls)."""
        if self._transport is not None and self._transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1 or self._garbled:
            return
        chunk = self._held + data if self._held else data
        answers, start, size = [], 0, len(chunk)
        with memoryview(chunk) as view:
            while size - start >= 4:
                end = start + 4 + int.from_bytes(view[start : start + 4], "big")
                if end > size:
                    break
                try:
                    answers.append(pickle.loads(view[start + 4 : end]))  # noqa: S301 - our pipe
                except Exception as exc:
                    # the stream cannot be followed further: the helper is killed, its end
                    # falls every pending request back to the node
                    _log.error("the crypto helper's answer does not read (%r): killing it", exc)
                    self._garbled = True
                    self.kill()
                    break
                start = end
        self._held = chunk[start:] if start < size and not self._garbled else b""
        for answer in answers:
            self._answered(answer)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1 and not self.stdout_closed.done():
            self._ended(self, "EOF" if exc is None else type(exc).__name__)
            self.stdout_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class CryptoHelper:
    """One helper process for the node ``me`` holding ``keys`` (its HPKE private keys,
    current first: the helper opens sealed content and seals own copies with them) and
    ``signer`` (its seal: the helper signs inner JWSs with it)."""

    def __init__(self, keys: Sequence[HpkePrivateKey], me: str, signer: Signer) -> None:
        self._hello = (me, [(k.suite.value, k.secret) for k in keys], signer.to_pem())
        self._proc: _Pipes | None = None
        self._reaping: asyncio.Task[None] | None = None  # of the helper that ended last
        # requests sent and not answered yet, oldest first, with when each was sent
        self._pending: deque[tuple[asyncio.Future[object], float, str]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._sent_bundle: bytes | None = None
        self._identities: dict[tuple[bytes, str, str, Purpose], Identity] = {}
        self._down_until = 0.0
        self._starting = asyncio.Lock()
        self._closed = False
        self.answered = {"examine": 0, "seal": 0}
        """Requests the helper answered, by kind (for tests and metrics)."""
        self.fallbacks = {"examine": 0, "seal": 0}
        """Requests the node did itself because the helper could not, by kind."""
        self.presigned = {"kept": 0, "signed_again": 0}
        """New packets the helper signed ahead of their commit (:meth:`seal` with
        ``facts``): kept as it signed them, or signed again by the node because the
        commit allotted another sequence number or ``prev``."""
        self.starts = 0
        """Helper processes started so far."""

    @property
    def running(self) -> bool:
        """Whether a helper process runs now."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """The running helper's process id, or None."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> bool:
        """Start the helper unless it runs (or ended less than :data:`RESTART_AFTER`
        seconds ago); whether it runs."""
        if self._proc is not None:
            return True
        async with self._starting:
            if self._proc is not None:
                return True
            if self._closed or time.monotonic() < self._down_until:
                return False
            if self._reaping is not None:  # the one before is gone first
                await self._reaping
            try:
                _, pipes = await asyncio.get_running_loop().subprocess_exec(
                    lambda: _Pipes(self._answered, self._ended),
                    sys.executable, "-m", "relay.core.helper_worker",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                )  # fmt: skip
            except OSError as exc:
                _log.warning("cannot start the crypto helper (%s): working in-process", exc)
                self._down_until = time.monotonic() + RESTART_AFTER
                return False
            pipes.write(frame(self._hello))
            self._proc, self._sent_bundle = pipes, None
            self.starts += 1
            return True

    async def _call(self, kind: str, *args: Any, bundle: TrustBundle | None = None) -> object:
        """The helper's answer to the request ``(kind, *args)``, or None when it cannot
        answer. With ``bundle`` the request starts with its fingerprint and its PEM
        (None when this helper process was sent it before)."""
        result = await self._ask(kind, *args, bundle=bundle)
        if result is None:
            self.fallbacks[kind] += 1
        else:
            self.answered[kind] += 1
        return result

    async def _ask(self, kind: str, *args: Any, bundle: TrustBundle | None = None) -> object:
        if not await self.start():
            return None
        proc = self._proc
        assert proc is not None
        request: tuple[Any, ...] = (kind, *args)
        if bundle is not None:
            fingerprint = bundle.fingerprint
            pem = None if fingerprint == self._sent_bundle else bundle.to_pem()
            request = (kind, fingerprint, pem, *args)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[object] = loop.create_future()
        try:
            proc.write(frame(request))
        except ConnectionError:  # the pipe closed: its end is noticed too
            return None
        if bundle is not None:
            self._sent_bundle = bundle.fingerprint
        self._pending.append((answer, loop.time(), kind))
        if self._watchdog is None:
            self._watchdog = loop.call_later(ANSWER_WITHIN, self._watch, proc)
        # nothing waits for the pipe to drain: that would wait for the requests queued
        # before this one too. A caller cancelled meanwhile cancels only its future:
        # its answer is dropped when it comes
        result = await answer
        if result is _GONE:
            return None
        if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
            _log.warning("the crypto helper failed on a %s request (%s)", kind, result[1])
            return None
        return result

    def _watch(self, proc: _Pipes) -> None:
        """Kill the helper when its oldest unanswered request is :data:`ANSWER_WITHIN`
        seconds old (its stdout then closes: every pending request falls back); else look
        again when it would be. One timer per helper, not one per request."""
        self._watchdog = None
        if not self._pending or self._proc is not proc:
            return
        _, sent, kind = self._pending[0]
        loop = asyncio.get_running_loop()
        if loop.time() - sent < ANSWER_WITHIN:
            self._watchdog = loop.call_at(sent + ANSWER_WITHIN, self._watch, proc)
            return
        _log.warning(
            "the crypto helper (pid %s) did not answer a %s request within %g s:"
            " killing it", proc.pid, kind, ANSWER_WITHIN,
        )  # fmt: skip
        proc.kill()  # its stdout then closes: every pending request falls back

    async def examine(
        self, tokens: Sequence[str], bundle: TrustBundle, *, at: datetime, peer_id: str
    ) -> list[Examined] | None:
        """``tokens`` examined by the helper (:func:`relay.core.receiver.examine`), in
        order; None when it cannot answer (the caller then examines them itself)."""
        result = await self._call("examine", list(tokens), time_micros(at), peer_id, bundle=bundle)
        if not isinstance(result, list) or len(result) != len(tokens):
            return None
        return [self._unpack(t, p) for t, p in zip(tokens, result, strict=True)]

    async def seal(
        self,
        packet_id: str,
        case_id: str,
        to: str,
        body: Mapping[str, Any],
        attachment_keys: Sequence[Any],
        *,
        recipient: HpkePublicKey,
        at: datetime,
        facts: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, str], str, Signed | None] | None:
        """(``sealed`` member, own copy, signed) of a new packet, as
        :func:`relay.core.packets.seal_content` and
        :func:`relay.core.packets.seal_own_copy` make them; ``signed``: with ``facts``
        (its routing facts but ``sealed``), the packet signed with them
        (:func:`relay.core.helper_worker.sign_outer`), else None. None when the helper
        cannot answer (the caller then seals itself)."""
        pub = (recipient.suite.value, recipient.public_bytes)
        result = await self._call(
            "seal", packet_id, case_id, to, dict(body), list(attachment_keys), pub,
            time_micros(at), None if facts is None else dict(facts),
        )  # fmt: skip
        if not isinstance(result, tuple) or len(result) != 3:
            return None
        sealed, own_copy, signed = result
        return sealed, own_copy, signed

    def _unpack(self, token: str, packed: Packed) -> Examined:
        if len(packed) == 1:
            return Examined(packed[0])
        digest, facts, der, node_id, name, purpose, content, body = packed
        key = (der, node_id, name, purpose)
        signer = self._identities.get(key)
        if signer is None:
            if len(self._identities) >= _IDENTITIES:
                self._identities.clear()
            signer = Identity(node_id, name, x509.load_der_x509_certificate(der), purpose)
            self._identities[key] = signer
        return Examined(VerifiedPacket(token, digest, facts, signer), content, body)

    def _answered(self, answer: object) -> None:
        """The next answer of the helper: to the oldest request not answered yet."""
        if not self._pending:
            _log.error("the crypto helper answered a request it was not sent: killing it")
            if self._proc is not None:
                self._proc.kill()
            return
        waiter, _, _ = self._pending.popleft()
        if not waiter.done():  # a request cancelled meanwhile: its answer is dropped
            waiter.set_result(answer)
        if not self._pending and self._watchdog is not None:  # nothing to watch
            self._watchdog.cancel()
            self._watchdog = None

    def _ended(self, pipes: _Pipes, why: str) -> None:
        """The helper ``pipes`` ended (its stdout closed): its pending requests fall back
        to the node, and another helper starts :data:`RESTART_AFTER` seconds from now."""
        if not self._closed:
            _log.warning(
                "the crypto helper (pid %s) ended (%s): working in-process for %.0f s",
                pipes.pid, why, RESTART_AFTER,
            )  # fmt: skip
        self._down_until = time.monotonic() + RESTART_AFTER
        if self._proc is pipes:
            self._proc = None
        if self._watchdog is not None:  # watching this helper: the next one arms its own
            self._watchdog.cancel()
            self._watchdog = None
        while self._pending:
            waiter, _, _ = self._pending.popleft()
            if not waiter.done():
                waiter.set_result(_GONE)
        self._reaping = asyncio.ensure_future(_reap(pipes))

    async def aclose(self) -> None:
        """Stop the helper: its stdin closes, it ends (killed if not within 5 s)."""
        self._closed = True
        pipes = self._proc
        if pipes is not None:
            pipes.close_stdin()
            try:  # its stdout closes once it has ended
                await asyncio.wait_for(asyncio.shield(pipes.stdout_closed), 5)
            except TimeoutError:
                pipes.kill()
                await pipes.stdout_closed
        if self._reaping is not None:
            await self._reaping


async def _reap(pipes: _Pipes) -> None:
    """Wait for the helper's end; kill it if it has not ended within 5 s."""
    try:
        await asyncio.wait_for(asyncio.shield(pipes.exited), 5)
    except TimeoutError:
        pipes.kill()
        await pipes.exited
    pipes.close()
