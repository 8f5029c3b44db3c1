"""Examining incoming batches in a helper process (:mod:`relay.core.examine_worker`).

The inbox's pure, costly part — outer JWS, certificate path, HPKE open, inner JWS of
each packet (:func:`relay.core.receiver.examine`) — holds the interpreter lock for most
of its time, so in threads it competes with the event loop that decides, stores and
answers the same batches. :class:`ExamineProcess` sends each batch to one helper
process instead and gives back the same :class:`~relay.core.receiver.Examined` results.
Nothing the helper answers is trusted more than the in-thread result would be: it is
the node's own code, started by the node, on a pipe only the two of them hold.

Every decision that depends on the store, time or the agreements stays in the node:
the helper gets the trust bundle in force (its fingerprint with every batch, its PEM
when it changes, so a fresh CRL applies from the next batch) and the batch's ``at``.

When the helper cannot answer — not started yet, exited, killed, or a batch it failed
on — :meth:`ExamineProcess.examine` returns None and the inbox examines that batch in a
thread, as without a helper; a helper that exited is started again at the earliest
:data:`RESTART_AFTER` seconds later. The helper exits when the node closes its stdin,
and on its own when the node dies (the pipe's other end closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime

from relay.core.examine_worker import Packed, frame
from relay.core.packets import VerifiedPacket
from relay.core.receiver import Examined
from signing.certificates import Identity, Purpose, TrustBundle
from signing.hpke import HpkePrivateKey

__all__ = ["RESTART_AFTER", "ExamineProcess"]

_log = logging.getLogger("tongban.relay.examine")

RESTART_AFTER = 30.0
"""Seconds after a helper's exit before another is started (batches meanwhile are
examined in a thread)."""

_IDENTITIES = 256


class _HelperGone(Exception):
    pass


class ExamineProcess:
    """One helper process examining batches for a node holding ``keys`` (its HPKE private
    keys, by which the helper opens sealed content) whose id is ``me``."""

    def __init__(self, keys: Sequence[HpkePrivateKey], me: str) -> None:
        self._hello = ([(k.suite.value, k.secret) for k in keys], me)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[object]] = deque()
        self._sent_bundle: bytes | None = None
        self._identities: dict[tuple[bytes, str, str, Purpose], Identity] = {}
        self._down_until = 0.0
        self._starting = asyncio.Lock()
        self._closed = False
        self.examined_batches = 0
        """Batches the helper answered (for tests and metrics)."""

    @property
    def pid(self) -> int | None:
        """The running helper's process id, or None."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> bool:
        """Start the helper unless it runs (or exited less than :data:`RESTART_AFTER`
        seconds ago); whether it runs."""
        async with self._starting:
            if self._proc is not None:
                return True
            if self._closed or time.monotonic() < self._down_until:
                return False
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "relay.core.examine_worker",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as exc:
                _log.warning("cannot start the examine helper (%s): examining in a thread", exc)
                self._down_until = time.monotonic() + RESTART_AFTER
                return False
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(frame(self._hello))
            self._proc, self._sent_bundle = proc, None
            self._reader = asyncio.ensure_future(self._read(proc, proc.stdout))
            return True

    async def examine(
        self, tokens: Sequence[str], bundle: TrustBundle, *, at: datetime, peer_id: str
    ) -> list[Examined] | None:
        """``tokens`` examined by the helper, in order; None when it cannot answer (the
        caller then examines them itself)."""
        if not await self.start():
            return None
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        fingerprint = bundle.fingerprint
        pem = None if fingerprint == self._sent_bundle else bundle.to_pem()
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        try:
            proc.stdin.write(frame((fingerprint, pem, list(tokens), at, peer_id)))
        except (ConnectionError, RuntimeError):  # the pipe closed: the reader notices too
            return None
        self._sent_bundle = fingerprint
        self._pending.append(answer)
        try:  # no drain(): it would wait for the batches queued before this one too
            result = await answer
        except _HelperGone:
            return None
        if not isinstance(result, list) or len(result) != len(tokens):
            _log.warning("the examine helper failed on a batch (%s): examining in a thread", result)
            return None
        self.examined_batches += 1
        return [self._unpack(t, p) for t, p in zip(tokens, result, strict=True)]

    def _unpack(self, token: str, packed: Packed) -> Examined:
        if len(packed) == 1:
            return Examined(packed[0])
        digest, facts, der, node_id, name, purpose, content, body = packed
        key = (der, node_id, name, purpose)
        signer = self._identities.get(key)
        if signer is None:
            from cryptography import x509

            if len(self._identities) >= _IDENTITIES:
                self._identities.clear()
            signer = Identity(node_id, name, x509.load_der_x509_certificate(der), purpose)
            self._identities[key] = signer
        return Examined(VerifiedPacket(token, digest, facts, signer), content, body)

    async def _read(self, proc: asyncio.subprocess.Process, out: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await out.readexactly(4)
                body = await out.readexactly(int.from_bytes(head, "big"))
                answer = pickle.loads(body)  # noqa: S301 - our own helper, our own pipe
                waiter = self._pending.popleft()
                if not waiter.done():  # a batch whose request was cancelled: dropped
                    waiter.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError) as exc:
            if not self._closed:
                _log.warning(
                    "the examine helper (pid %s) ended (%s): examining in a thread for %.0f s",
                    proc.pid, type(exc).__name__, RESTART_AFTER,
                )  # fmt: skip
            self._down_until = time.monotonic() + RESTART_AFTER
        finally:
            if self._proc is proc:
                self._proc = None
            while self._pending:
                waiter = self._pending.popleft()
                if not waiter.done():
                    waiter.set_exception(_HelperGone())
            await _reap(proc)

    async def aclose(self) -> None:
        """Stop the helper: its stdin closes, it ends (killed if not within 5 s)."""
        self._closed = True
        proc, reader = self._proc, self._reader
        if proc is None or reader is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        await reader  # it reaps the helper


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for the helper's end; kill it if it has not ended within 5 s. (Killing one
    that has ended would reap it behind asyncio's back: ``Popen.send_signal`` polls.)"""
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
